"""Outputs appear whole or not at all, and never replace a user's file unasked."""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import pytest
import torch

from mmgen import files
from mmgen.errors import ConfigError, MediaError, OutputExists, StorageError, UsageError
from mmgen.files import atomic_output
from mmgen.locks import sole_holder
from mmgen.media import write_mp4
from mmgen.output_checks import check_writable
from mmgen.weights.cache import ModelCache


def test_a_finished_write_moves_into_place_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "clip.json"
    with atomic_output(target) as temp:
        assert temp.parent == tmp_path and temp.suffix == ".json" and temp != target
        temp.write_text("{}")
        assert not target.exists()
    assert target.read_text() == "{}"
    assert os.listdir(tmp_path) == ["clip.json"]


def test_a_failure_mid_write_leaves_neither_output_nor_temporary(tmp_path):
    target = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError, match="sampler blew up"), atomic_output(target) as temp:
        temp.write_bytes(b"half a file")
        raise RuntimeError("sampler blew up")
    assert os.listdir(tmp_path) == []


def test_a_clip_that_cannot_be_encoded_leaves_nothing_behind(tmp_path):
    video, audio = torch.zeros(4, 3, 16, 16), torch.zeros(1, 4000)
    with pytest.raises(MediaError, match="(?i)AAC cannot store 12345 Hz"):
        write_mp4(tmp_path / "clip.mp4", video, audio, 10, 12345)
    with pytest.raises(ValueError, match="NaN"):
        write_mp4(tmp_path / "clip.mp4", video, audio * float("nan"), 10, 16000)
    assert os.listdir(tmp_path) == []


def test_an_existing_output_is_kept_unless_overwrite_is_given(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"my holiday video")
    with pytest.raises(OutputExists, match="clip.mp4 already exists") as caught:
        write_mp4(target, torch.zeros(2, 3, 16, 16), None, 10, 16000)
    assert caught.value.exit_code == 2
    assert target.read_bytes() == b"my holiday video"

    write_mp4(target, torch.zeros(2, 3, 16, 16), None, 10, 16000, overwrite=True)
    assert target.read_bytes()[4:8] == b"ftyp"
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_a_file_written_again_keeps_the_mode_and_group_it_had(tmp_path):
    """A file mmgen writes again (a run's config.yaml, a model's record, an output under --overwrite) got the umask's
    mode and the writer's group: a user's 0600 config became 0644, a 0664 group file 0644 in another group. It keeps
    its own, as the batch manifest did."""
    config, record, clip = tmp_path / "config.yaml", tmp_path / "model.json", tmp_path / "clip.json"
    for path, mode in ((config, 0o600), (record, 0o664), (clip, 0o640)):
        path.write_text("old")
        path.chmod(mode)
    group = next((g for g in (os.getgroups() if os.geteuid() else [1]) if g != record.stat().st_gid), None)
    if group is not None:  # one of this user's groups (any, as root), the file's: it stays the file's
        os.chown(record, -1, group)
    files.write_text(config, "new")
    files.write_text(record, "new")
    with atomic_output(clip, overwrite=True) as temp:
        temp.write_text("new")
    assert [(path.read_text(), stat.S_IMODE(path.stat().st_mode)) for path in (config, record, clip)] == [
        ("new", 0o600), ("new", 0o664), ("new", 0o640)]
    assert group is None or record.stat().st_gid == group
    assert sorted(os.listdir(tmp_path)) == ["clip.json", "config.yaml", "model.json"]


def test_a_record_retired_first_and_written_again_keeps_its_mode(tmp_path):
    """A model's record (models import --overwrite), a run's model.json (finetune --resume) and an output's sidecar
    (--overwrite) are moved aside first (files.retire: a kill -9 leaves no old record beside new weights), so the
    write found no file to keep the mode of: a user's 0600 record became 0644."""
    record = tmp_path / "model.json"
    record.write_text("old")
    record.chmod(0o600)
    with files.kept_together():
        files.retire(record)
        with files.kept_together():  # (a write in a block inside the one that retired it: the same)
            files.write_text(record, "new")
    assert (record.read_text(), stat.S_IMODE(record.stat().st_mode)) == ("new", 0o600)
    assert os.listdir(tmp_path) == ["model.json"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="root writes over another user's file")
def test_root_writing_a_users_file_again_leaves_it_theirs(tmp_path):
    """`mmgen finetune data -o run1 --resume` run as root over a user's run folder made their 0600 config.yaml
    root's, 0600: its owner could no longer read it."""
    config = tmp_path / "config.yaml"
    config.write_text("old")
    os.chown(config, 1000, 1000)
    config.chmod(0o600)
    files.write_text(config, "new")
    info = config.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1000, 1000, 0o600)


