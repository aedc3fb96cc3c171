"""A run stopped part-way — by Ctrl-C, or killed outright — and resumed ends with the very weights of a run that
never stopped, and a checkpoint is either complete or invisible.

Equivalence is bitwise: on CPU with one thread every kernel is deterministic, the batch order and learning rate
are functions of the step, and the checkpoint holds the optimizer, EMA and every random generator exactly.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from cli_here import run_here
from finetune_clips import TRAIN_MODEL, one_thread, write_clip, write_clip_folder, write_recipe
from folder_swaps import swapping_after_the_first
from mmgen_cli import mmgen_command, mmgen_env
from safetensors.torch import load_file
from two_ranks import run_as_two_ranks

from mmgen.cli import run
from mmgen.media import probe
from mmgen.models import build_model, config_for
from mmgen.runtime.device import Compute
from mmgen.train.checkpoint import list_checkpoints, resume_from, save_checkpoint
from mmgen.train.preview import preview_sampling, write_preview
from mmgen.train.run_weights import RunWeights
from mmgen.train.runlog import read_log
from mmgen.train.step_folders import latest_checkpoint

STEPS = 8
# Every source of run-to-run difference switched on: warm-up then cosine decay, EMA, random flips, dropout (the
# global RNG), RS-MMA window shifts, previews and the audio-visual probe (both draw from their own generators and
# must not disturb training's).
MODEL = {"arch": "mm-unet", "config": {**TRAIN_MODEL["config"], "dropout": 0.1}}
SETTINGS = {
    "log_every": 1,
    "ema_decay": 0.9,
    "warmup": 2,
    "lr_decay": "cosine",
    "sample_steps": 2,
    "probe_every": 3,
    "probe_clips": 2,
    "probe_timesteps": [500],
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    data = base / "clips"
    write_clip_folder(data, good=2, seconds=1.2)
    return data, write_recipe(base / "recipe.yaml", MODEL, **SETTINGS), mmgen_env(base, OMP_NUM_THREADS="1")


def finetune_args(data: Path, recipe: Path, run_dir: Path) -> list:
    return ["finetune", data, "--scratch", "--config", recipe, "-o", run_dir, "--steps", STEPS,
            "--batch-size", 4, "--lr", 1e-3, "--sample-every", 4, "--save-every", 2]  # fmt: skip


def start_and_wait_for_step(args: list, env: dict, step: int) -> subprocess.Popen:
    """Start `mmgen finetune` and return once it has printed that `step`, or a later one, is done (its plain lines
    are a few of the log steps: the first, each quarter, every 30 s)."""
    process = subprocess.Popen(
        mmgen_command(*args), env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    seen = []
    for line in process.stderr:
        seen.append(line)
        if (done := re.match(rf"step (\d+)/{STEPS} ", line)) and int(done[1]) >= step:
            return process
    process.wait()
    raise AssertionError(f"the run ended before step {step}:\n{''.join(seen)}")


def assert_same_weights(run: Path, reference: Path) -> None:
    final_step = f"checkpoints/step-{STEPS:07d}"
    for name in ("model.safetensors", f"{final_step}/model.safetensors", f"{final_step}/ema.safetensors"):
        ours, theirs = load_file(run / name), load_file(reference / name)
        assert ours.keys() == theirs.keys()
        different = [k for k in ours if not torch.equal(ours[k], theirs[k])]
        assert not different, f"{name}: {len(different)} tensors differ, e.g. {different[:3]}"


def assert_one_history(run: Path) -> None:
    """The resumed run's log reads as one uninterrupted run: each step trained and probed exactly once."""
    log = read_log(run / "log.jsonl")
    assert [e["step"] for e in log if e["event"] == "train"] == list(range(1, STEPS + 1))
    assert [e["step"] for e in log if e["event"] == "probe"] == [3, 6]
    assert [e["step"] for e in log if e["event"] == "done"] == [STEPS]


