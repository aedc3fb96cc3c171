"""A damaged newest checkpoint (a truncated copy, a zero-byte file after a full disk) does not end a run: --resume
says which checkpoint it skips, sets it aside and continues from the newest one that loads. And a checkpoint
only ever appears complete: every file and its folder reach the disk before the rename that makes it visible."""

from __future__ import annotations

import errno
import io
import os
import shutil
from pathlib import Path

import pytest
from cli_here import run_here
from finetune_clips import TRAIN_MODEL, write_clip_folder, write_recipe
from mmgen_cli import mmgen_env

from mmgen import files
from mmgen.cli import run
from mmgen.errors import StorageError
from mmgen.models import build_model, config_for
from mmgen.train.checkpoint import (
    Checkpoint,
    list_checkpoints,
    resume_from,
    save_checkpoint,
    set_aside,
    trained_lora,
    unreadable,
)
from mmgen.train.run_weights import RunWeights
from mmgen.train.runlog import read_log

STEPS = 2


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 2-step run with a checkpoint after each step."""
    base = tmp_path_factory.mktemp("damaged")
    data = base / "clips"
    write_clip_folder(data, good=2, seconds=0.6)
    env = mmgen_env(base, OMP_NUM_THREADS="1")
    recipe = write_recipe(base / "recipe.yaml", log_every=1, sample_every=0, probe_every=0)
    run_dir = base / "run"
    done = run_here(
        "finetune", data, "--scratch", "--config", recipe, "-o", run_dir, "--steps", STEPS, "--batch-size", 2,
        "--lr", 1e-3, "--save-every", 1, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return data, run_dir, env


def damage(path: Path, how: str) -> None:
    if how == "missing":  # a step folder copied or pruned by hand
        path.unlink()
    elif how == "zero bytes":
        path.write_bytes(b"")
    else:  # cut off half-way
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("file", "how"), [("model.safetensors", "zero bytes"), ("state.pt", "truncated"), ("state.pt", "missing")]
)
def test_resume_skips_a_damaged_newest_checkpoint_and_continues_from_the_one_before(finished, tmp_path, file, how):
    data, original, env = finished
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir)
    newest = run_dir / "checkpoints" / f"step-{STEPS:07d}"
    damage(newest / file, how)

    resumed = run_here("finetune", data, "-o", run_dir, "--resume", "--steps", STEPS + 1, env=env)
    assert resumed.returncode == 0, resumed.stderr
    (warning,) = [line for line in resumed.stderr.splitlines() if "does not load" in line]
    why = f"({file} is missing)" if how == "missing" else f"({file}: "
    assert warning.startswith(f"warning: checkpoint {newest} does not load {why}")
    assert warning.endswith(f"set aside as step-{STEPS:07d}.damaged, resuming from step 1")
    assert "resuming at step 1" in resumed.stderr
    assert f"done: {STEPS + 1} steps" in resumed.stderr
    # Steps 2 and 3 were trained again and saved; the damaged folder is kept aside for the curious.
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "step-0000001", "step-0000002", "step-0000002.damaged", "step-0000003"]
    assert [c.step for c in list_checkpoints(run_dir / "checkpoints")] == [1, 2, 3]
    assert (run_dir / "checkpoints" / f"step-{STEPS:07d}.damaged" / file).is_file() == (how != "missing")
    assert [e["step"] for e in read_log(run_dir / "log.jsonl") if e["event"] == "train"] == [1, 2, 3]


@pytest.mark.parametrize("how", ["zero bytes", "truncated"])
def test_resume_of_a_finished_run_whose_last_checkpoint_is_damaged_trains_that_step_again(finished, tmp_path, how):
    """A finished run's --resume does nothing only where its last checkpoint is whole: told without loading it, a
    damaged one (ema.safetensors empty or cut short) was taken as the run finished, exit 0, and left in place."""
    data, original, env = finished
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir)
    newest = run_dir / "checkpoints" / f"step-{STEPS:07d}"
    damage(newest / "ema.safetensors", how)

    resumed = run_here("finetune", data, "-o", run_dir, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "already finished" not in resumed.stderr
    (warning,) = [line for line in resumed.stderr.splitlines() if "does not load" in line]
    assert warning.startswith(f"warning: checkpoint {newest} does not load (ema.safetensors: "), warning
    assert f"done: {STEPS} steps" in resumed.stderr
    assert [c.step for c in list_checkpoints(run_dir / "checkpoints")] == [1, 2]
    assert (run_dir / "checkpoints" / f"step-{STEPS:07d}.damaged").is_dir()


@pytest.mark.parametrize("how", ["zero bytes", "truncated", "missing"])
def test_resume_with_no_checkpoint_that_loads_says_they_are_damaged_and_set_aside(finished, tmp_path, monkeypatch,
                                                                                  capsys, how):
    """Every checkpoint damaged: each is named with its reason and set aside (kept), and the error says so and how
    to start again. With a file missing it said "no complete checkpoint", as for a run that never saved one."""
    data, original, env = finished
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir)
    for checkpoint in list_checkpoints(run_dir / "checkpoints"):
        damage(checkpoint.path / "state.pt", how)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert run(["finetune", str(data), "-o", str(run_dir), "--resume"]) == 2
    *warnings, error = capsys.readouterr().err.strip().splitlines()
    why = "state.pt is missing" if how == "missing" else "state.pt: "
    assert [line.split(" does not load ")[0] for line in warnings] == [
        f"warning: checkpoint {run_dir / 'checkpoints' / f'step-{step:07d}'}" for step in (2, 1)]
    assert all(f"does not load ({why}" in line for line in warnings), warnings
    assert warnings[0].endswith("; set aside as step-0000002.damaged"), warnings
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-0000001.damaged",
                                                                           "step-0000002.damaged"]
    # The run had finished: its model is never offered for deletion (the hint listed model.safetensors, model.json
    # and the checkpoints just kept as evidence), and a new start goes to another folder.
    assert error == (
        f"mmgen: error: {run_dir}: nothing to resume: all 2 of its checkpoints are damaged (the warnings above say "
        f"why); set aside in {run_dir / 'checkpoints'} as step-0000001.damaged, step-0000002.damaged (it holds the "
        f"model of a finished run ({run_dir / 'model.json'} {run_dir / 'model.safetensors'}); to start it again with "
        f"its own settings in another folder: mmgen finetune {data} -o NEW_FOLDER --config {run_dir / 'config.yaml'})"
    )
    assert (run_dir / "model.safetensors").is_file()


def test_checkpoints_set_aside_as_damaged_are_never_offered_for_deletion_nor_stand_in_a_new_starts_way(tmp_path):
    """A run stopped before its end whose checkpoints were all set aside: the hint offers the same start again, in
    its own folder, beside the kept evidence; what else is there (previews, a user's file) is named as before."""
    from mmgen.errors import command_line_words
    from mmgen.train.run_folder import RUN_HEADER, failed_start

    run_dir, data = tmp_path / "run", tmp_path / "clips"
    (run_dir / "checkpoints" / "step-0000002.damaged").mkdir(parents=True)
    (run_dir / "checkpoints" / "step-0000002.damaged" / "state.pt").write_bytes(b"")
    (run_dir / "checkpoints" / "step-0000001.damaged-2").mkdir()
    (run_dir / "config.yaml").write_text(f"{RUN_HEADER}{data}: …\n")
    (run_dir / "log.jsonl").write_text("")
    failed = failed_start(run_dir, has_checkpoint=False)
    assert failed.others == () and failed.set_aside == ("step-0000001.damaged-2", "step-0000002.damaged")
    assert failed.hint(data, resume=True) == (f"start it again with its own settings: mmgen finetune {data} -o "
                                              f"{run_dir} --config {run_dir / 'config.yaml'}; its config.yaml and "
                                              "log.jsonl are replaced")
    (run_dir / "samples").mkdir()
    (run_dir / "samples" / "step-0000001.mp4").write_bytes(b"a preview")
    with command_line_words():  # as `mmgen finetune` says it
        assert failed_start(run_dir, has_checkpoint=False).hint(data, resume=False) == (
            f"to start it again here, first delete {run_dir / 'samples'}/; or choose another -o")
        (run_dir / "adapter.safetensors").write_bytes(b"the adapters of a finished LoRA run")
        assert failed_start(run_dir, has_checkpoint=False).hint(data, resume=False) == (
            f"it holds the model of a finished run ({run_dir / 'adapter.safetensors'}); to start it again, choose "
            "another -o")


def test_a_checkpoint_reaches_the_disk_before_it_becomes_visible(tmp_path, monkeypatch):
    """fsync of every file and of the folder, then the rename, then fsync of the parent (for the new name)."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("rename", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    config = config_for("mm-unet", TRAIN_MODEL["config"], "test")
    model = build_model("mm-unet", config)
    folder = tmp_path / "checkpoints"
    saved = save_checkpoint(folder, 7, model=model, ema=model, write=RunWeights(config).write, state={"step": 7}, keep=3)

    rename = events.index(("rename", str(saved.path)))
    synced_before = {Path(path).name for kind, path in events[:rename] if kind == "fsync"}
    assert {"model.safetensors", "ema.safetensors", "state.pt"} <= synced_before
    assert any(name.startswith(".step-0000007.") for name in synced_before)  # the folder itself
    assert ("fsync", str(folder)) in events[rename:]


def test_a_step_damaged_twice_keeps_both_damaged_copies(tmp_path):
    """Step N damaged, resumed, damaged again (another full disk): the first copy set aside stays, as evidence."""
    folders = tmp_path / "checkpoints"
    for damage in ("truncated", "zero bytes"):
        step = folders / "step-0000002"
        step.mkdir(parents=True)
        (step / "model.safetensors").write_text(damage)
        set_aside(Checkpoint(step, 2))
    kept = {p.name: (p / "model.safetensors").read_text() for p in folders.iterdir()}
    assert kept == {"step-0000002.damaged": "truncated", "step-0000002.damaged-2": "zero bytes"}


def _deflated(data: bytes) -> bytes:
    """torch.save's zip archive `data` with every entry compressed, as a zip bomb's are (torch.save's never are)."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for name in source.namelist():
            bomb.writestr(name, source.read(name))
    return out.getvalue()


@pytest.mark.parametrize(("damage_state", "why"), [
    (lambda data: data[: len(data) // 2], "a zip archive cut short or damaged: its index is missing or unreadable"),
    (lambda data: b"\x80\x02garbage", "Unsupported operand 103"),
    (lambda data: _deflated(data), "its entry archive/data.pkl is compressed, which torch.save never does"),
], ids=["cut short", "a garbage pickle", "compressed"])
def test_a_damaged_state_pt_is_said_in_the_few_words_models_import_uses(tmp_path, damage_state, why):
    """The warning quoted torch.load's message cut at 200 characters: a paragraph on miniz, or weights_only's advice
    on PyTorch 2.6, that never reached what was found. It is the short reason `models import` gives."""
    config = config_for("mm-unet", TRAIN_MODEL["config"], "test")
    model = build_model("mm-unet", config)
    saved = save_checkpoint(tmp_path / "checkpoints", 1, model=model, ema=model, write=RunWeights(config).write,
                            state={"step": 1}, keep=1)
    state = saved.path / "state.pt"
    state.write_bytes(damage_state(state.read_bytes()))
    assert resume_from(tmp_path) == (None, [(saved, f"state.pt: {why}")])


def test_a_checkpoint_on_a_failing_disk_is_not_set_aside_as_damaged(finished, tmp_path, monkeypatch):
    """An I/O error reading the newest checkpoint's state.pt is the disk's trouble, exit 1, naming the file: the
    checkpoint may be whole, so it stays where it is. It was "does not load ([Errno 5] …)", set aside as
    step-N.damaged, and the run resumed from the one before, throwing away the steps since."""
    import torch.serialization

    data, original, env = finished
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir)
    newest = run_dir / "checkpoints" / f"step-{STEPS:07d}"

    class BadSector(io.FileIO):
        def read(self, size=-1):
            raise OSError(errno.EIO, "Input/output error")

        readinto = read

    monkeypatch.setattr(torch.serialization, "_open_file",
                        lambda name, mode: torch.serialization._open_buffer_reader(BadSector(name, "rb")))
    resumed = run_here("finetune", data, "-o", run_dir, "--resume", "--steps", STEPS + 1, env=env)
    assert resumed.returncode == 1, resumed.stderr
    assert resumed.stderr.splitlines()[-1] == (
        f"mmgen: error: cannot read {newest / 'state.pt'}: Input/output error (the disk holding it failed; copy it "
        "from a good one and run it again)")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-0000001", "step-0000002"]


@pytest.mark.parametrize(("file", "steps"), [("model.safetensors", STEPS + 1), ("ema.safetensors", STEPS + 1),
                                             ("state.pt", STEPS + 1), ("ema.safetensors", STEPS)])
def test_a_checkpoint_this_user_may_not_read_is_not_set_aside_as_damaged(finished, tmp_path, unreadable, file, steps):
    """A checkpoint's file that this user may not read (EACCES: copied in by another user, mode 600) is the machine's
    trouble, exit 1, `permission denied` naming it: the checkpoint is whole. It was "does not load ([Errno 13] …)" (or
    safetensors' "No such file or directory"), set aside as step-N.damaged, and the run went on from the one before;
    of a finished run (`--steps` reached: is its newest checkpoint whole?) likewise."""
    data, original, env = finished
    run_dir = tmp_path / "run"
    shutil.copytree(original, run_dir)
    denied = run_dir / "checkpoints" / f"step-{STEPS:07d}" / file
    unreadable(denied)
    resumed = run_here("finetune", data, "-o", run_dir, "--resume", "--steps", steps, env=env)
    assert resumed.returncode == 1, resumed.stderr
    assert resumed.stderr.splitlines()[-1] == (
        f"mmgen: error: cannot read {denied}: permission denied (the file is whole as far as mmgen knows: give this "
        "user read access to it)")
    assert "damaged" not in resumed.stderr
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-0000001", "step-0000002"]


def test_what_a_run_trains_is_not_told_from_a_failing_disk(tmp_path, monkeypatch):
    """trained_lora (does --resume go on training what the run trained?) passes over a checkpoint whose header is
    damaged, as resume does; but an I/O error opening it is the disk's trouble (StorageError, exit 1, naming the
    file), not damage: it was passed over as damaged too, by an `except` that took every error, StorageError's
    kind (MmgenError) included."""
    import safetensors

    folder = tmp_path / "checkpoints" / "step-0000002"
    folder.mkdir(parents=True)
    for name in ("model.safetensors", "ema.safetensors", "state.pt"):
        (folder / name).write_bytes(b"x")
    assert trained_lora(tmp_path) is None  # damaged: no header to tell from

    def bad_sector(path, **kwargs):
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(safetensors, "safe_open", bad_sector)
    with pytest.raises(StorageError, match=f"cannot read {folder / 'model.safetensors'}: Input/output error"):
        trained_lora(tmp_path)


def test_whether_a_checkpoint_loads_is_not_told_from_a_failing_disk(tmp_path, monkeypatch):
    """checkpoint.unreadable (does a finished run's --resume have nothing to do?) meets an I/O error opening a
    weights file as load_checkpoint does: the disk's trouble (StorageError, exit 1, naming the file), not a reason the
    checkpoint is damaged — it was "model.safetensors: Input/output error", taken as damage."""
    import safetensors

    folder = tmp_path / "step-0000002"
    folder.mkdir()
    for name in ("model.safetensors", "ema.safetensors", "state.pt"):
        (folder / name).write_bytes(b"x")

    def bad_sector(path, **kwargs):
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(safetensors, "safe_open", bad_sector)
    with pytest.raises(StorageError, match=f"cannot read {folder / 'model.safetensors'}: Input/output error"):
        unreadable(Checkpoint(folder, 2))
