"""A run that fails says why in one line and leaves behind nothing it made: a model whose weights are finite but
overflow while sampling fails before any file or folder is written, and a run that fails while writing its
first output takes back the output folder it created — a folder that was there stays, and so do the clips
finished before the failure.
"""

from __future__ import annotations

import errno
import importlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cli_here import run_here
from folder_swaps import swapping_after_the_first
from media_factory import write_test_video
from mmgen_cli import REPO, mmgen_env
from tiny_model import tiny_config, tiny_mmunet

from mmgen import files, output_folders, temporaries
from mmgen.errors import FolderReplaced, OutputExists, StorageError
from mmgen.pipelines import GenerateSettings, SoundtrackSettings, generate_files, soundtrack
from mmgen.temporaries import remove_leftovers
from mmgen.weights.checkpoint import save_model

# The package exports functions of these names: the modules themselves, to patch what they write with.
generate_pipeline = importlib.import_module("mmgen.pipelines.generate")
soundtrack_pipeline = importlib.import_module("mmgen.pipelines.soundtrack")

FAST = {"steps": 2, "device": "cpu", "precision": "fp32"}


@pytest.fixture(scope="module")
def overflowing(tmp_path_factory) -> Path:
    """The tiny model with every weight ×1e30: no NaN or Inf in the file, but its activations overflow."""
    state = {k: v * 1e30 if v.is_floating_point() else v for k, v in tiny_mmunet().state_dict().items()}
    path = tmp_path_factory.mktemp("model") / "overflowing.safetensors"
    save_model(path, state, "mm-unet", tiny_config())
    return path


@pytest.mark.parametrize("folder_was_there", [False, True], ids=["new folder", "existing folder"])
def test_a_model_that_overflows_while_sampling_is_one_line_and_writes_nothing(overflowing, tmp_path, folder_was_there):
    out = tmp_path / "clips"
    if folder_was_there:
        out.mkdir()

    done = run_here("generate", "-m", overflowing, "-o", out, "--steps", "2", "--precision", "fp32",
                     env=mmgen_env(tmp_path))

    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"mmgen: error: {overflowing}: sampling gave NaN or Inf values in the ")
    assert "ValueError" not in done.stderr
    assert out.is_dir() == folder_was_there and (not folder_was_there or list(out.iterdir()) == [])


def _disk_full_at_write(monkeypatch, failing_write: int, module=generate_pipeline, writer="write_mp4") -> None:
    """The disk fills up as `module`'s `writer` writes its `failing_write`-th file (from 1)."""
    write, writes = getattr(module, writer), []

    def write_until_full(*args, **kwargs):
        writes.append(args)
        if len(writes) == failing_write:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(*args, **kwargs)

    monkeypatch.setattr(module, writer, write_until_full)


def test_a_run_that_fails_writing_its_first_clip_takes_back_the_folders_it_made(tiny, tmp_path, monkeypatch):
    _disk_full_at_write(monkeypatch, 1)
    out = tmp_path / "renders" / "today"

    with pytest.raises(OSError, match="No space left"):
        generate_files(out, GenerateSettings(model=str(tiny), num=2, **FAST))

    assert list(tmp_path.iterdir()) == []  # neither renders/ nor renders/today/ is left


