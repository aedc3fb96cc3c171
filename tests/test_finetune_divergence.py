"""A run that diverges stops and says so: exit 1, one line naming the step, the checkpoints saved before it kept,
no model written from weights that are no longer numbers, and a log that is still strict JSON. Options that can
never train are refused before any work, from a flag or from a --config file alike."""

from __future__ import annotations

import json
import math

import pytest
import torch
from cli_here import run_here
from finetune_clips import write_clip_folder, write_recipe
from mmgen_cli import mmgen_env
from safetensors.torch import load_file

from mmgen.cli import run
from mmgen.train.runlog import RunLog


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    base = tmp_path_factory.mktemp("diverge")
    write_clip_folder(base / "clips", good=2, seconds=0.6)
    return base / "clips", mmgen_env(base, OMP_NUM_THREADS="1")


def strict_json_lines(path) -> list[dict]:
    """Every line parsed as JSON as a strict parser does (no NaN, no Infinity)."""

    def refuse(constant: str):
        raise ValueError(f"{path}: {constant} is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def test_a_diverging_run_stops_with_exit_1_keeps_its_good_checkpoint_and_writes_no_model(clips, tmp_path):
    data, env = clips
    recipe = write_recipe(tmp_path / "recipe.yaml", log_every=1, sample_every=0, probe_every=0)
    run_dir = tmp_path / "run"
    # A learning rate of 1e30 is a number, so it is accepted; the first step throws the weights to ~1e30 and
    # the second step's loss is no longer a number.
    done = run_here(
        "finetune", data, "--scratch", "--config", recipe, "-o", run_dir, "--steps", 5, "--batch-size", 2,
        "--lr", 1e30, "--save-every", 1, env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mmgen: error: training diverged: the loss at step 2 is not finite; no model written, "
                           f"the last good checkpoint is {run_dir / 'checkpoints' / 'step-0000001'}"), last
    assert "Traceback" not in done.stderr and "done:" not in done.stderr
    assert not (run_dir / "model.safetensors").exists() and not (run_dir / "model.json").exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-0000001"]
    for name in ("model.safetensors", "ema.safetensors"):
        weights = load_file(run_dir / "checkpoints" / "step-0000001" / name)
        assert all(torch.isfinite(w).all() for w in weights.values()), name
    log = strict_json_lines(run_dir / "log.jsonl")
    assert [e["event"] for e in log] == ["data", "start", "train", "checkpoint", "diverged"]
    assert log[-1]["step"] == 2 and "the loss at step 2 is not finite" in log[-1]["message"]


def test_a_run_whose_gradients_break_while_its_loss_is_finite_says_it_was_the_gradients(clips, tmp_path):
    """A backward pass that makes no numbers (as torch's bf16 Conv3d did) while the loss is a number: the line says
    the gradients, not "the loss" (which it said before, sending the user to the learning rate)."""
    data, env = clips
    recipe = write_recipe(tmp_path / "recipe.yaml", log_every=1, sample_every=0, probe_every=0)
    run_dir = tmp_path / "run"

    forwards = []

    def broken_backward(module, inputs, output):  # from step 2 the video's last convolution's gradients are NaN
        if isinstance(module, torch.nn.Conv3d) and module.out_channels == 3 and output.requires_grad:
            forwards.append(module)
            if len(forwards) >= 2:
                module.weight.register_hook(lambda grad: torch.full_like(grad, math.nan))

    hook = torch.nn.modules.module.register_module_forward_hook(broken_backward)
    try:
        done = run_here("finetune", data, "--scratch", "--config", recipe, "-o", run_dir, "--steps", 3,
                        "--batch-size", 2, "--save-every", 1, env=env)
    finally:
        hook.remove()
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mmgen: error: training diverged: the gradients at step 2 are not finite, though its "
                           "loss is; no model written, the last good checkpoint is "
                           f"{run_dir / 'checkpoints' / 'step-0000001'}"), last
    assert "Traceback" not in done.stderr and not (run_dir / "model.safetensors").exists()
    log = strict_json_lines(run_dir / "log.jsonl")
    assert [e["event"] for e in log] == ["data", "start", "train", "checkpoint", "diverged"]
    assert log[-1]["step"] == 2 and "the gradients at step 2 are not finite" in log[-1]["message"]


def test_the_log_writes_numbers_that_are_not_finite_as_null(tmp_path):
    log = RunLog(tmp_path / "log.jsonl")
    log.write("train", 3, loss=math.nan, grad_norm=math.inf, parts=[1.0, -math.inf], lr=1e-4)
    (line,) = strict_json_lines(tmp_path / "log.jsonl")
    assert line == {"event": "train", "step": 3, "loss": None, "grad_norm": None, "parts": [1.0, None], "lr": 1e-4}