def test_a_run_stopped_by_ctrl_c_then_killed_ends_with_the_weights_of_a_run_that_never_stopped(
    setup, tmp_path
):
    data, recipe, env = setup
    straight = tmp_path / "straight"
    reference = run_here(*finetune_args(data, recipe, straight), env=env)  # in this process: tests/cli_here.py
    assert reference.returncode == 0, reference.stderr
    assert [c.step for c in list_checkpoints(straight / "checkpoints")] == [4, 6, 8]  # the newest 3 are kept

    # Ctrl-C after step 2: the step in progress finishes, a checkpoint is saved, and it says how to go on — but
    # it exits 130, not 0: the run is not done (a script's `mmgen finetune ... && mmgen generate` stops here).
    run_dir = tmp_path / "stopped"
    process = start_and_wait_for_step(finetune_args(data, recipe, run_dir), env, 2)
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, rest
    assert rest.splitlines()[-1] == "mmgen: interrupted", rest
    stopped = latest_checkpoint(run_dir / "checkpoints")
    assert 2 <= stopped.step < STEPS
    assert f"stopped at step {stopped.step}/{STEPS}; checkpoint saved" in rest
    assert not (run_dir / "model.safetensors").exists()
    (command,) = [line.split("resume with:", 1)[1] for line in rest.splitlines() if "resume with:" in line]
    argv = shlex.split(command)
    assert argv[0] == "mmgen" and argv[-1] == "--resume"

    # The printed command resumes; this time the process is killed outright after step 5: no chance to save, so
    # the steps after its newest checkpoint are lost (and a checkpoint being written may be cut off).
    process = start_and_wait_for_step(argv[1:], env, 5)
    process.kill()
    process.wait(timeout=60)
    survivor = latest_checkpoint(run_dir / "checkpoints")
    assert 4 <= survivor.step < STEPS

    resumed = run_here("finetune", data, "-o", run_dir, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {survivor.step}" in resumed.stderr
    assert_same_weights(run_dir, straight)
    assert_one_history(run_dir)
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step-0000004.mp4", "step-0000008.mp4"]


def test_resume_without_a_checkpoint_is_a_one_line_error(setup, tmp_path, capsys):
    data, recipe, _ = setup
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(recipe.read_text())
    assert run(["finetune", str(data), "-o", str(tmp_path / "run"), "--resume"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mmgen: error: {tmp_path / 'run'}: no complete checkpoint to resume from "
        "(start a new run without --resume, or point -o at the run folder)"
    )


def test_a_run_folder_that_cannot_take_the_run_is_refused_before_torch_loads(tmp_path):
    """`finetune CLIPS -o FOLDER` into a folder of the user's, and --resume of a run that stopped before its first
    checkpoint or has no step folder at all, were refused only once torch had loaded (seconds, hundreds of MB): the
    refusal came from the run's own look at its folder. The command line asks the same first, in the same words;
    the run's look stays the guard (the Python API's refusals: the test above)."""
    from mmgen.train.run_folder import RUN_HEADER

    clips, mine, stopped, bare = (tmp_path / name for name in ("clips", "mine", "stopped", "bare"))
    for folder in (clips, mine, stopped, bare):
        folder.mkdir()
    (mine / "notes.txt").write_text("mine")
    (stopped / "config.yaml").write_text(f"{RUN_HEADER}{clips}: every setting of this run\nsteps: 2\n")
    (stopped / "log.jsonl").write_text("")
    (bare / "config.yaml").write_text("steps: 2\n")  # settings written by hand: no run's record
    script = ("import sys; from mmgen.cli import run\n"
              "for args in sys.argv[1:]:\n"
              "    print(run(args.split('|')), 'torch' in sys.modules, file=sys.stderr)")
    asked = [f"finetune|{clips}|-o|{mine}", f"finetune|{clips}|-o|{stopped}|--resume",
             f"finetune|{clips}|-o|{bare}|--resume"]
    done = subprocess.run([sys.executable, "-c", script, *asked], env=mmgen_env(tmp_path), capture_output=True,
                          text=True, timeout=60)
    again = f"mmgen finetune {clips} -o {stopped} --config {stopped / 'config.yaml'}"
    assert done.stderr.splitlines() == [
        f"mmgen: error: {mine}: the run folder is not empty (choose another -o or empty it)",
        "2 False",
        f"mmgen: error: {stopped}: no complete checkpoint to resume from: the run stopped before its first one "
        f"(start it again with its own settings: {again}; its config.yaml and log.jsonl are replaced)",
        "2 False",
        f"mmgen: error: {bare}: no complete checkpoint to resume from "
        "(start a new run without --resume, or point -o at the run folder)",
        "2 False",
    ]


# A save that is killed half-way: a child process writes checkpoint 2 with a state holding an object whose
# pickling announces itself and then waits, so the kill lands while state.pt is being written — after both
# weight files are already in the temporary folder.
_SAVE_AND_HANG = """
import sys, time
from pathlib import Path
import torch
from mmgen.cli import run
from mmgen.media import probe
from mmgen.models import build_model, config_for
from mmgen.runtime.device import Compute
from mmgen.train.checkpoint import save_checkpoint
from mmgen.train.run_weights import RunWeights

class Hang:
    def __reduce__(self):
        Path(sys.argv[2]).touch()
        time.sleep(600)

config = config_for("mm-unet", {config!r}, "test")
model = build_model("mm-unet", config)
save_checkpoint(Path(sys.argv[1]), 2, model=model, ema=model, write=RunWeights(config).write,
                state={{"step": 2, "hang": Hang()}}, keep=3)
"""


def save(folder: Path, step: int, model: torch.nn.Module, config) -> None:
    save_checkpoint(
        folder, step, model=model, ema=model, write=RunWeights(config).write, state={"step": step}, keep=3
    )


def test_a_checkpoint_killed_while_saving_never_becomes_the_newest(tmp_path):
    config = config_for("mm-unet", TRAIN_MODEL["config"], "test")
    model = build_model("mm-unet", config)
    folder = tmp_path / "run" / "checkpoints"
    save(folder, 1, model, config)

    started = tmp_path / "saving"
    script = _SAVE_AND_HANG.format(config=TRAIN_MODEL["config"])
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(folder), str(started)], env=mmgen_env(tmp_path)
    )
    deadline = time.monotonic() + 120
    while not started.exists():
        assert child.poll() is None and time.monotonic() < deadline, "the child never reached the save"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)

    (stray,) = [p for p in folder.iterdir() if p.name.startswith(".step-0000002.") and p.name.endswith(".partial")]
    assert (stray / "model.safetensors").is_file() and (stray / "ema.safetensors").is_file()
    assert [c.step for c in list_checkpoints(folder)] == [1]
    assert resume_from(tmp_path / "run")[0].checkpoint.step == 1

    # A step folder missing a file (copied by hand, say) does not count either.
    (folder / "step-0000005").mkdir()
    (folder / "step-0000005" / "model.safetensors").write_bytes(b"")
    assert latest_checkpoint(folder).step == 1

    save(folder, 2, model, config)  # the next save clears the debris of the killed one
    assert not stray.exists()
    assert [c.step for c in list_checkpoints(folder)] == [1, 2]


def test_a_preview_is_rewritten_when_a_resumed_run_redoes_its_step(tmp_path):
    # A run killed after writing its step-4 preview but before its step-4 checkpoint redoes step 4 on resume.
    model = build_model("mm-unet", config_for("mm-unet", TRAIN_MODEL["config"], "test"))
    preview = tmp_path / "samples" / "step-0000004.mp4"
    preview.parent.mkdir()
    preview.write_bytes(b"left by the killed run")
    cpu = Compute(torch.device("cpu"), torch.float32)
    with one_thread():
        write_preview(preview, model, cpu, preview_sampling(None, "ddim", 2), seed=0)
    info = probe(preview)
    assert info.has_video and info.has_audio


def test_a_preview_whose_sound_passes_full_scale_says_once_that_it_is_clipped(tmp_path, monkeypatch, caplog):
    """A preview holds the model's sound at its own level; sampled without clamping each step's clean estimate (the
    paper's setting, clip_denoised off), a young model's passes full scale many times over and was clipped where it
    was written without a word. It is said once a run, as a delivery at its own level says it."""
    import dataclasses
    import logging

    import mmgen.media.notes as notes

    monkeypatch.setattr(notes, "_said", set())
    model = build_model("mm-unet", config_for("mm-unet", TRAIN_MODEL["config"], "test"))
    sampling = dataclasses.replace(preview_sampling(None, "ddim", 2), clip_denoised=False)
    cpu = Compute(torch.device("cpu"), torch.float32)
    with one_thread(), caplog.at_level(logging.WARNING):
        for step in (2, 4):
            write_preview(tmp_path / f"step-{step}.mp4", model, cpu, sampling, seed=0)
    (said,) = caplog.messages
    assert re.fullmatch(r"the sound peaks at \+\d+\.\d dBFS and is clipped at full scale in the file written; training "
                        r"previews hold the model's sound at its own level", said), said
    assert probe(tmp_path / "step-4.mp4").has_audio


