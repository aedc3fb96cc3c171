"""A clip and a fine-tuning run share one json name when the clip is written into the run folder as model.mp4:
the clip's sidecar and the run's model.json are both RUN/model.json. Neither command replaces the other's record
(mmgen.json_owners): `soundtrack -o RUN/model.mp4 --overwrite` leaves a run's model.json alone, and a run that
ends — or is resumed — with a clip's sidecar at that name stops in one line naming the clip, writing nothing there.

Every command is the real one, run in this process (tests/cli_here.py) on one CPU thread."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_here import run_here
from finetune_clips import TRAIN_MODEL, one_thread, write_clip, write_clip_folder
from mmgen_cli import mmgen_env

from mmgen.errors import UsageError

SOUNDTRACK = ("--steps", 2, "--seed", 1)  # the shipped demo model, quickly


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Clips to train on, a clip to give a soundtrack, the isolated environment, and a finetune config."""
    from mmgen.train.config import resolve_config

    base = tmp_path_factory.mktemp("json-owners")
    data = base / "clips"
    write_clip_folder(data, good=2, seconds=1.0)
    config = resolve_config([("test", {"model": TRAIN_MODEL, "steps": 2, "batch_size": 2, "sample_every": 0,
                                       "probe_every": 0, "save_every": 1, "cache_dir": str(base / "cache")})],
                            scratch=True)
    return data, write_clip(base / "holiday.mp4", ["red"], 1.0), mmgen_env(base, OMP_NUM_THREADS="1"), config


@pytest.fixture(scope="module")
def finished_run(world, tmp_path_factory):
    from mmgen.train import finetune

    data, _, env, config = world
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    with one_thread():
        finetune(data, run_dir, config)
    return run_dir


def test_soundtrack_overwrite_leaves_a_finished_runs_model_json_alone(world, finished_run, tmp_path):
    _, holiday, env, _ = world
    run_dir = shutil.copytree(finished_run, tmp_path / "run")
    before = (run_dir / "model.json").read_bytes()

    result = run_here("soundtrack", holiday, "-o", run_dir / "model.mp4", "--overwrite", *SOUNDTRACK, env=env)

    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert f"cannot write {run_dir / 'model.mp4'}: {run_dir / 'model.json'} is the json of the" in line
    assert f"model {run_dir / 'model.safetensors'}" in line
    assert (run_dir / "model.json").read_bytes() == before
    assert not (run_dir / "model.mp4").exists()


def test_a_run_never_replaces_the_sidecar_of_a_clip_written_into_its_folder(world, tmp_path):
    """The clip is written while the run trains (no model.json there yet): the run stops as it would write its
    own; `--resume` refuses at once; with the clip moved away, the resumed run writes its model and json."""
    from mmgen.train import finetune

    data, holiday, env, config = world
    run_dir = tmp_path / "run"
    clip = run_dir / "model.mp4"
    written = []

    def soundtrack_into_the_run_folder(event):
        if event.kind == "step" and event.step == 1 and not written:
            written.append(run_here("soundtrack", holiday, "-o", clip, *SOUNDTRACK, env=env))

    with one_thread(), pytest.raises(UsageError) as refused:
        finetune(data, run_dir, config, on_event=soundtrack_into_the_run_folder)
    assert written[0].returncode == 0, written[0].stderr
    said = (f"cannot write {run_dir / 'model.json'}: it is the sidecar of the clip {clip}, and the run's json for "
            "model.safetensors would take its place")
    assert str(refused.value).startswith(said)
    sidecar = (run_dir / "model.json").read_bytes()
    assert json.loads(sidecar)["mp4"] == str(clip)

    resumed = run_here("finetune", data, "-o", run_dir, "--resume", "--cache-dir", config.cache_dir, env=env)
    assert resumed.returncode == 2, resumed.stderr
    assert said in resumed.stderr and len(resumed.stderr.strip().splitlines()) == 1
    assert (run_dir / "model.json").read_bytes() == sidecar

    kept = tmp_path / "kept"
    kept.mkdir()
    for name in ("model.mp4", "model.json"):
        Path(run_dir / name).rename(kept / name)
    resumed = run_here("finetune", data, "-o", run_dir, "--resume", "--cache-dir", config.cache_dir, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "model.json").read_text())["arch"] == "mm-unet"
    assert json.loads((kept / "model.json").read_bytes()) == json.loads(sidecar)
