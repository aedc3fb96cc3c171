"""`mmgen finetune --lora`: only low-rank adapters train over a frozen base, the run writes a small
RUN/adapter.safetensors tied to that base, and Ctrl-C + --resume ends bitwise where an uninterrupted run ends."""

from __future__ import annotations

import signal
import subprocess

import pytest
import torch
import yaml
from cli_here import run_here
from finetune_clips import TRAIN_MODEL, one_thread, write_clip_folder, write_recipe
from mmgen_cli import mmgen_command, mmgen_env
from safetensors.torch import load_file

from mmgen.adapters import read_adapter
from mmgen.errors import UsageError
from mmgen.files import sha256_file
from mmgen.models import build_model, config_for
from mmgen.train import finetune
from mmgen.train.config import resolve_config
from mmgen.train.step_folders import latest_checkpoint
from mmgen.weights import save_model

STEPS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    data = root / "clips"
    write_clip_folder(data, good=2, seconds=1.2)
    config = config_for("mm-unet", {**TRAIN_MODEL["config"], "dropout": 0.1}, "test")
    base = root / "base.safetensors"
    save_model(base, trained_looking(config), "mm-unet", config)
    recipe = write_recipe(root / "recipe.yaml", None, log_every=1)  # a progress line per step
    return data, base, recipe, mmgen_env(root, OMP_NUM_THREADS="1")


def trained_looking(config, seed: int = 0) -> torch.nn.Module:
    """A base to adapt: random weights everywhere, also where a new network starts at zero (its output
    convolutions), so that gradients reach the adapters as they do in a trained model."""
    torch.manual_seed(seed)
    model = build_model("mm-unet", config)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    return model


def lora_args(data, base, recipe, run_dir) -> list:
    return ["finetune", data, "--from", base, "--lora", 4, "--config", recipe, "-o", run_dir, "--steps", STEPS, "--batch-size", 4,
            "--lr", 1e-3, "--ema-decay", 0.9, "--save-every", 2, "--sample-every", 3, "--probe-every", 0,
            "--precision", "fp32"]  # fmt: skip