def test_a_name_of_the_longest_legal_length_can_be_written(tmp_path):
    """The temporary file beside it gets a shortened stem, so it fits wherever the target's name fits."""
    target = tmp_path / f"{'a' * 251}.mp4"  # 255 bytes
    with atomic_output(target) as temp:
        assert len(temp.name) <= 255 and temp.suffix == ".mp4"
        temp.write_bytes(b"clip")
    assert os.listdir(tmp_path) == [target.name]


def test_a_name_longer_than_the_filesystem_allows_is_refused_before_any_work(tmp_path):
    with pytest.raises(UsageError, match="its name is 256 bytes, longer than the 255") as caught:
        check_writable(tmp_path / f"{'é' * 126}.mp4")  # 126 two-byte letters: bytes count, not letters
    assert caught.value.exit_code == 2


def test_of_two_runs_writing_one_name_the_later_stops_instead_of_replacing(tmp_path, monkeypatch):
    """Both passed the "exists?" check before sampling; the other run commits just before this one does."""
    target, flush = tmp_path / "clip.mp4", files.fsync_path

    def other_run_commits_first(path):
        flush(path)
        target.write_bytes(b"the other run's clip")

    monkeypatch.setattr(files, "fsync_path", other_run_commits_first)
    with pytest.raises(OutputExists, match="clip.mp4 already exists"), atomic_output(target) as temp:
        temp.write_bytes(b"this run's clip")
    assert target.read_bytes() == b"the other run's clip"
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_a_temporary_another_process_deletes_mid_write_is_said_in_one_line(tmp_path, monkeypatch):
    """An older mmgen's batch in the same folder swept a job's live temporary just before its commit: the job failed
    with "FileNotFoundError: [Errno 2] ... .clip.<tag>.partial.json", naming only the temporary."""
    target, flush = tmp_path / "clip.json", files.fsync_path

    def swept_before_the_commit(path):
        flush(path)
        path.unlink()  # what the other process's sweep of leftover temporaries does

    monkeypatch.setattr(files, "fsync_path", swept_before_the_commit)
    with pytest.raises(StorageError, match=r"cannot write .*clip\.json: its temporary \.clip\..*\.partial\.json was "
                       "deleted while it was being written"), atomic_output(target) as temp:
        temp.write_text("{}")
    assert os.listdir(tmp_path) == []


def no_hard_links(*args, **kwargs):
    raise PermissionError(1, "Operation not permitted")


def test_without_hard_links_a_new_output_is_still_written_and_an_existing_one_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "link", no_hard_links)
    target = tmp_path / "clip.json"
    with atomic_output(target) as temp:
        temp.write_text("{}")
    assert target.read_text() == "{}" and os.listdir(tmp_path) == ["clip.json"]

    late, flush = tmp_path / "late.json", files.fsync_path
    monkeypatch.setattr(files, "fsync_path", lambda path: (flush(path), late.write_text("theirs")))
    with pytest.raises(OutputExists), atomic_output(late) as temp:  # another run commits just before this one
        temp.write_text("{}")
    assert late.read_text() == "theirs" and sorted(os.listdir(tmp_path)) == ["clip.json", "late.json"]


@pytest.mark.parametrize("hard_links", [True, False], ids=["hard links", "no hard links"])
def test_overwritten_files_kept_together_are_all_back_when_a_later_one_fails(tmp_path, monkeypatch, hard_links):
    """--overwrite: a clip's new mp4 replaced the old one, then its sidecar cannot be written. The old pair is
    back; an overwrite that succeeds replaces both and keeps nothing aside."""
    mp4, sidecar = tmp_path / "clip.mp4", tmp_path / "clip.json"
    mp4.write_bytes(b"old clip")
    sidecar.write_text("old sidecar")
    if not hard_links:
        monkeypatch.setattr(os, "link", no_hard_links)

    with pytest.raises(StorageError, match="clip.json: No space left"), files.kept_together():
        with atomic_output(mp4, overwrite=True) as temp:
            temp.write_bytes(b"new clip")
        assert mp4.read_bytes() == b"new clip"
        with atomic_output(sidecar, overwrite=True):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (mp4.read_bytes(), sidecar.read_text()) == (b"old clip", "old sidecar")
    assert sorted(os.listdir(tmp_path)) == ["clip.json", "clip.mp4"]

    with files.kept_together():
        for path in (mp4, sidecar):
            with atomic_output(path, overwrite=True) as temp:
                temp.write_text(f"new {path.suffix}")
    assert (mp4.read_text(), sidecar.read_text()) == ("new .mp4", "new .json")
    assert sorted(os.listdir(tmp_path)) == ["clip.json", "clip.mp4"]