def test_resume_refuses_other_clips_but_follows_a_moved_folder(setup, tmp_path):
    """`finetune DATA --resume` with DATA another folder than the run's: other clips would quietly make one run
    of two trainings, so it is refused naming both folders; the same files moved elsewhere resume as before."""
    from mmgen.errors import UsageError
    from mmgen.train import finetune
    from mmgen.train.config import resolve_config

    data, _, _ = setup
    config = resolve_config([("test", {"model": MODEL, "steps": 1, "batch_size": 2, "sample_every": 0,
                                       "probe_every": 0, "cache_dir": str(tmp_path / "cache")})], scratch=True)
    run_dir = tmp_path / "run"
    with one_thread():
        finetune(data, run_dir, config)
        other = tmp_path / "other"
        write_clip(other / "mine.mp4", ["red"], 0.6)
        with pytest.raises(UsageError) as refused:  # steps to go: a finished run's --resume does nothing, reads nothing
            finetune(other, run_dir, replace(config, steps=2), resume=True)
        assert refused.value.exit_code == 2
        assert str(refused.value) == (f"{other}: this run was trained on other clips, in {data.resolve()} "
                                      f"(resume with {data.resolve()}; to train on {other}, start a new run (another run_dir=))")

        moved = tmp_path / "moved"
        shutil.copytree(data, moved)
        notes = []
        result = finetune(moved, run_dir, replace(config, steps=2), resume=True,
                          on_event=lambda e: notes.append(e.message) if e.kind == "note" else None)
    assert result.step == 2
    assert f"note: {moved} holds the same files as {data.resolve()}, where this run started; going on" in notes


def test_a_programs_own_random_draws_after_finetune_and_its_resume_are_those_of_its_own_seed(setup, tmp_path):
    """`finetune` reseeded torch's global RNG to the config's seed and left it so (a resume set it to the
    checkpoint's state): a program that seeded torch drew the same numbers after the call whatever its seed
    (probe 61). The call gives the program's RNG back as it found it; the run itself still draws from its own seed."""
    from mmgen.train import finetune
    from mmgen.train.config import resolve_config

    data, _, _ = setup
    config = resolve_config([("test", {"model": MODEL, "steps": 1, "batch_size": 2, "sample_every": 0,
                                       "probe_every": 0, "cache_dir": str(tmp_path / "cache")})], scratch=True)
    with one_thread():
        torch.manual_seed(1234)
        expected = torch.rand(4)
        torch.manual_seed(1234)
        finetune(data, tmp_path / "run", config)
        assert torch.equal(torch.rand(2), expected[:2])
        finetune(data, tmp_path / "run", replace(config, steps=2), resume=True)
        assert torch.equal(torch.rand(2), expected[2:])


def test_a_run_recorded_with_its_clip_cache_inside_its_folder_resumes(setup, tmp_path):
    """A new run's clip cache inside its run folder is refused (a failed new run removes its folder, the cache with
    it), but runs started so before that was refused have it in their config.yaml: --resume refused them for a
    flag their user never typed. A resumed run removes no folder; it goes on as recorded."""
    from mmgen.errors import UsageError
    from mmgen.train import finetune
    from mmgen.train.config import resolve_config

    data, _, _ = setup
    run_dir = tmp_path / "run"
    config = resolve_config([("test", {"model": MODEL, "steps": 1, "batch_size": 2, "sample_every": 0,
                                       "probe_every": 0, "cache_dir": str(run_dir / "clips")})], scratch=True)
    with one_thread():
        with pytest.raises(UsageError, match="the clip cache is inside the run folder"):
            finetune(data, run_dir, config)
        finetune(data, run_dir, replace(config, cache_dir=tmp_path / "cache"))
        assert finetune(data, run_dir, replace(config, steps=2), resume=True).step == 2


def test_a_run_that_failed_before_its_first_checkpoint_starts_again_in_its_folder(setup, tmp_path, monkeypatch, capsys):
    """A crash at the first step in a folder that was there leaves the run's config.yaml and log.jsonl: nothing to
    resume, and nothing a new start may not write again. The errors say so and what to do; anything else in the
    folder is named, never deleted; the command the --resume error gives starts the run again, with a log of its
    own. (A folder the failed run made itself is taken back: the test below.)"""
    from mmgen.errors import OutputExists, UsageError
    from mmgen.train import finetune, trainer
    from mmgen.train.config import resolve_config

    data, _, _ = setup
    config = resolve_config([("test", {"model": MODEL, "steps": 1, "batch_size": 2, "sample_every": 0,
                                       "probe_every": 0, "cache_dir": str(tmp_path / "cache")})], scratch=True)
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def crash(*args, **kwargs):
        raise RuntimeError("a kernel failed")

    with one_thread():
        with monkeypatch.context() as patched:
            patched.setattr(trainer, "diffusion_loss", crash)  # the first step fails
            with pytest.raises(RuntimeError, match="a kernel failed"):
                finetune(data, run_dir, config)
        assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "log.jsonl"]

        with pytest.raises(UsageError) as resumed:
            finetune(data, run_dir, config, resume=True)
        again = f"mmgen finetune {data} -o {run_dir} --config {run_dir / 'config.yaml'}"
        assert str(resumed.value) == (f"{run_dir}: no complete checkpoint to resume from: the run stopped before its "
                                      f"first one (start it again with its own settings: {again}; its config.yaml "
                                      "and log.jsonl are replaced)")

        (run_dir / "samples").mkdir()
        (run_dir / "samples" / "step-0000001.mp4").write_bytes(b"a preview")
        (run_dir / "notes.txt").write_text("mine")
        with pytest.raises(OutputExists) as refused:
            finetune(data, run_dir, config)
        assert str(refused.value) == (f"{run_dir}: the run folder is not empty, and its run has no complete checkpoint "
                                      f"(to start it again here, first delete {run_dir / 'notes.txt'} {run_dir / 'samples'}/;"
                                      " or choose another run_dir=)")
        assert (run_dir / "notes.txt").read_text() == "mine" and (run_dir / "samples" / "step-0000001.mp4").exists()

        (run_dir / "notes.txt").unlink()
        shutil.rmtree(run_dir / "samples")
        capsys.readouterr()
        assert run(again.split()[1:]) == 0
    assert f"note: {run_dir}: the run here stopped before its first checkpoint; starting again" in capsys.readouterr().err
    assert [e["event"] for e in read_log(run_dir / "log.jsonl")] == ["data", "start", "train", "checkpoint", "done"]
    assert (run_dir / "model.safetensors").is_file()


