"""A creator trains on a folder of their own clips with `mmgen finetune`: the loss falls, the files that cannot
teach anything are skipped and reported, a second run reuses the decoded clips, and the result is a model that
`mmgen generate` and `mmgen models import` take like any other.

Every run is the real command, run in this process (tests/cli_here.py: a new process for each would cost ~3 s and
prove nothing more here) on one CPU thread (the test machine is shared, and one thread is both faster there and
bitwise reproducible).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from cli_here import run_here
from finetune_clips import TRAIN_MODEL, write_clip, write_clip_folder, write_recipe
from mmgen_cli import mmgen_env
from safetensors.torch import load_file

from mmgen.cli import run
from mmgen.files import sha256_file
from mmgen.media import probe, read_audio, read_video
from mmgen.train.runlog import read_log

STEPS = 20
# Stated margin: after 20 steps (batch 4, lr 2e-3, from random weights) the mean loss of steps 16–20 is below
# 40% of the mean of steps 1–5, and each modality's own loss at least halves. (Seen here: 1.62 → 0.28.)
MARGIN = 0.4


@dataclass(frozen=True)
class Run:
    data: Path
    run_dir: Path
    env: dict[str, str]
    stderr: str

    def log(self) -> list[dict]:
        return read_log(self.run_dir / "log.jsonl")

    def events(self, kind: str) -> list[dict]:
        return [e for e in self.log() if e["event"] == kind]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Run:
    """A 20-step run from scratch over 4 colour clips, a corrupt mp4 and a video-only mov."""
    base = tmp_path_factory.mktemp("finetune")
    data = base / "my clips"  # a space in the path, as real folders have
    write_clip_folder(data, good=4, seconds=2.0)
    env = mmgen_env(base, OMP_NUM_THREADS="1")
    recipe = write_recipe(
        base / "recipe.yaml", log_every=5, ema_decay=0.9, sample_sampler="ddpm", sample_steps=3, probe_timesteps=[300]
    )
    run_dir = base / "runs" / "colours"
    result = run_here(
        "finetune", data, "--scratch", "--config", recipe, "-o", run_dir,
        "--steps", STEPS, "--batch-size", 4, "--lr", 2e-3, "--save-every", 10, "--sample-every", 10,
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return Run(data, run_dir, env, result.stderr)


def test_a_tiny_model_from_scratch_lowers_its_loss(trained):
    train = trained.events("train")
    assert [e["step"] for e in train] == [5, 10, 15, 20]
    first, last = train[0], train[-1]
    assert last["loss"] < MARGIN * first["loss"], (first, last)
    for modality in ("video", "audio"):
        assert last[f"loss_{modality}"] < 0.5 * first[f"loss_{modality}"], (modality, first, last)
    assert all(e["lr"] == pytest.approx(2e-3) and e["clips_per_s"] > 0 for e in train)
    assert f"done: {STEPS} steps" in trained.stderr
    assert "try:  mmgen generate -m" in trained.stderr


def test_the_corrupt_and_the_video_only_file_are_reported_as_skipped(trained):
    # 4 good files of 2.0 s = 20 frames each → 10 clips of 2 frames each.
    assert "data: 40 clips from 4 of 6 files (4 decoded, 0 from the clip cache, 2 skipped)" in trained.stderr
    assert f"warning: skipped {trained.data / 'broken.mp4'}: unreadable" in trained.stderr
    assert f"warning: skipped {trained.data / 'silent.mov'}: no audio track" in trained.stderr
    (data,) = trained.events("data")
    assert (data["files"], data["clips"], data["decoded"], data["reused"]) == (6, 40, 4, 0)
    reasons = {Path(s["file"]).name: s["reason"] for s in data["skipped"]}
    assert set(reasons) == {"broken.mp4", "silent.mov"}


def test_the_run_folder_holds_config_log_checkpoints_previews_and_the_model(trained):
    run = trained.run_dir
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints", "config.yaml", "log.jsonl", "model.json", "model.safetensors", "samples",
    ]  # fmt: skip
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000010", "step-0000020"]
    for checkpoint in (run / "checkpoints").iterdir():
        assert sorted(p.name for p in checkpoint.iterdir()) == [
            "ema.safetensors",
            "model.safetensors",
            "state.pt",
        ]
    # The final model is the EMA of the last checkpoint, and its sidecar records where it came from.
    final = load_file(run / "model.safetensors")
    ema = load_file(run / "checkpoints" / "step-0000020" / "ema.safetensors")
    assert final.keys() == ema.keys() and all(torch.equal(final[k], ema[k]) for k in final)
    sidecar = json.loads((run / "model.json").read_text())
    assert sidecar["arch"] == "mm-unet" and sidecar["training"]["steps"] == STEPS
    # ...and what it trained in: auto picked fp32 on this CPU for a narrow model (setup.training_precision).
    assert (sidecar["training"]["device"], sidecar["training"]["precision"]) == ("cpu", "fp32")
    assert sidecar["sha256"] == sha256_file(run / "model.safetensors")
    assert sidecar["config"]["video_size"] == TRAIN_MODEL["config"]["video_size"]

    # Previews are playable clips in the model's format, one per --sample-every.
    samples = sorted((run / "samples").iterdir())
    assert [p.name for p in samples] == ["step-0000010.mp4", "step-0000020.mp4"]
    info = probe(samples[-1])
    assert info.has_video and info.has_audio
    assert read_video(samples[-1], 10.0, (8, 8)).shape == (2, 3, 8, 8)
    assert read_audio(samples[-1], 8000).shape[1] >= 1600
    config_text = (run / "config.yaml").read_text()
    assert "steps: 20" in config_text and "lr: 0.002" in config_text
    # The settings as given (auto picks again on --resume), then what they resolved to, as a comment line.
    recorded = yaml.safe_load(config_text)
    assert (recorded["device"], recorded["precision"]) == ("auto", "auto")
    assert config_text.endswith("\n# ran_on: {device: cpu, precision: fp32}\n") and "ran_on" not in recorded


def test_a_second_run_over_the_same_folder_decodes_nothing(trained, tmp_path):
    cache = Path(trained.env["MMGEN_CACHE"]) / "clips"
    shards = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    recipe = write_recipe(tmp_path / "recipe.yaml", log_every=1)
    result = run_here(
        "finetune", trained.data, "--scratch", "--config", recipe, "-o", tmp_path / "again",
        "--steps", 1, "--batch-size", 2, "--sample-every", 0,
        env=trained.env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "(0 decoded, 4 from the clip cache, 2 skipped)" in result.stderr
    (data,) = read_log(tmp_path / "again" / "log.jsonl")[:1]
    assert (data["decoded"], data["reused"], len(data["skipped"])) == (0, 4, 2)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == shards  # nothing rewritten or added


def test_json_prints_the_run_as_one_line_on_stdout_and_notes_stay_on_stderr(trained, tmp_path, monkeypatch, capsys):
    """`finetune --json`, as generate's: one object on stdout (where the run is, the model it wrote, what the data
    gave), the human lines on stderr; with stdout closed it is refused before anything is written (exit 2)."""
    recipe = write_recipe(tmp_path / "recipe.yaml", log_every=1)
    args = ["finetune", trained.data, "--scratch", "--config", recipe, "--steps", 1, "--batch-size", 2,
            "--sample-every", 0, "--json"]
    result = run_here(*args, "-o", tmp_path / "run", env=trained.env)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert record == {
        "run_dir": str(tmp_path / "run"), "step": 1, "steps": 1, "interrupted": False,
        "model": str(tmp_path / "run" / "model.safetensors"), "checkpoints": str(tmp_path / "run" / "checkpoints"),
        "device": "cpu", "precision": "fp32",
        "data": {"clips": record["data"]["clips"], "files": 6, "decoded": 0, "reused": 4, "skipped": 2},
    }
    assert record["data"]["clips"] > 0 and (tmp_path / "run" / "model.safetensors").is_file()
    assert "done: 1 step;" in result.stderr and "{" not in result.stderr

    monkeypatch.setattr("sys.stdout", None)  # `>&-`
    assert run([str(a) for a in args] + ["-o", str(tmp_path / "closed")]) == 2
    assert capsys.readouterr().err.strip().endswith("standard output is closed: there is nowhere to print the JSON")
    assert not (tmp_path / "closed").exists()


def test_the_result_generates_and_imports_by_name(trained, tmp_path, monkeypatch):
    model = trained.run_dir / "model.safetensors"
    generate = ("--steps", 2, "--seed", 3, "--no-previews", "--json")
    by_path = run_here("generate", "-m", model, "-o", tmp_path / "by-path", *generate, env=trained.env)
    assert by_path.returncode == 0, by_path.stderr
    clip = tmp_path / "by-path" / "clip_0000.mp4"
    assert read_video(clip, 10.0, (8, 8)).shape == (2, 3, 8, 8)

    for key, value in trained.env.items():  # the import runs in this process, into the runs' cache
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(model), "--name", "my-colours"]) == 0
    by_name = run_here(
        "generate", "-m", "my-colours", "-o", tmp_path / "by-name", *generate, env=trained.env
    )
    assert by_name.returncode == 0, by_name.stderr
    (result,) = [json.loads(line) for line in by_name.stdout.splitlines()]
    assert result["model"] == "my-colours"
    # Same weights, seed and settings: the clip made by name is the clip made from the file.
    assert torch.equal(
        read_video(clip, 10.0, (8, 8)), read_video(tmp_path / "by-name" / "clip_0000.mp4", 10.0, (8, 8))
    )


def test_a_preview_is_the_clip_mmgen_generate_makes_from_the_same_weights_seed_and_settings(trained, tmp_path):
    # The step-10 preview: EMA weights of step 10, the run's seed (0), sample_sampler ddpm (its per-step noise
    # must come from the clip's own generator, as in `generate`), sample_steps 3, over the default settings (a
    # model trained from scratch has no settings of its own).
    weights = trained.run_dir / "checkpoints" / "step-0000010" / "ema.safetensors"
    out = tmp_path / "generated"
    done = run_here(
        "generate", "-m", weights, "--seed", 0, "--sampler", "ddpm", "--steps", 3, "--no-previews", "-o", out,
        "--loudness", "off", "--sample-rate", "model", env=trained.env,
    )  # fmt: skip  (a preview is the model's own sound: its rate and level, not a delivered one)
    assert done.returncode == 0, done.stderr
    preview, generated = trained.run_dir / "samples" / "step-0000010.mp4", out / "clip_0000.mp4"
    assert torch.equal(read_video(preview, 10.0, (8, 8)), read_video(generated, 10.0, (8, 8)))
    assert torch.equal(read_audio(preview, 8000), read_audio(generated, 8000))


def test_previews_of_a_registry_model_keep_its_own_sampling_settings():
    from mmgen.train.preview import preview_sampling
    from mmgen.weights import load_registry

    own = load_registry().get("demo").sampling
    sampling = preview_sampling("demo", "ddim", 10)
    assert (sampling.sampler, sampling.steps) == ("ddim", 10)
    assert (sampling.start_timestep, sampling.start_mean, sampling.zero_mean, sampling.eta) == (
        own.start_timestep, own.start_mean, own.zero_mean, own.eta,
    )
    assert own.start_timestep is not None and own.zero_mean  # the demo's own settings are not the defaults


def test_a_finished_run_folder_is_not_reused_by_accident(trained, capsys):
    recipe = trained.run_dir / "config.yaml"
    assert (
        run(["finetune", str(trained.data), "--scratch", "--config", str(recipe), "-o", str(trained.run_dir)])
        == 2
    )
    assert capsys.readouterr().err.strip() == (
        f"mmgen: error: {trained.run_dir}: the run folder is not empty (add --resume to continue it)"
    )


def test_a_sample_rate_the_previews_cannot_store_is_refused_before_training(trained, tmp_path, capsys):
    model = {"arch": "mm-unet", "config": {**TRAIN_MODEL["config"], "sample_rate": 4000, "fps": 5.0}}
    recipe = write_recipe(tmp_path / "recipe.yaml", model)
    run_dir = tmp_path / "run"
    assert run(["finetune", str(trained.data), "--scratch", "--config", str(recipe), "-o", str(run_dir)]) == 2
    assert capsys.readouterr().err.strip() == (
        "mmgen: error: previews (--sample-every) are mp4 files, and AAC cannot store the model's 4000 Hz audio "
        "(pass --sample-every 0, or train a model whose sample_rate is one of "
        "[7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000] Hz)"
    )
    assert not run_dir.exists()


def test_a_run_folder_inside_the_data_folder_is_not_training_data(tmp_path):
    """`mmgen finetune my_clips/ -o my_clips/run` puts the run's previews (clips with sound) inside the data
    folder: neither that run resumed nor a later run over the folder trains on them."""
    data = tmp_path / "clips"
    write_clip_folder(data, good=2, seconds=2.0)  # 4 video files: 2 good, 1 corrupt, 1 without sound
    env = mmgen_env(tmp_path, OMP_NUM_THREADS="1")
    recipe = write_recipe(tmp_path / "recipe.yaml", log_every=1)
    options = ("--steps", 1, "--batch-size", 2, "--sample-every", 1)
    first = run_here("finetune", data, "--scratch", "--config", recipe, "-o", data / "run", *options, env=env)
    assert first.returncode == 0, first.stderr
    assert (data / "run" / "samples" / "step-0000001.mp4").is_file()

    resumed = run_here("finetune", data, "-o", data / "run", "--resume", "--steps", 2, env=env)
    later = run_here("finetune", data, "--scratch", "--config", recipe, "-o", tmp_path / "later", *options, env=env)

    assert resumed.returncode == 0 and later.returncode == 0, resumed.stderr + later.stderr
    assert f"note: left out {data / 'run'}: this run's own folder" in resumed.stderr
    assert f"note: left out {data / 'run'}: an mmgen finetune run's folder" in later.stderr
    for done in (first, resumed, later):
        assert "from 2 of 4 files" in done.stderr, done.stderr


def test_a_run_on_one_clip_for_one_step_counts_them_in_the_singular(tmp_path):
    """`1 training clips`, `done: 1 steps`: every count finetune prints agrees with its number."""
    data = tmp_path / "clips"
    write_clip(data / "one.mp4", ["red"], segment=0.2)  # one clip of the training model's 2 frames at 10 fps
    recipe = write_recipe(tmp_path / "recipe.yaml")
    done = run_here("finetune", data, "--scratch", "--config", recipe, "-o", tmp_path / "run", "--steps", 1,
                    "--batch-size", 1, "--sample-every", 0, "--probe-every", 0, env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "1 clip from 1 of 1 file " in done.stderr
    assert ", 1 training clip, " in done.stderr
    assert "done: 1 step; model " in done.stderr