def test_a_folder_that_was_there_stays(tiny, tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    _disk_full_at_write(monkeypatch, 1)

    with pytest.raises(OSError, match="No space left"):
        generate_files(tmp_path / "mine", GenerateSettings(model=str(tiny), **FAST))

    assert (tmp_path / "mine").is_dir()


def test_the_clips_finished_before_a_failure_stay_in_the_folder_the_run_made(tiny, tmp_path, monkeypatch):
    _disk_full_at_write(monkeypatch, 2)

    with pytest.raises(OSError, match="No space left"):
        generate_files(tmp_path / "new", GenerateSettings(model=str(tiny), num=2, **FAST))

    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [
        "clip_0000.json", "clip_0000.mp4", "clip_0000_frames.png", "clip_0000_spectrogram.png"
    ]


@pytest.mark.parametrize("failure", [(errno.ENOSPC, "No space left on device"), (errno.EFBIG, "File too large")],
                         ids=["disk full", "file size limit"])
def test_a_clip_whose_sidecar_cannot_be_written_is_taken_back_whole(tiny, tmp_path, monkeypatch, failure):
    """The disk fills up (or `ulimit -f` is reached) as clip 2's sidecar is written: its mp4 and previews go too (a
    complete-looking mp4 without a sidecar would make a rerun say "already exists"), and the error names the file.
    Exit 1: the machine failed, not the user's input."""
    write_text, sidecars = Path.write_text, []

    def full_at_the_second_sidecar(self, *args, **kwargs):
        if self.name.endswith(".partial.json"):
            sidecars.append(self)
            if len(sidecars) == 2:
                raise OSError(*failure)
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_at_the_second_sidecar)
    with pytest.raises(StorageError, match=rf"^cannot write .*clip_0001\.json: {failure[1]} \(free some") as caught:
        generate_files(tmp_path / "new", GenerateSettings(model=str(tiny), num=2, **FAST))

    assert caught.value.exit_code == 1
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [
        "clip_0000.json", "clip_0000.mp4", "clip_0000_frames.png", "clip_0000_spectrogram.png"
    ]