def test_a_run_that_fails_before_its_first_checkpoint_takes_back_the_folders_it_made(setup, tmp_path, monkeypatch):
    """As generate does: a run that fails before it has saved anything (here a crash at the first step) leaves no
    run folder it made, nor the parents it made for it (`runs/`) — each failed try left a `runs/finetune-DATE/`
    holding only a config.yaml and a log.jsonl. A file that is not the run's keeps its folder, untouched."""
    from mmgen.train import finetune, trainer
    from mmgen.train.config import resolve_config

    data, _, _ = setup
    config = resolve_config([("test", {"model": MODEL, "steps": 1, "batch_size": 2, "sample_every": 0,
                                       "probe_every": 0, "cache_dir": str(tmp_path / "cache")})], scratch=True)
    run_dir = tmp_path / "runs" / "first"
    left = []

    def crash(*args, **kwargs):
        left.append(sorted(p.name for p in run_dir.iterdir()))
        raise RuntimeError("a kernel failed")

    with one_thread(), monkeypatch.context() as patched:
        patched.setattr(trainer, "diffusion_loss", crash)
        with pytest.raises(RuntimeError, match="a kernel failed"):
            finetune(data, run_dir, config)
        assert left == [["config.yaml", "log.jsonl"]]  # what it had written when it failed
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no runs/ left, the clip cache kept

        def crash_beside_a_note(*args, **kwargs):
            (run_dir / "notes.txt").write_text("mine")
            raise RuntimeError("a kernel failed")

        patched.setattr(trainer, "diffusion_loss", crash_beside_a_note)
        with pytest.raises(RuntimeError, match="a kernel failed"):
            finetune(data, run_dir, config)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "log.jsonl", "notes.txt"]
    assert (run_dir / "notes.txt").read_text() == "mine"


def test_a_failed_run_takes_back_a_clip_cache_folder_it_made_that_holds_no_clip(tmp_path, monkeypatch):
    """A failed run's new --cache-dir (and the parents it made for it) goes with its run folder when it holds no
    decoded clip: no file was usable (its skip records only), or the run failed decoding its first file. A cache
    folder that was there keeps its records, and one holding decoded clips stays for the next try (the test above)."""
    from mmgen.data.clip_cache import ClipCache

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.mp4").write_text("hello")  # no usable clip: a skip record in the cache
    env = mmgen_env(tmp_path)

    def finetune(cache: Path) -> int:
        return run_here("finetune", data, "-o", tmp_path / "runs" / "r", "--cache-dir", cache, env=env).returncode

    assert finetune(tmp_path / "fresh" / "clips") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no fresh/, no runs/
    kept = tmp_path / "kept"
    kept.mkdir()
    assert finetune(kept) == 2
    assert sorted(p.name for p in kept.iterdir()) == ["skipped.jsonl", "skipped.lock"]
    (data / "a.mp4").unlink()
    write_clip(data / "b.mp4", ["red"], 1.0)

    def crash(*args, **kwargs):
        raise RuntimeError("a decoder failed")

    monkeypatch.setattr(ClipCache, "_decode", crash)
    assert finetune(tmp_path / "fresh" / "clips") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "kept"]


def test_a_stop_whose_checkpoint_cannot_be_saved_says_so_in_its_last_line(setup, tmp_path, monkeypatch):
    """A stop said "stopping after this step to save a checkpoint"; when that save then failed (a full disk), its
    own line showed only with --debug, and the last line was a bare "interrupted": as if it had saved. It still
    exits with the stop's code, and its one line says the checkpoint was not saved, why, and what there is to
    resume from (the step-1 checkpoint saved before the stop)."""
    from mmgen.train import checkpoint, trainer

    data, recipe, env = setup
    run_dir = tmp_path / "run"
    loss, saves = trainer.diffusion_loss, []

    steps = []

    def stop_in_the_second_step(*args, **kwargs):
        steps.append(1)
        if len(steps) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss(*args, **kwargs)

    def full_from_the_second_save(state, file):
        saves.append(file)
        if len(saves) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(state, file)

    save = torch.save
    monkeypatch.setattr(trainer, "diffusion_loss", stop_in_the_second_step)
    monkeypatch.setattr(checkpoint.torch, "save", full_from_the_second_save)
    result = run_here("finetune", data, "--scratch", "--config", recipe, "-o", run_dir, "--steps", 3,
                      "--batch-size", 2, "--save-every", 1, "--sample-every", 0, "--probe-every", 0, env=env)
    assert result.returncode == 143, result.stderr
    assert "stopping after this step to save a checkpoint" in result.stderr
    resume = f"`mmgen finetune {shlex.quote(str(data))} -o {run_dir} --resume` resumes the run"
    assert result.stderr.splitlines()[-1] == (
        f"mmgen: interrupted (SIGTERM); no checkpoint saved at step 2: cannot write "
        f"{run_dir}/checkpoints/step-0000002/state.pt: No space left on device (free some space, or raise the file "
        f"size limit, and run it again); kept the checkpoints in {run_dir}/checkpoints: {resume}"
    )
    assert [c.step for c in list_checkpoints(run_dir / "checkpoints")] == [1]


@pytest.mark.slow
@pytest.mark.parametrize("stopped", [True, False])
def test_a_collective_that_fails_as_another_process_ended_says_so_in_one_line(setup, tmp_path, monkeypatch, stopped):
    """A torchrun worker killed: the others' next collective failed with gloo's raw text (`RuntimeError:
    [/__w/pytorch/…/pair.cc:553] Connection closed by peer … GLHF! 🏖️`), said as rank 1's error — and in rank 0's
    stop line (torchrun's SIGTERM) as `no checkpoint saved at step 2`, though step 2's was saved, whole. Now one
    plain line, with the checkpoints kept; the stop line claims no missing checkpoint that is there."""
    from torch.distributed import DistBackendError

    from mmgen.runtime.processes import Processes
    from mmgen.train import trainer

    data, recipe, env = setup
    run_dir = tmp_path / "run"
    loss, steps = trainer.diffusion_loss, []

    def stop_in_the_second_step(*args, **kwargs):
        steps.append(1)
        if len(steps) == 2 and stopped:
            os.kill(os.getpid(), signal.SIGTERM)  # (torchrun's, to the processes left)
        return loss(*args, **kwargs)

    def peer_gone_after_the_second_save(self):  # the barrier after each checkpoint is written: gloo's failure as
        # torch raises it (a plain RuntimeError's words are a peer's only in a job of several processes)
        if getattr(latest_checkpoint(run_dir / "checkpoints"), "step", None) == 2:
            raise DistBackendError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection "
                               "closed by peer [127.0.0.1]:3511. This is typically caused by a remote worker "
                               "crashing. Check the logs of the remote worker before reporting an error. GLHF! 🏖️")

    monkeypatch.setattr(trainer, "diffusion_loss", stop_in_the_second_step)
    monkeypatch.setattr(Processes, "barrier", peer_gone_after_the_second_save)
    result = run_here("finetune", data, "--scratch", "--config", recipe, "-o", run_dir, "--steps", 3,
                      "--batch-size", 2, "--save-every", 1, "--sample-every", 0, "--probe-every", 0, env=env)
    resume = f"`mmgen finetune {shlex.quote(str(data))} -o {run_dir} --resume` resumes the run"
    said = ("another process of the job ended (its own output says why); "
            f"kept the checkpoints in {run_dir}/checkpoints: {resume}")
    assert result.returncode == (143 if stopped else 1), result.stderr
    assert result.stderr.splitlines()[-1] == (f"mmgen: interrupted (SIGTERM); {said}" if stopped
                                              else f"mmgen: error: {said}")
    assert "gloo" not in result.stderr
    assert [c.step for c in list_checkpoints(run_dir / "checkpoints")] == [1, 2]