def test_a_learning_rate_that_cannot_train_is_refused_before_any_work(clips, tmp_path):
    data, env = clips
    recipe = write_recipe(tmp_path / "recipe.yaml")
    run_dir = tmp_path / "run"
    done = run_here("finetune", data, "--scratch", "--config", recipe, "-o", run_dir, "--lr", "inf", env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "mmgen: error: --lr: must be a finite number, got inf"
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("lr", "0", "must be positive, got 0"),
        ("lr", "-1e-4", "must be positive, got -0.0001"),
        ("lr", "nan", "must be a finite number, got nan"),
        ("lr", "-inf", "must be a finite number, got -inf"),
        ("ema_decay", "nan", "must be a finite number, got nan"),
        ("ema_decay", "1", "must be in [0, 1), got 1"),
        ("grad_clip", "inf", "must be a finite number, got inf"),
        ("grad_clip", "-1", "must not be negative, got -1"),
        ("lora_alpha", "-1", "must be positive, got -1"),
        ("loss_weights", "video=0,audio=0", "at least one of 'video' and 'audio' must be positive"),
        ("loss_weights", "video=nan", "video must be a finite number, got nan"),
    ],
)
def test_settings_that_cannot_train_are_exit_2_from_a_flag_and_from_a_config_file(
    clips, tmp_path, capsys, setting, value, message
):
    data, _ = clips
    flag = "--" + setting.replace("_", "-")
    recipe = write_recipe(tmp_path / "recipe.yaml")
    run_dir = tmp_path / "run"
    assert run(["finetune", str(data), "--scratch", "--config", str(recipe), "-o", str(run_dir), flag, value]) == 2
    # named as it was given: by its flag on the command line (it said `command line: lr must be positive`) …
    assert capsys.readouterr().err.strip() == f"mmgen: error: {flag}: {message}"

    # … and by its key in a recipe file, checked by the same rule.
    yaml_value = (
        dict(part.split("=") for part in value.split(",")) if setting == "loss_weights" else value
    )
    yaml_value = {k: float(v) for k, v in yaml_value.items()} if isinstance(yaml_value, dict) else float(yaml_value)
    bad = write_recipe(tmp_path / "bad.yaml", **{setting: yaml_value})
    assert run(["finetune", str(data), "--scratch", "--config", str(bad), "-o", str(run_dir)]) == 2
    assert capsys.readouterr().err.strip() == f"mmgen: error: {bad}: {setting}: {message}"
    assert not run_dir.exists()



@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("keep_checkpoints", 0, "keep_checkpoints: must be at least 1, got 0"),  # one was kept all the same
        ("probe_timesteps", [], "probe_timesteps: give at least one noise level (0..999); probe_every: 0 turns the "
                                "probes off"),  # the probe averaged over none
    ],
)
def test_settings_with_no_meaning_are_refused_with_their_key(clips, tmp_path, capsys, key, value, message):
    data, _ = clips
    bad = write_recipe(tmp_path / "bad.yaml", **{key: value})
    assert run(["finetune", str(data), "--scratch", "--config", str(bad), "-o", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == f"mmgen: error: {bad}: {message}"
    assert not (tmp_path / "run").exists()


def test_a_run_recorded_with_values_refused_since_resumes_as_what_they_did(tmp_path, capsys):
    """A run's own record always resumes: `keep_checkpoints: 0` (refused since) kept the newest checkpoint, and
    reads back as 1; `seed: 5000000000` (seeds past 2^32 - 1 refused since) seeded with its low 32 bits, and reads
    back as 705032704 — each said in a note (config.yaml is written again with it: it changed without a word). A
    new --config file that says 0 is still refused, naming it."""
    from safetensors.torch import save_file

    from mmgen.errors import UsageError
    from mmgen.train.config_layers import run_config

    checkpoint = tmp_path / "checkpoints" / "step-0000002"
    checkpoint.mkdir(parents=True)
    save_file({"x": torch.zeros(1)}, str(checkpoint / "model.safetensors"), {"step": "2"})
    (checkpoint / "ema.safetensors").write_bytes(b"")
    (checkpoint / "state.pt").write_bytes(b"")
    (tmp_path / "config.yaml").write_text(f"init: {checkpoint / 'model.safetensors'}\nkeep_checkpoints: 0\n"
                                          "seed: 5000000000\n")
    resumed = run_config(tmp_path, resume=True)
    assert (resumed.keep_checkpoints, resumed.seed) == (1, 5000000000 % 2**32)
    record = tmp_path / "config.yaml"
    assert capsys.readouterr().err.splitlines() == [
        f"note: {record}: keep_checkpoints 0 is read as 1 (it kept the newest checkpoint; keep_checkpoints is at "
        "least 1 now)",
        f"note: {record}: seed 5000000000 is read as 705032704 (what its generators took; seeds are 0..4294967295 now)"]
    new = write_recipe(tmp_path / "new.yaml", keep_checkpoints=0)
    with pytest.raises(UsageError) as error:
        run_config(tmp_path, resume=True, config_file=new)
    assert str(error.value) == f"{new}: keep_checkpoints: must be at least 1, got 0"


def test_another_runs_record_reused_with_config_is_read_as_resume_reads_it(tmp_path):
    """`--config OLD_RUN/config.yaml` reuses a run's settings (README): a record from before today — every whole-model
    run wrote `lora_targets: attention+conv` beside `lora_rank: null`, some `keep_checkpoints: 0` — is taken as
    --resume takes it, not refused for settings the user never wrote. The same keys in a file of one's own still are."""
    from mmgen.errors import UsageError
    from mmgen.train.config_layers import run_config
    from mmgen.train.run_folder import RUN_HEADER

    old_run = tmp_path / "old"
    old_run.mkdir()
    (old_run / "config.yaml").write_text(f"{RUN_HEADER}data: every setting of this run (read back by --resume)\n"
                                         "init: demo\nlora_rank: null\nlora_alpha: null\nlora_targets: attention+conv\n"
                                         "keep_checkpoints: 0\n")
    config = run_config(tmp_path / "new", config_file=old_run / "config.yaml")
    assert (config.lora, config.keep_checkpoints, config.init) == (None, 1, "demo")
    own = write_recipe(tmp_path / "own.yaml", lora_targets="attention+conv")
    with pytest.raises(UsageError, match="lora_targets: attention.conv: means something only with --lora"):
        run_config(tmp_path / "new", config_file=own)