def test_unwritable_places_are_refused_before_any_work(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        check_writable(tmp_path / "no-such-dir" / "clip.mp4")
    with pytest.raises(MediaError, match="is a directory"):
        check_writable(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only directories")
def test_a_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(MediaError, match="not writable"):
            check_writable(locked / "clip.mp4")
    finally:
        locked.chmod(0o700)


def test_a_new_folder_under_one_that_cannot_be_written_says_so(tmp_path, monkeypatch):
    """A read-only mount (which stops root too): the folder to create is not merely missing."""
    locked = tmp_path / "mounted"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(files.os, "access",
                        lambda p, mode: False if os.fspath(p) == os.fspath(locked) else real_access(p, mode))
    with pytest.raises(MediaError, match=f"directory {locked / 'out'} cannot be created, {locked} is not writable"):
        check_writable(locked / "out" / "clip.mp4")


@pytest.mark.skipif(not os.path.isdir("/proc/1"), reason="needs /proc, whose folders take no new files")
def test_a_lock_where_no_file_can_be_made_fails_at_once_instead_of_waiting_forever(monkeypatch):
    """/proc/1 refuses a new file with "no such file", which filelock takes for a lock file that its holder just
    removed: it tried again, forever. Each lock mmgen takes says instead that the folder cannot be written."""
    monkeypatch.setattr(ModelCache, "folder", lambda self, name: Path("/proc/1"))
    takers = {
        "model cache": lambda: ModelCache(Path("/proc")).lock("demo"),
        "batch folder": lambda: sole_holder(Path("/proc/1/.batch-running.lock"), lambda holder: UsageError("in use")),
    }
    outcomes = {}

    def take_each():
        for name, take in takers.items():
            try:
                with take():
                    outcomes[name] = "held"
            except Exception as e:  # what each one says is checked below
                outcomes[name] = e

    taking = threading.Thread(target=take_each, daemon=True)  # on the old code it never came back
    taking.start()
    taking.join(timeout=30)

    assert not taking.is_alive(), f"still waiting after {outcomes}"
    assert isinstance(outcomes["model cache"], ConfigError)
    assert "cache folder /proc/1 cannot be written" in str(outcomes["model cache"])
    assert isinstance(outcomes["batch folder"], FileNotFoundError)  # batch says "cannot write into": test_cli_bad_input


def deep_folder(root: Path, length: int) -> Path:
    """A folder below `root` whose path is `length` bytes (names of at most 200: every one fits a filesystem)."""
    folder = root
    while len(os.fsencode(folder)) < length:
        folder /= "d" * min(200, length - len(os.fsencode(folder)) - 1)
    folder.mkdir(parents=True)
    assert len(os.fsencode(folder)) == length
    return folder


def test_an_output_whose_path_fits_is_written_though_its_temporarys_would_not(tmp_path):
    """A 4095-byte output path is one the system takes; its temporary (`.STEM.OWNER-PID-XXXXXXXX.partial.EXT`, ~30
    bytes more) was refused as "path too long" — naming the temporary. Its stem is shortened to fit instead."""
    output = deep_folder(tmp_path, 4000) / f"{'x' * 90}.txt"
    assert len(os.fsencode(output)) == 4095
    files.write_text(output, "kept")
    assert output.read_text() == "kept" and os.listdir(output.parent) == [output.name]


@pytest.mark.parametrize(("length", "named"), [(4050, "step-0000001/model.safetensors"), (4070, "step-0000001")])
def test_a_path_too_long_for_its_temporary_is_said_of_the_path_written_not_the_temporary(tmp_path, length, named):
    """A folder written whole through a temporary folder (a finetune checkpoint's step-N, an adapter's files), where
    the temporary's path — or a file's inside it — is over what the system takes: the error named the temporary
    (`…/..c2ef8667-7068-19da085c.partial: file name too long`, `…/.step-0000001.….partial/..….partial.safetensors`),
    names the user never gave. It names where the file or folder was to be, as an output's refusal does."""
    folder = deep_folder(tmp_path, length)
    with pytest.raises(UsageError) as refused:
        with files.atomic_path(folder / "step-0000001", folder=True) as temporary:
            files.write_text(temporary / "model.safetensors", "weights")
    said = str(refused.value)
    assert said.startswith(f"cannot write {folder / named}: its folder's path is ") and ".partial" not in said
    assert os.listdir(folder) == []


def test_a_folder_too_long_for_any_temporary_is_refused_naming_the_output(tmp_path):
    """In a folder whose path leaves no room for the temporary, whatever its stem, the output is refused up front,
    named as the user gave it, with the folder's room, not the temporary's path."""
    output = deep_folder(tmp_path, 4080) / "a.mp4"
    with pytest.raises(UsageError) as refused:
        check_writable(output)
    said = str(refused.value)
    assert said.startswith(f"cannot write {output}: its folder's path is 4081 bytes, too long for the temporary the "
                           "file is written as first: the system takes at most 4095 bytes in a path") and ".partial" not in said