def test_a_run_folder_swapped_for_a_link_mid_run_stops_the_run_before_writing_through_it(setup, tmp_path, monkeypatch):
    """`mv RUN RUN.old; ln -s ELSEWHERE RUN` after the first checkpoint: the run wrote its later checkpoints and its
    model into ELSEWHERE. The folder it took is the one every file of the run goes into (output_folders.same_folders): one
    line naming it, exit 1, nothing written into ELSEWHERE, the first checkpoint kept where it was written."""
    from mmgen.train import state

    data, recipe, env = setup
    run_dir, old, victim = tmp_path / "run", tmp_path / "run.old", tmp_path / "victim"
    victim.mkdir()
    monkeypatch.setattr(state, "save_checkpoint", swapping_after_the_first(state.save_checkpoint, run_dir, old, victim))
    result = run_here("finetune", data, "--scratch", "--config", recipe, "-o", run_dir, "--steps", 3,
                      "--batch-size", 2, "--save-every", 1, "--sample-every", 0, "--probe-every", 0, env=env)
    assert result.returncode == 1, result.stderr
    assert f"{run_dir} was replaced while mmgen wrote into it; stopped" in result.stderr.splitlines()[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert list(victim.iterdir()) == []
    assert [c.step for c in list_checkpoints(old / "checkpoints")] == [1]


def test_a_run_folder_renamed_mid_run_is_said_gone_from_its_name_not_removed(setup, tmp_path, monkeypatch):
    """`mv RUN RUN-old` after the first checkpoint: the run said RUN "was removed while mmgen wrote into it", of a
    folder the user still has. mmgen cannot tell a rename from a removal: RUN is no longer there, moved, renamed or
    removed; the checkpoint is in RUN-old, and nothing is written at RUN again."""
    from mmgen.train import state

    data, recipe, env = setup
    run_dir, old = tmp_path / "run", tmp_path / "run-old"
    save = state.save_checkpoint

    def renaming_after_the_first(*args, **kwargs):
        saved = save(*args, **kwargs)
        if not old.exists():
            run_dir.rename(old)
        return saved

    monkeypatch.setattr(state, "save_checkpoint", renaming_after_the_first)
    result = run_here("finetune", data, "--scratch", "--config", recipe, "-o", run_dir, "--steps", 3,
                      "--batch-size", 2, "--save-every", 1, "--sample-every", 0, "--probe-every", 0, env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"mmgen: error: {run_dir} is no longer there (moved, renamed or removed while mmgen wrote into it); stopped"
    ), result.stderr
    assert not run_dir.exists() and [c.step for c in list_checkpoints(old / "checkpoints")] == [1]


def test_a_folder_a_run_is_training_in_is_refused_even_before_its_first_checkpoint(setup, tmp_path):
    """A run still before its first checkpoint looks like a failed one on disk; the lock it holds on its folder
    tells them apart, so a second run neither replaces its files nor trains beside it."""
    from mmgen.errors import UsageError
    from mmgen.train import finetune
    from mmgen.train.config import resolve_config
    from mmgen.train.run_folder import RUN_HEADER, RunFolderLock

    data, recipe, _ = setup
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(f"{RUN_HEADER}{data}: every setting of this run\n{recipe.read_text()}")
    (run_dir / "log.jsonl").write_text('{"event": "data", "step": 0}\n')
    before = {p.name: p.read_text() for p in run_dir.iterdir()}
    training = RunFolderLock(run_dir)
    training.take()
    config = resolve_config([("test", {"model": MODEL, "steps": 1, "batch_size": 2})], scratch=True)
    try:
        for resume in (False, True):
            with pytest.raises(UsageError) as refused:
                finetune(data, run_dir, config, resume=resume)
            assert str(refused.value) == (f"{run_dir} is in use: another mmgen finetune (pid {os.getpid()}) is "
                                          "training in it "
                                          "(wait for it to end, or choose another run_dir=)")
    finally:
        training.release()
    assert {p.name: p.read_text() for p in run_dir.iterdir()} == before


def test_resume_into_a_folder_a_new_run_has_just_taken_says_it_is_in_use(tmp_path):
    """`finetune RUN --resume` sent to a folder a new run holds before it wrote its config.yaml said "no config.yaml
    here: not an mmgen finetune run folder": it says the folder is in use, as for a run further on."""
    from mmgen.train.run_folder import RunFolderLock

    data, run_dir = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    run_dir.mkdir()
    training = RunFolderLock(run_dir)
    training.take()
    try:
        done = run_here("finetune", data, "-o", run_dir, "--resume", env=mmgen_env(tmp_path))
    finally:
        training.release()
    assert (done.returncode, done.stderr) == (2, f"mmgen: error: {run_dir} is in use: another mmgen finetune (pid "
                                                 f"{os.getpid()}) is training in it (wait for it to end, or choose "
                                                 "another -o)\n")
    assert list(run_dir.iterdir()) == []
    free = run_here("finetune", data, "-o", run_dir, "--resume", env=mmgen_env(tmp_path))
    assert (free.returncode, free.stderr) == (2, f"mmgen: error: {run_dir}: no config.yaml here: not an mmgen "
                                                 "finetune run folder\n")


HOLDER = """
import sys
from pathlib import Path
from mmgen.train.run_folder import RunFolderLock

RunFolderLock(Path(sys.argv[1])).take()
print("held", flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the holder of a flock is read from Linux's /proc/locks")
def test_a_run_folder_in_use_names_the_process_training_in_it(tmp_path):
    """A finetune refused a run folder another one trains in without saying which process that is, while a batch
    refused an output folder in use names its holder's pid: the one to wait for, or to look at with `ps`."""
    data, run_dir = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    run_dir.mkdir()
    training = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], env=mmgen_env(tmp_path),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert training.stdout.readline() == "held\n"
        done = run_here("finetune", data, "-o", run_dir, "--resume", env=mmgen_env(tmp_path))
    finally:
        training.communicate("")
    assert (done.returncode, done.stderr) == (2, f"mmgen: error: {run_dir} is in use: another mmgen finetune (pid "
                                                 f"{training.pid}) is training in it (wait for it to end, or choose "
                                                 "another -o)\n")


