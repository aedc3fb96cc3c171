"""`mmgen finetune --lora`: only low-rank adapters train over a frozen base, the run writes a small
RUN/adapter.safetensors tied to that base, and Ctrl-C + --resume ends bitwise where an uninterrupted run ends."""

from __future__ import annotations

import signal
import subprocess

import pytest
import torch
from finetune_clips import TRAIN_MODEL, write_clip_folder, write_recipe
from mmgen_cli import mmgen_command, mmgen_env, run_mmgen
from safetensors.torch import load_file

from mmgen.adapters import read_adapter
from mmgen.files import sha256_file
from mmgen.models import build_model, config_for
from mmgen.train.checkpoint import latest_checkpoint
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
    done = run_mmgen(*lora_args(data, base, recipe, straight), env=env, timeout=300)
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
    resumed = run_mmgen("finetune", data, "-o", run_dir, "--resume", env=env, timeout=300)
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
    assert run_mmgen(*args, env=env, timeout=300).returncode == 0
    config = config_for("mm-unet", TRAIN_MODEL["config"], "test")
    save_model(moved, trained_looking(config, seed=1), "mm-unet", config)  # other weights, same name
    resumed = run_mmgen("finetune", data, "-o", run_dir, "--resume", "--steps", 4, env=env, timeout=300)
    assert resumed.returncode == 2
    assert f"this LoRA run was trained on {moved} (sha256 {sha256_file(base)[:12]}" in resumed.stderr
    assert f"now has sha256 {sha256_file(moved)[:12]}" in resumed.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lora", "0"], "--lora"),
        (["--lora", "4", "--lora-alpha", "nan"], "must be a positive number"),
        (["--lora", "4", "--lora-alpha", "-1"], "must be a positive number"),
        (["--lora", "4", "--lora-targets", "everything"], "--lora-targets"),
    ],
)
def test_lora_options_that_cannot_train_are_refused_before_any_work(setup, tmp_path, extra, message):
    data, base, recipe, env = setup
    result = run_mmgen("finetune", data, "--from", base, "-o", tmp_path / "run", *extra, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