def test_a_lora_run_writes_a_small_adapter_for_its_base_and_resumes_bitwise(setup, tmp_path):
    data, base, recipe, env = setup
    straight = tmp_path / "straight"
    done = run_here(*lora_args(data, base, recipe, straight), env=env)  # in this process: tests/cli_here.py
    assert done.returncode == 0, done.stderr
    assert "rank-4 LoRA adapters" in done.stderr and f"--adapter {straight / 'adapter.safetensors'}" in done.stderr
    assert not (straight / "model.safetensors").exists()
    adapter = read_adapter(straight / "adapter.safetensors")
    assert adapter.base.sha256 == sha256_file(base) and adapter.base.name == str(base)
    assert (adapter.spec.rank, adapter.spec.targets) == (4, "attention+conv")
    assert (straight / "adapter.safetensors").stat().st_size < base.stat().st_size / 3
    assert sorted(p.name for p in (straight / "samples").iterdir()) == ["step-0000003.mp4", "step-0000006.mp4"]
    assert any(adapter.tensors[k].abs().max() > 0 for k in adapter.tensors if k.endswith("lora_B"))  # it trained

    # Ctrl-C after step 2 saves a checkpoint of the adapters; --resume finishes the run.
    run_dir = tmp_path / "stopped"
    process = subprocess.Popen(mmgen_command(*lora_args(data, base, recipe, run_dir)), env=env, text=True,
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)  # fmt: skip
    for line in process.stderr:
        if line.startswith(f"step 2/{STEPS} "):
            break
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, rest
    assert latest_checkpoint(run_dir / "checkpoints").step < STEPS
    resumed = run_here("finetune", data, "-o", run_dir, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step" in resumed.stderr

    final = f"checkpoints/step-{STEPS:07d}"
    for name in ("adapter.safetensors", f"{final}/model.safetensors", f"{final}/ema.safetensors"):
        ours, theirs = load_file(run_dir / name), load_file(straight / name)
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name


def test_resuming_a_lora_run_over_a_changed_base_names_both(setup, tmp_path):
    data, base, recipe, env = setup
    moved = tmp_path / "base.safetensors"
    moved.write_bytes(base.read_bytes())
    run_dir = tmp_path / "run"
    args = lora_args(data, moved, recipe, run_dir)
    args[args.index("--steps") + 1] = 2
    assert run_here(*args, env=env).returncode == 0
    config = config_for("mm-unet", TRAIN_MODEL["config"], "test")
    save_model(moved, trained_looking(config, seed=1), "mm-unet", config)  # other weights, same name
    resumed = run_here("finetune", data, "-o", run_dir, "--resume", "--steps", 4, env=env)
    assert resumed.returncode == 2
    assert f"this LoRA run was trained on {moved} (sha256 {sha256_file(base)[:12]}" in resumed.stderr
    assert f"now has sha256 {sha256_file(moved)[:12]}" in resumed.stderr


@pytest.mark.parametrize("lora_rank", [None, 2], ids=["full fine-tune", "lora on convs"])
def test_a_batch_of_one_clip_trains(setup, tmp_path, lora_rank):
    """Batch 1 (what the README's memory table measures) takes torch's fallback CPU convolution for small frames,
    whose backward once failed on the frame conv's weight ("slow_conv2d: grad_weight must be contiguous")."""
    data, base, _, _ = setup
    config = resolve_config([("test", {
        "init": str(base), "steps": 1, "batch_size": 1, "precision": "fp32", "sample_every": 0, "probe_every": 0,
        "lora_rank": lora_rank, "cache_dir": str(tmp_path / "cache")})])  # fmt: skip
    with one_thread():
        result = finetune(data, tmp_path / "run", config)
    assert result.step == 1
    written = "adapter.safetensors" if lora_rank else "model.safetensors"
    assert all(torch.isfinite(t).all() for t in load_file(tmp_path / "run" / written).values())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lora", "0"], "--lora"),
        (["--lora", "4", "--lora-alpha", "nan"], "--lora-alpha: must be a finite number, got nan"),
        (["--lora", "4", "--lora-alpha", "-1"], "--lora-alpha: must be positive, got -1"),
        (["--lora", "4", "--lora-targets", "everything"], "--lora-targets"),
        # Above the widest adapted layer's min(fan-in, fan-out) (64 here): refused before allocating adapters
        # (`--lora 1000000` once took 22 GB). --steps 1 keeps a run that is not refused short.
        (["--lora", "65", "--steps", "1", "--sample-every", "0"], "--lora 65 is more than the largest useful rank 64 "),
        # Adapter settings without a rank once started a whole-model run and recorded them as if they applied.
        (["--lora-alpha", "4", "--steps", "1", "--sample-every", "0"],
         "--lora-alpha 4: means something only with --lora (lora_rank in a YAML file), and that is not set"),
        (["--lora-targets", "all", "--steps", "1", "--sample-every", "0"], "--lora-targets all: means something only"),
    ],
)
def test_lora_options_that_cannot_train_are_refused_before_any_work(setup, tmp_path, extra, message):
    data, base, recipe, env = setup
    result = run_here("finetune", data, "--from", base, "-o", tmp_path / "run", *extra, env=env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_lora_without_a_model_to_adapt_or_adapter_settings_without_a_rank_say_so_first(setup, tmp_path):
    data, base, recipe, env = setup
    # --scratch has no architecture here either: what LoRA needs is said first, as the README words the rule.
    result = run_here("finetune", data, "--scratch", "--lora", 4, "-o", tmp_path / "run", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == ("mmgen: error: --lora 4: LoRA adapts an existing model, and --scratch trains a new "
                                     "one (fine-tune with --from MODEL, or drop --lora)")
    (tmp_path / "targets.yaml").write_text("lora_targets: attention\n")
    result = run_here("finetune", data, "--from", base, "--config", tmp_path / "targets.yaml", "-o", tmp_path / "run",
                      env=env)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"mmgen: error: {tmp_path / 'targets.yaml'}: lora_targets: attention: "
                                            "means something only with --lora")
    assert not (tmp_path / "run").exists()


def test_a_whole_model_run_recorded_with_its_unused_lora_settings_still_resumes(tmp_path):
    from mmgen.train.config_layers import run_config

    # config.yaml as runs recorded it before adapter settings needed a rank (every run: lora_targets; some: alpha).
    fake_run(tmp_path, {"lora_rank": None, "lora_alpha": 4.0, "lora_targets": "attention+conv"}, {"step": "2"})
    config = run_config(tmp_path, resume=True)
    assert (config.lora, config.lora_alpha, config.lora_targets) == (None, None, None)


def fake_run(run_dir, settings: dict, checkpoint_metadata: dict):
    """A run folder as far as --resume reads it before loading anything: config.yaml and a checkpoint whose
    weights file says what it holds."""
    from safetensors.torch import save_file

    checkpoint = run_dir / "checkpoints" / "step-0000002"
    checkpoint.mkdir(parents=True)
    save_file({"x": torch.zeros(1)}, str(checkpoint / "model.safetensors"), checkpoint_metadata)
    (checkpoint / "ema.safetensors").write_bytes(b"")
    (checkpoint / "state.pt").write_bytes(b"")
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"init": str(checkpoint / "model.safetensors"), **settings}))
    return checkpoint / "model.safetensors"


ADAPTER_METADATA = {"format": "mmgen-adapter/1", "rank": "4", "alpha": "4.0", "targets": "attention+conv"}