def test_resume_of_a_folder_that_is_not_there_says_so(tmp_path, monkeypatch):
    """`finetune DATA -o nosuchrun --resume` said "nosuchrun: no config.yaml here: not an mmgen finetune run folder"
    of a folder that does not exist (and of a file)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "a.mp4").write_bytes(b"x")
    for run_dir, said in (("nosuchrun", "nosuchrun: no such folder"), ("a.mp4", "a.mp4 is a file, not a run folder")):
        done = run_here("finetune", "data", "-o", run_dir, "--resume", env=mmgen_env(tmp_path))
        assert (done.returncode, done.stderr) == (2, f"mmgen: error: {said} (--resume continues the run in the "
                                                     "folder -o names)\n")
    assert not (tmp_path / "nosuchrun").exists()


def test_a_new_run_holds_its_folder_from_its_first_look_so_a_second_one_is_refused_before_decoding(
    setup, tmp_path, monkeypatch
):
    """Two finetunes started into one new folder: the folder was locked only once the first had decoded its clips
    and written config.yaml, so the second decoded the whole clips folder too, and wrote its own config.yaml over
    the first's before it was refused. The run now makes and holds the folder at its first look; and the one
    refused leaves the folder it found empty to the run that holds it (its clean-up removed it)."""
    from mmgen.errors import UsageError
    from mmgen.train import finetune
    from mmgen.train import setup as run_setup
    from mmgen.train.config import resolve_config
    from mmgen.train.run_folder import RunFolderLock

    data, _, _ = setup
    run_dir = tmp_path / "new" / "run"
    config = resolve_config([("test", {"model": MODEL, "steps": 1, "batch_size": 2})], scratch=True)
    held_while_decoding = []

    def decoding(*args, **kwargs):  # a second run looking now finds the folder taken
        with pytest.raises(UsageError, match="is in use"):
            RunFolderLock(run_dir).take()
        held_while_decoding.append(True)
        raise KeyboardInterrupt

    monkeypatch.setattr(run_setup, "build_clip_dataset", decoding)
    with pytest.raises(KeyboardInterrupt):
        finetune(data, run_dir, config)
    assert held_while_decoding and not run_dir.parent.exists()  # a run that wrote nothing leaves nothing
    monkeypatch.undo()

    other = RunFolderLock(run_dir)
    hold = run_setup._hold

    def another_run_takes_it_first(lock, processes):  # between this run's mkdir and its lock
        other.take()
        hold(lock, processes)

    monkeypatch.setattr(run_setup, "_hold", another_run_takes_it_first)
    try:
        with pytest.raises(UsageError, match="is in use"):
            finetune(data, run_dir, config)
        assert run_dir.is_dir()  # still there for the run that holds it
    finally:
        other.release()


def test_under_torchrun_a_folder_in_use_is_said_once_by_rank_0_and_every_rank_exits_2(
    setup, tmp_path, monkeypatch, capsys
):
    """`torchrun --nproc_per_node 2 -m mmgen finetune` into a run folder another finetune trains in: rank 0 finds
    it locked and tells the other; each exits 2, rank 0 alone says why, and nothing in the folder changes. The
    ranks are played in this process (tests/two_ranks.py)."""
    from mmgen.train.run_folder import RunFolderLock

    data, recipe, _ = setup
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "log.jsonl").write_text('{"event": "data", "step": 0}\n')
    before = {p.name: p.read_text() for p in run_dir.iterdir()}
    training = RunFolderLock(run_dir)  # another finetune is training in the folder
    training.take()
    try:
        said = run_as_two_ranks(monkeypatch, capsys, lambda: run([str(a) for a in finetune_args(data, recipe, run_dir)]))
    finally:
        training.release()
    assert said[0] == (2, f"mmgen: error: {run_dir} is in use: another mmgen finetune (pid {os.getpid()}) is "
                          "training in it (wait for "
                          "it to end, or choose another -o)\n")
    assert said[1] == (2, "")
    assert {p.name: p.read_text() for p in run_dir.iterdir()} == before



def test_under_torchrun_what_every_rank_finds_of_the_run_folder_and_the_clips_is_said_once(
    setup, tmp_path, monkeypatch, capsys
):
    """Each rank looks at the run folder and the clips itself, and each said what it found: `the run folder is not
    empty` and `not a folder` twice under `--nproc_per_node 2`. Rank 0 alone says it; every rank exits 2. Clips
    that are no folder are refused as the ranks agree on their settings: they were found only once the ranks had
    joined the process group (NCCL's, on GPUs) and rank 0 had made the run folder."""
    data, recipe, _ = setup
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    said = run_as_two_ranks(monkeypatch, capsys, lambda: run([str(a) for a in finetune_args(data, recipe, run_dir)]))
    assert said[0] == (2, f"mmgen: error: {run_dir}: the run folder is not empty (choose another -o or empty it)\n")
    assert said[1] == (2, "")
    nope = tmp_path / "nope"
    nope.write_text("no clips")
    joined = []
    said = run_as_two_ranks(monkeypatch, capsys,
                            lambda: run([str(a) for a in finetune_args(nope, recipe, tmp_path / "fresh")]),
                            joined=joined)
    assert said[0] == (2, f"mmgen: error: {nope}: not a folder (give the folder that holds your video clips)\n")
    assert said[1] == (2, "")
    assert joined == []


def test_a_run_resumed_between_two_log_lines_logs_the_mean_of_the_whole_interval(setup, tmp_path, monkeypatch):
    """The log line after a resume averaged only the steps taken since it (step 3 of 1–3 here), so its loss differed
    from an uninterrupted run's though the weights were the same: the interval's running sums are checkpointed."""
    from mmgen.train import trainer

    data, _, env = setup
    recipe = write_recipe(tmp_path / "recipe.yaml", MODEL, **{**SETTINGS, "log_every": 3})
    loss, losses = trainer.diffusion_loss, []

    def stop_in_the_second_step(*args, **kwargs):
        losses.append(loss(*args, **kwargs))
        if len(losses) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return losses[-1]

    run_dir = tmp_path / "run"
    monkeypatch.setattr(trainer, "diffusion_loss", stop_in_the_second_step)
    stopped = run_here("finetune", data, "--scratch", "--config", recipe, "-o", run_dir, "--steps", 3,
                       "--batch-size", 2, "--save-every", 0, "--sample-every", 0, "--probe-every", 0, env=env)
    assert stopped.returncode == 143, stopped.stderr
    assert latest_checkpoint(run_dir / "checkpoints").step == 2
    assert run_here("finetune", data, "-o", run_dir, "--resume", env=env).returncode == 0
    (line,) = [line for line in read_log(run_dir / "log.jsonl") if line["event"] == "train"]
    assert line["step"] == 3 and len(losses) == 3  # steps 1 and 2 before the stop, 3 after
    steps = [(total.detach(), parts["video"], parts["audio"]) for total, parts in losses]
    for key, values in zip(("loss", "loss_video", "loss_audio"), zip(*steps, strict=True), strict=True):
        assert line[key] == pytest.approx(float(sum(values)) / 3, rel=1e-6), key


def test_resuming_a_finished_run_says_so_and_writes_nothing(setup, tmp_path):
    """--resume of a run done at its --steps retrained nothing but logged a second checkpoint and done, and wrote
    model.safetensors again. It says the run is finished, exits 0 and leaves the folder as it was; --steps above
    the run's end trains on."""
    data, recipe, env = setup
    run_dir = tmp_path / "run"
    args = ["--steps", 1, "--batch-size", 2, "--save-every", 0, "--sample-every", 0, "--probe-every", 0]
    assert run_here("finetune", data, "--scratch", "--config", recipe, "-o", run_dir, *args, env=env).returncode == 0
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in run_dir.rglob("*") if path.is_file()}
    again = run_here("finetune", data, "-o", run_dir, "--resume", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stderr == (f"{run_dir}: the run is already finished at step 1 ({run_dir / 'model.safetensors'}); "
                            "nothing to do (give --steps above 1 to train on)\n")
    assert json.loads(again.stdout)["model"] == str(run_dir / "model.safetensors")
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in run_dir.rglob("*") if path.is_file()} == before