@pytest.mark.parametrize("previews", [True, False], ids=["previews", "no previews"])
def test_an_overwrite_whose_sidecar_cannot_be_written_leaves_the_old_clip_as_it_was(tiny, tmp_path, monkeypatch,
                                                                                    previews):
    """--overwrite, and the disk fills up as the new sidecar is written, after the new mp4 and previews replaced
    the old ones (or, with --no-previews, the old previews were taken away): the old mp4, previews and sidecar are
    all back, byte for byte, and nothing else is left (the old sidecar was left describing an mp4 that was gone)."""
    out = tmp_path / "clips"
    generate_files(out, GenerateSettings(model=str(tiny), seed=1, **FAST))
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    write_text = Path.write_text

    def full_at_the_sidecar(self, *args, **kwargs):
        if self.name.endswith(".partial.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(Path, "write_text", full_at_the_sidecar)
        with pytest.raises(StorageError, match=r"^cannot write .*clip_0000\.json: No space left on device"):
            generate_files(out, GenerateSettings(model=str(tiny), seed=2, previews=previews, **FAST),
                           overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old


def test_a_soundtrack_that_fails_writing_takes_back_the_folder_it_made(tiny, tmp_path, monkeypatch):
    video = write_test_video(tmp_path / "holiday.mp4", seconds=1.0).path
    _disk_full_at_write(monkeypatch, 1, soundtrack_pipeline, "replace_audio")

    with pytest.raises(OSError, match="No space left"):
        soundtrack(video, f"{tmp_path / 'scored'}/", SoundtrackSettings(model=str(tiny), **FAST))

    assert [p.name for p in tmp_path.iterdir()] == ["holiday.mp4"]


WRITER = """
import sys
from mmgen.files import atomic_output
with atomic_output(sys.argv[1]) as temp:
    temp.write_bytes(b"a clip")
    print(temp.name, flush=True)
    sys.stdin.read()  # writing, until told to finish
"""


def test_the_bytes_a_temporary_adds_are_its_name_s_and_cost_no_uuid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """temporaries.added_bytes, asked for each planned output (output_checks.check_name_length: 20,000 for `generate
    -n 20000`), made a uuid4 each time to measure a name whose length never changes in a process."""
    made = files.temporary_name(tmp_path / "clip.mp4").name
    assert temporaries.added_bytes() == len(os.fsencode(made)) - len(b"clip.mp4")

    def no_uuid():
        raise AssertionError("uuid4 made to measure a name")

    monkeypatch.setattr(temporaries.uuid, "uuid4", no_uuid)
    assert temporaries.added_bytes() == len(os.fsencode(made)) - len(b"clip.mp4")


def test_a_run_killed_while_writing_leaves_a_temporary_that_the_next_run_there_removes(tiny, tmp_path):
    """kill -9 (or the OOM killer) gives a run no chance to clean up: its temporary stays beside the outputs. The
    next run writing into that folder removes it, but not the temporary of a run still writing there."""
    out = tmp_path / "clips"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    killed, writing = (subprocess.Popen([sys.executable, "-c", WRITER, out / name], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE) for name in ("a.mp4", "b.mp4"))
    left, busy = (out / process.stdout.readline().decode().strip() for process in (killed, writing))
    killed.kill()
    killed.wait()
    assert left.is_file() and busy.is_file()
    elsewhere = out / left.name.replace(left.name.split(".")[2][:8], "00000000")  # another machine's process
    elsewhere.write_bytes(b"")

    generate_files(out, GenerateSettings(model=str(tiny), **FAST))
    assert not left.exists() and busy.is_file() and elsewhere.is_file()
    elsewhere.unlink()

    writing.communicate(b"")
    assert writing.returncode == 0 and (out / "b.mp4").read_bytes() == b"a clip"
    assert sorted(os.listdir(out)) == ["b.mp4", "clip_0000.json", "clip_0000.mp4", "clip_0000_frames.png",
                                       "clip_0000_spectrogram.png"]


def test_an_output_folder_replaced_by_a_file_mid_run_is_one_line_naming_it(tiny, tmp_path, monkeypatch):
    """After clip 1, someone deletes the output folder and puts a file of its name there: clip 2 cannot be
    written. One line naming the folder, exit 1 (it changed under the run; it was fine when the run began), and
    nothing of clip 2 anywhere — not a FileExistsError."""
    out = tmp_path / "outdel"
    write, clips = generate_pipeline.write_generated, []

    def replace_the_folder_after_the_first_clip(*args, **kwargs):
        if clips:
            for p in out.iterdir():
                p.unlink()
            out.rmdir()
            out.write_text("x")
        clips.append(write(*args, **kwargs))
        return clips[-1]

    monkeypatch.setattr(generate_pipeline, "write_generated", replace_the_folder_after_the_first_clip)
    with pytest.raises(StorageError, match=fr"^{out} is a file now, not a folder \(replaced while mmgen wrote into it\); stopped"
                       ) as caught:  # (the API's call holds its folder as the command does: output_folders.same_folders)
        generate_files(out, GenerateSettings(model=str(tiny), num=2, **FAST))

    assert caught.value.exit_code == 1
    assert [p.name for p in tmp_path.iterdir()] == ["outdel"] and out.read_text() == "x"




def test_an_output_folder_removed_or_made_a_file_says_which_and_another_folder_says_replaced(tmp_path):
    """FolderReplaced says what is at the folder's name now: nothing ("was removed"), a file ("is a file now, not a
    folder"), another folder ("was replaced") — it said "was replaced" for all three."""
    out, other = tmp_path / "out", tmp_path / "other"
    out.mkdir()
    other.mkdir()  # made while `out` is there: other inodes (a freed one is reused at once)
    (tmp_path / "file").write_text("x")
    with output_folders.same_folders():
        output_folders.keep_folder(out)
        out.rmdir()
        with pytest.raises(FolderReplaced, match=fr"^{out} is no longer there \(moved, renamed or removed while mmgen wrote "
                                                 r"into it\); stopped"):
            output_folders.check_folders(out / "clip.mp4")
        (tmp_path / "file").rename(out)
        with pytest.raises(FolderReplaced, match=f"^{out} is a file now, not a folder"):
            output_folders.check_folders(out / "clip.mp4")
        out.unlink()
        other.rename(out)
        with pytest.raises(FolderReplaced, match=f"^{out} was replaced while mmgen wrote into it; stopped"):
            output_folders.check_folders(out / "clip.mp4")


def test_a_file_given_a_removed_folders_inode_is_no_folder_of_its_identity(tmp_path):
    """tmpfs gives a freed inode straight back: a folder removed and a file put at its name at once could share its
    device and inode, and pass for it (the run then failed later, as "cannot write …"). Only a folder has a
    folder's identity."""
    folder, file = tmp_path / "folder", tmp_path / "file"
    folder.mkdir()
    file.write_text("x")
    assert output_folders.folder_identity(folder) == (folder.stat().st_dev, folder.stat().st_ino)
    assert output_folders.folder_identity(file) is None and output_folders.folder_identity(tmp_path / "nothing") is None


def test_an_output_folder_swapped_for_a_link_mid_run_stops_writing_through_its_name(tiny, tmp_path, monkeypatch):
    """`mv OUT OUT.old; ln -s VICTIM OUT` after clip 1 of `generate -n 3 --overwrite -o OUT`: clips 2 and 3 went into
    VICTIM, over its files, exit 0. The folder found as the first clip went in is the one every later file must go
    into: one line naming it, exit 1, VICTIM untouched, clip 1 kept in the folder it was written into."""
    out, old, victim = tmp_path / "out", tmp_path / "out.old", tmp_path / "victim"
    victim.mkdir()
    (victim / "clip_0001.mp4").write_text("precious")
    monkeypatch.setattr(generate_pipeline, "write_generated",
                        swapping_after_the_first(generate_pipeline.write_generated, out, old, victim))
    done = run_here("generate", "-m", tiny, "-n", "3", "--steps", "2", "--precision", "fp32", "--no-previews",
                    "--overwrite", "-o", out, env=mmgen_env(tmp_path))

    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"mmgen: error: {out} was replaced while mmgen wrote into it; "
                                                   "stopped"), done.stderr
    assert "Traceback" not in done.stderr
    assert [p.name for p in victim.iterdir()] == ["clip_0001.mp4"] and (victim / "clip_0001.mp4").read_text() == "precious"
    assert sorted(p.name for p in old.iterdir()) == ["clip_0000.json", "clip_0000.mp4"]


def test_an_output_folder_removed_mid_run_is_named_as_typed_and_its_outputs_went_with_it(tiny, tmp_path, monkeypatch):
    """`generate -o od`, od removed (or made a file) after its first clip: the line named od by its absolute path and
    said it "kept the finished output: od/clip_0000.mp4", a file gone with the folder. It says what went with od,
    named inside it (clip_0000.mp4): od/clip_0000.mp4 leads nowhere now."""
    monkeypatch.chdir(tmp_path)
    write = generate_pipeline.write_generated
    for then, went in ((lambda: None, "went with it"),
                       (lambda: Path("od").write_text("x"), "went with the folder that was there")):
        def removing(*args, then=then, **kwargs):
            written = write(*args, **kwargs)
            if Path("od").is_dir():
                shutil.rmtree("od")
                then()
            return written

        monkeypatch.setattr(generate_pipeline, "write_generated", removing)
        done = run_here("generate", "-m", tiny, "-n", "2", "--steps", "1", "--precision", "fp32", "--no-previews",
                        "-o", "od", env=mmgen_env(tmp_path))
        assert done.returncode == 1, done.stderr
        said = done.stderr.splitlines()[-1]
        assert said.startswith("mmgen: error: od "), said
        assert f"; the finished output in it {went}: clip_0000.mp4 (nothing more was written)" in said, said
        assert "kept" not in said
        Path("od").unlink(missing_ok=True)


def test_a_stop_after_the_output_folder_was_renamed_names_its_outputs_inside_it_as_the_error_line_does(
        tiny, tmp_path, monkeypatch):
    """`generate -o od`, `mv od od-old` after its first clip, then Ctrl-C: the stop's line said "kept the finished
    output: od/clip_0000.mp4", a path that leads nowhere; the error line names it inside the folder that went. The stop
    line says the same: od is no longer there, and clip_0000.mp4 went with it."""
    monkeypatch.chdir(tmp_path)
    write = generate_pipeline.write_generated

    def renaming_then_stopped(*args, **kwargs):
        write(*args, **kwargs)
        Path("od").rename("od-old")
        raise KeyboardInterrupt

    monkeypatch.setattr(generate_pipeline, "write_generated", renaming_then_stopped)
    done = run_here("generate", "-m", tiny, "-n", "2", "--steps", "1", "--precision", "fp32", "--no-previews",
                    "-o", "od", env=mmgen_env(tmp_path))
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines()[-1] == ("mmgen: interrupted; od is no longer there (moved, renamed or removed while "
                                            "mmgen wrote into it); the finished output in it went with it: clip_0000.mp4")
    assert sorted(p.name for p in Path("od-old").iterdir()) == ["clip_0000.json", "clip_0000.mp4"]


def test_an_output_folder_removed_while_an_output_is_finished_says_so(tiny, tmp_path, monkeypatch):
    """od removed between a clip's mp4 and its sidecar: `cannot read od/clip_0000.mp4: no such file` (reading it
    back), or a FileNotFoundError and --debug's hint (its sidecar's temporary) — not that the folder went."""
    monkeypatch.chdir(tmp_path)
    outputs_module = importlib.import_module("mmgen.pipelines.outputs")
    describe = outputs_module.describe

    def removing_first(path):
        shutil.rmtree("od")
        return describe(path)

    monkeypatch.setattr(outputs_module, "describe", removing_first)
    done = run_here("generate", "-m", tiny, "-n", "1", "--steps", "1", "--precision", "fp32", "--no-previews",
                    "-o", "od", env=mmgen_env(tmp_path))
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == ("mmgen: error: od is no longer there (moved, renamed or removed while mmgen "
                                            "wrote into it); stopped (what was written before went where that folder "
                                            "went; nothing more was written)")


def test_the_python_api_stops_writing_through_an_output_folder_swapped_mid_call(tiny, tmp_path, monkeypatch):
    """The folder check was the command line's only: `generate_files(OUT, …)` from Python wrote clip 2 into
    the VICTIM a link at OUT's name led to. Each pipeline call, in any thread, holds its output folders as a command
    does."""
    out, old, victim = tmp_path / "out", tmp_path / "out.old", tmp_path / "victim"
    victim.mkdir()
    monkeypatch.setattr(generate_pipeline, "write_generated",
                        swapping_after_the_first(generate_pipeline.write_generated, out, old, victim))
    raised = []

    def call() -> None:  # in a thread of the caller's: no command's context around it
        try:
            generate_files(out, GenerateSettings(model=str(tiny), num=2, previews=False, **{**FAST, "steps": 1}))
        except FolderReplaced as e:
            raised.append(str(e).split(" (")[0])

    worker = threading.Thread(target=call)
    worker.start()
    worker.join()
    assert raised == [f"{out} was replaced while mmgen wrote into it; stopped"]

    assert list(victim.iterdir()) == []
    assert sorted(p.name for p in old.iterdir()) == ["clip_0000.json", "clip_0000.mp4"]


def test_an_overwrite_killed_before_its_sidecar_leaves_no_new_clip_beside_the_old_sidecar(tiny, tmp_path, monkeypatch):
    """--overwrite over a finished clip, killed (kill -9: nothing is undone) after its new mp4 is in place and before
    its new sidecar is: no sidecar describes the new mp4 as the old clip. The next command there refuses the mp4 as
    "exists" without --overwrite; the next one writing there (with it) removes what the killed one kept aside.
    The killed run is a fork of this process (no second start-up of torch), ended by os._exit."""
    out = tmp_path / "clips"
    generate_files(out, GenerateSettings(model=str(tiny), seed=1, previews=False, **FAST))
    old_mp4 = (out / "clip_0000.mp4").read_bytes()
    commit = files._commit

    def killed_before_the_sidecar(temp, target, replace):
        if target.suffix == ".json":
            os._exit(137)
        commit(temp, target, replace)

    with monkeypatch.context() as patched:
        patched.setattr(files, "_commit", killed_before_the_sidecar)
        if (child := os.fork()) == 0:
            try:
                generate_files(out, GenerateSettings(model=str(tiny), seed=2, previews=False, **FAST), overwrite=True)
            finally:
                os._exit(1)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 137

    names = sorted(os.listdir(out))
    assert (out / "clip_0000.mp4").read_bytes() != old_mp4  # the new clip went in; its sidecar never came
    assert [n for n in names if not n.startswith(".")] == ["clip_0000.mp4"]  # the rest is the killed run's, hidden

    with pytest.raises(OutputExists, match="clip_0000.mp4 already exists"):  # refused before any work
        generate_files(out, GenerateSettings(model=str(tiny), seed=2, previews=False, **FAST))
    remove_leftovers(out)  # what the next command writing there does first (outputs.writing)
    assert sorted(os.listdir(out)) == ["clip_0000.mp4"]