def test_resuming_with_other_lora_settings_names_where_they_came_from_and_the_checkpoint(tmp_path):
    from mmgen.train.config_layers import run_config

    # lora_rank typed into a whole-model run's config.yaml: the file and key are blamed, not a --lora nobody gave.
    whole = tmp_path / "whole"
    weights = fake_run(whole, {"lora_rank": 4}, {"step": "2"})
    with pytest.raises(UsageError) as error:
        run_config(whole, resume=True)
    assert str(error.value) == (
        f"{whole / 'config.yaml'}: lora_rank: 4 asks for LoRA adapters, but this run fine-tunes the whole model "
        f"({weights} holds no adapters) (remove lora_rank from {whole / 'config.yaml'})"
    )

    # A whole-model run's checkpoint holds its weights: the model it started from may be gone.
    gone = tmp_path / "gone" / "base.safetensors"
    fake_run(tmp_path / "whole2", {"init": str(gone)}, {"step": "2"})
    assert run_config(tmp_path / "whole2", resume=True).init == str(gone)

    # A LoRA run resumed with another rank or targets: the flag, the run's own value and its file.
    lora = tmp_path / "lora"
    weights = fake_run(lora, {"lora_rank": 4}, ADAPTER_METADATA)
    assert run_config(lora, resume=True).lora.rank == 4
    with pytest.raises(UsageError, match=f"^--lora 8, but this run's adapters \\({weights}\\) have lora_rank 4"):
        run_config(lora, resume=True, flags={"lora_rank": 8})
    # A float flag is echoed as typed (`--lora-alpha 2`, not 2.0), and the run's own value too (alpha "4.0" → 4).
    with pytest.raises(UsageError, match=f"^--lora-alpha 2, but this run's adapters \\({weights}\\) have lora_alpha 4 "):
        run_config(lora, resume=True, flags={"lora_alpha": 2.0})
    with pytest.raises(UsageError, match=f"^--lora-targets all, but this run's adapters \\({weights}\\) have "):
        run_config(lora, resume=True, flags={"lora_targets": "all"})
    (lora / "config.yaml").write_text((lora / "config.yaml").read_text().replace("lora_rank: 4", "lora_rank: null"))
    with pytest.raises(UsageError, match=f"^{lora / 'config.yaml'}: lora_rank is not set, but this run trains rank-4"):
        run_config(lora, resume=True)


def test_adapter_tensors_that_do_not_fit_on_resume_name_their_file(tmp_path):
    from mmgen.adapters import BaseModel, LoraSpec
    from mmgen.adapters.file import Adapter
    from mmgen.train.run_weights import lora_weights
    from mmgen.weights import LoadedModel

    config = config_for("mm-unet", TRAIN_MODEL["config"], "test")
    base = LoadedModel("base", "mm-unet", config, build_model("mm-unet", config), "a" * 64, tmp_path / "b", None, None)
    saved = tmp_path / "step-0000002" / "model.safetensors"
    spec = LoraSpec(4, 4.0, "attention")
    resumed = Adapter(saved, spec, BaseModel("base", "a" * 64, "mm-unet", {}), {"x.lora_A": torch.zeros(1)}, "", "")
    with pytest.raises(UsageError, match=f"^{saved}: adapter tensors do not fit"):
        lora_weights(base, spec, "base", resumed)


def test_a_stop_as_the_adapter_lands_leaves_no_adapter_without_its_json_and_says_how_to_resume(setup, tmp_path,
                                                                                              monkeypatch):
    """A stop right after RUN/adapter.safetensors appeared left it without adapter.json, and the line named no way
    on. Now the adapter is taken back, the checkpoints stay, and the line says the command that resumes."""
    import os

    from mmgen import files

    data, base, recipe, env = setup
    run_dir = tmp_path / "run"
    args = ["finetune", data, "--from", base, "--lora", 4, "--config", recipe, "-o", run_dir, "--steps", 1,
            "--batch-size", 2, "--save-every", 1, "--sample-every", 0, "--probe-every", 0, "--precision", "fp32"]
    commit = files._commit

    def commit_then_stop(temp, target, replace):
        commit(temp, target, replace)
        if target.name == "adapter.safetensors":
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(files, "_commit", commit_then_stop)
    stopped = run_here(*args, env=env)

    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr.splitlines()[-1] == (f"mmgen: interrupted; kept the checkpoints in {run_dir}/checkpoints: "
                                               f"`mmgen finetune {data} -o {run_dir} --resume` resumes the run")
    assert not (run_dir / "adapter.safetensors").exists() and not (run_dir / "adapter.json").exists()
    monkeypatch.setattr(files, "_commit", commit)
    resumed = run_here("finetune", data, "-o", run_dir, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert read_adapter(run_dir / "adapter.safetensors").spec.rank == 4 and (run_dir / "adapter.json").is_file()