def test_a_ctrl_c_in_a_python_finetune_saves_the_step_then_raises_keyboard_interrupt(setup, tmp_path, capsys):
    """From Python, the first Ctrl-C saved a checkpoint and `finetune` returned as if nothing had stopped it (the
    program went on to its next line), having printed `mmgen: stopping after this step…` on stderr from library
    code. The command line's graceful stop is the command line's: a Python caller gets the finished step's
    checkpoint, then the KeyboardInterrupt its Ctrl-C means; nothing is printed (the line is logged)."""
    import logging

    from mmgen.train import finetune
    from mmgen.train.config import resolve_config

    data, _, _ = setup
    config = resolve_config([("test", {"model": MODEL, "steps": 3, "batch_size": 2, "sample_every": 0,
                                       "probe_every": 0, "save_every": 0, "log_every": 1,
                                       "cache_dir": str(tmp_path / "cache")})], scratch=True)
    run_dir, logged = tmp_path / "run", []

    def ctrl_c_after_step_1(event):
        if event.kind == "step" and event.step == 1 and not logged:
            logged.append("sent")
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, to this process

    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logger = logging.getLogger("mmgen.train.interrupt")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with one_thread(), pytest.raises(KeyboardInterrupt):
            finetune(data, run_dir, config, on_event=ctrl_c_after_step_1)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert latest_checkpoint(run_dir / "checkpoints").step == 1
    assert not (run_dir / "model.safetensors").exists()
    assert capsys.readouterr().err == ""
    assert logged == ["sent", "stopping after this step to save a checkpoint"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_python_finetunes_on_event_gets_one_step_event_a_step(setup, tmp_path):
    """`on_event` got two "step" events for each log step (one with no values, then one with them): one a step
    now, with the logged values on a log step."""
    from mmgen.train import finetune
    from mmgen.train.config import resolve_config

    data, _, _ = setup
    config = resolve_config([("test", {"model": MODEL, "steps": 3, "batch_size": 2, "sample_every": 0,
                                       "probe_every": 0, "log_every": 2, "cache_dir": str(tmp_path / "cache")})],
                            scratch=True)
    steps = []
    with one_thread():
        finetune(data, tmp_path / "run", config,
                 on_event=lambda e: steps.append((e.step, sorted(e.values)[:1])) if e.kind == "step" else None)
    assert steps == [(1, []), (2, ["clips_per_s"]), (3, ["clips_per_s"])]


def test_a_run_records_what_it_trained_in_and_a_resume_in_another_precision_records_that(setup, tmp_path):
    """Only the start line said what `device: auto`/`precision: auto` became (`cpu (fp32)`); config.yaml said auto.
    Its `ran_on` records the device and precision each start picked, --json and model.json say them; a resume in
    another precision is no refusal (config.yaml's record is read past) and records the one it trained in. The log
    has a `start` line at each start: its lines of the fp32 step and of the bf16 one could not be told apart."""
    data, recipe, env = setup
    run_dir = tmp_path / "run"
    args = ["--batch-size", 2, "--save-every", 1, "--sample-every", 0, "--probe-every", 0, "--json"]
    first = run_here("finetune", data, "--scratch", "--config", recipe, "-o", run_dir, "--steps", 1, *args, env=env)
    assert first.returncode == 0, first.stderr
    assert {k: json.loads(first.stdout)[k] for k in ("device", "precision")} == {"device": "cpu", "precision": "fp32"}
    assert "\n# ran_on: {device: cpu, precision: fp32}\n" in (run_dir / "config.yaml").read_text()

    again = run_here("finetune", data, "-o", run_dir, "--resume", "--steps", 2, "--precision", "bf16", *args, env=env)
    assert again.returncode == 0, again.stderr
    assert "cpu (bf16)" in again.stderr and json.loads(again.stdout)["precision"] == "bf16"
    assert "\n# ran_on: {device: cpu, precision: bf16}\n" in (run_dir / "config.yaml").read_text()
    training = json.loads((run_dir / "model.json").read_text())["training"]
    assert (training["steps"], training["device"], training["precision"]) == (2, "cpu", "bf16")
    log = read_log(run_dir / "log.jsonl")
    assert [e["event"] for e in log] == ["data", "start", "train", "checkpoint", "done", "start", "train", "checkpoint",
                                         "done"]
    assert [(e["step"], e["device"], e["precision"]) for e in log if e["event"] == "start"] == [
        (0, "cpu", "fp32"), (1, "cpu", "bf16")]  # and the train line after each is of that start


def test_under_torchrun_a_run_stopped_before_its_first_checkpoint_is_started_again_with_torchrun(tmp_path, monkeypatch):
    """A 2-process run killed during its first save: its --resume was refused with the one-process command to
    start it again (`mmgen finetune ...`), where every other hint of a torchrun job gives the torchrun one."""
    from mmgen.errors import UsageError
    from mmgen.train.run_folder import RUN_HEADER, check_start

    clips, stopped = tmp_path / "clips", tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "config.yaml").write_text(f"{RUN_HEADER}{clips}: every setting of this run\nsteps: 2\n")
    (stopped / "log.jsonl").write_text("")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(UsageError) as refused:
        check_start(stopped, clips, resume=True)
    again = f"torchrun --standalone --nproc_per_node 2 -m mmgen finetune {clips} -o {stopped} --config {stopped / 'config.yaml'}"
    assert refused.value.hint == f"start it again with its own settings: {again}; its config.yaml and log.jsonl are replaced"


HOLDER_WITH_A_WORKER = """
import sys, time
from pathlib import Path
import torch
from mmgen.train.run_folder import RunFolderLock
from mmgen.train.workers import ending_with_this_process

RunFolderLock(Path(sys.argv[1])).take()
loader = torch.utils.data.DataLoader(range(100), num_workers=1, worker_init_fn=ending_with_this_process())
batches = iter(loader)
next(batches)
print(*(w.pid for w in batches._workers), flush=True)
time.sleep(60)
"""


def running(pid: int) -> bool:
    """Whether process `pid` is there and not a zombie (a container's init may never reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="flock and the parent-death signal are Linux's")
def test_a_run_killed_with_kill_9_frees_its_folder_at_once_and_its_loader_workers_end_with_it(tmp_path):
    """`finetune --num-workers N` killed with kill -9: its DataLoader workers (forked children) held the run folder's
    lock until they noticed their parent gone (~5 s), and an immediate `--resume` was refused as "in use"."""
    from mmgen.errors import UsageError
    from mmgen.train.run_folder import RunFolderLock

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_WITH_A_WORKER, str(run_dir)], env=mmgen_env(tmp_path),
                              stdout=subprocess.PIPE, text=True)
    (worker,) = map(int, holder.stdout.readline().split())
    with pytest.raises(UsageError, match="in use"):
        RunFolderLock(run_dir).check_free()
    holder.kill()
    holder.wait()
    holder.stdout.close()
    RunFolderLock(run_dir).check_free()  # free at once: no worker holds it
    deadline = time.monotonic() + 1
    while running(worker):
        assert time.monotonic() < deadline, "the loader's worker outlived its run"
        time.sleep(0.02)


def test_a_run_killed_while_pruning_an_old_checkpoint_leaves_only_the_newest_3_complete(tmp_path, monkeypatch):
    """A kill while the oldest checkpoint was being deleted left its step folder with some of its files, forever:
    incomplete, it no longer counted as a checkpoint, so no later save pruned it. Now it is renamed aside (a hidden
    temporary) before it goes, and an incomplete step folder older than the ones kept goes with the next save."""
    from mmgen.train import checkpoint
    from mmgen.train.step_folders import step_folders

    config = config_for("mm-unet", TRAIN_MODEL["config"], "test")
    model = build_model("mm-unet", config)
    folder = tmp_path / "run" / "checkpoints"
    for step in (1, 2, 3):
        save(folder, step, model, config)
    remove = shutil.rmtree

    def killed_midway(path, ignore_errors=False):
        (Path(path) / "ema.safetensors").unlink()  # one file gone, then the process is killed
        raise SystemExit(137)

    monkeypatch.setattr(checkpoint.shutil, "rmtree", killed_midway)
    with pytest.raises(SystemExit):
        save(folder, 4, model, config)  # step 4 saved, step 1 being pruned
    monkeypatch.setattr(checkpoint.shutil, "rmtree", remove)
    assert [c.step for c in step_folders(folder)] == [c.step for c in list_checkpoints(folder)] == [2, 3, 4]

    (folder / "step-0000001").mkdir()  # as a kill left it before: an old step folder emptied half way
    save(folder, 5, model, config)
    assert sorted(p.name for p in folder.iterdir()) == ["step-0000003", "step-0000004", "step-0000005"]


def test_a_pruned_checkpoint_that_is_a_link_leaves_no_hidden_link_behind(tmp_path):
    """A step folder that is a symbolic link (a checkpoint kept on another disk), once pruned, stayed for good as a
    hidden `.step-N.<tag>.partial` link: rmtree refuses a link, and the sweep of each save too. The link goes; the
    folder it points to is the user's."""
    config = config_for("mm-unet", TRAIN_MODEL["config"], "test")
    model = build_model("mm-unet", config)
    folder, elsewhere = tmp_path / "run" / "checkpoints", tmp_path / "other-disk"
    save(folder, 1, model, config)
    elsewhere.mkdir()
    first = folder / "step-0000001"
    first.rename(elsewhere / first.name)
    first.symlink_to(elsewhere / first.name)
    for step in (2, 3, 4):
        save(folder, step, model, config)
    assert sorted(os.listdir(folder)) == ["step-0000002", "step-0000003", "step-0000004"]
    assert (elsewhere / first.name / "ema.safetensors").is_file()


def test_a_training_run_hands_freed_memory_back_once_fragments_grow_it_a_tenth(setup, tmp_path, monkeypatch):
    """The `mmgen` command keeps freed memory for the next step; a finetune run whose process grew 10 % past its
    first step hands it back then, so a long run's peak stays bounded (mmgen.runtime.memory)."""
    import mmgen.runtime.memory as memory
    from mmgen.train import finetune
    from mmgen.train.config import resolve_config

    sizes, released = iter([1000, 1050, 1200]), []
    monkeypatch.setattr(memory, "resident_bytes", lambda: next(sizes) << 20)
    monkeypatch.setattr(memory, "release_freed_memory", lambda: released.append(True))
    data, _, _ = setup
    config = resolve_config([("test", {"model": MODEL, "steps": 3, "batch_size": 2, "sample_every": 0,
                                       "probe_every": 0, "cache_dir": str(tmp_path / "cache")})], scratch=True)
    with one_thread():
        finetune(data, tmp_path / "run", config)
    assert released == [True]
