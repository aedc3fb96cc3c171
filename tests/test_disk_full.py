"""A full disk under any file mmgen writes is one line naming that file (StorageError, exit 1), and leaves no
half-written file: checkpoints, the model cache, the clip cache, the run log, the batch manifest."""

from __future__ import annotations

import errno
import os
import resource
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch

from mmgen.data import clip_cache
from mmgen.errors import StorageError
from mmgen.pipelines.batch.manifest import Manifest, Record
from mmgen.train.checkpoint import save_checkpoint
from mmgen.train.runlog import RunLog
from mmgen.weights.checkpoint import save_model

# What safetensors 0.8 raises when the disk fills under save_file: not an OSError.
LIBRARY_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


@pytest.fixture
def full_safetensors(monkeypatch):
    def full(*args, **kwargs):
        raise safetensors.SafetensorError(LIBRARY_FULL)

    monkeypatch.setattr(safetensors.torch, "save_file", full)


def test_a_model_saved_on_a_full_disk_is_one_line_naming_it(tmp_path, full_safetensors):
    """`models import` into the cache, or any weights file mmgen writes."""
    target = tmp_path / "cache" / "y.safetensors"
    with pytest.raises(StorageError, match=f"cannot write {target}: No space left on device") as raised:
        save_model(target, {"w": torch.zeros(2)}, "mmdiff", {})
    assert raised.value.exit_code == 1 and "free some space" in str(raised.value)
    assert os.listdir(target.parent) == []


def test_a_checkpoint_saved_on_a_full_disk_is_one_line_naming_it_and_leaves_no_half_checkpoint(tmp_path, full_safetensors):
    model = torch.nn.Linear(2, 2)

    def write(path, module, metadata):
        save_model(path, module, "mmdiff", {}, metadata)

    final = tmp_path / "checkpoints" / "step-0000001" / "model.safetensors"  # not the temporary folder's file
    with pytest.raises(StorageError, match=f"cannot write {final}: No space left on device"):
        save_checkpoint(tmp_path / "checkpoints", 1, model=model, ema=model, write=write, state={}, keep=2)
    assert os.listdir(tmp_path / "checkpoints") == []


def test_a_clip_cache_shard_written_on_a_full_disk_is_one_line_naming_it(tmp_path, full_safetensors):
    shard = tmp_path / "shard.safetensors"
    with pytest.raises(StorageError, match=f"cannot write {shard}: No space left"):
        clip_cache._write_atomic(shard, lambda tmp: clip_cache.save_file({"v": torch.zeros(1)}, tmp, {}))
    assert os.listdir(tmp_path) == []


@contextmanager
def file_size_limit(size: int):
    """Writes past `size` bytes fail with EFBIG in this process (RLIMIT_FSIZE, its SIGXFSZ ignored), as they
    would on a full disk — for libraries that write through their own code, not a patched Python call."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_checkpoint_whose_training_state_meets_a_full_disk_is_one_line_naming_it(tmp_path):
    """torch.save says a failed write as a RuntimeError without an errno ("unexpected pos 704 vs 598"): state.pt
    was `RuntimeError: [enforce fail at inline_container.cc:672] …`, exit 1, no file named."""
    model = torch.nn.Linear(2, 2)

    def write(path, module, metadata):
        save_model(path, module, "mmdiff", {}, metadata)

    final = tmp_path / "checkpoints" / "step-0000001" / "state.pt"
    with file_size_limit(64 * 1024), pytest.raises(StorageError) as raised:  # the weights fit; the state does not
        save_checkpoint(tmp_path / "checkpoints", 1, model=model, ema=model, write=write,
                        state={"step": 1, "moments": torch.zeros(100_000)}, keep=2)
    assert str(raised.value).startswith(f"cannot write {final}: File too large (free some space")
    assert raised.value.exit_code == 1 and os.listdir(tmp_path / "checkpoints") == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux): every write to it is ENOSPC")
def test_the_run_log_on_a_full_disk_is_one_line_naming_it():
    with pytest.raises(StorageError, match="cannot write /dev/full: No space left on device"):
        RunLog(Path("/dev/full")).write("train", 1, loss=0.5)


def _full_at_fsync(monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def _record(output: str) -> Record:
    return Record(output=output, state="started", hash="h", job=0, kind="generate", seed=1)


def test_a_batch_manifest_that_cannot_be_written_is_one_line_naming_it_and_not_left_empty(tmp_path, monkeypatch):
    manifest = Manifest(tmp_path)
    _full_at_fsync(monkeypatch)
    with pytest.raises(StorageError, match=f"cannot write {manifest.path}: No space left on device"):
        manifest.append(_record("a.mp4"))
    assert not manifest.path.exists()


def test_a_batch_manifest_record_cut_by_a_full_disk_is_taken_back(tmp_path, monkeypatch):
    manifest = Manifest(tmp_path)
    manifest.append(_record("a.mp4"))
    before = manifest.path.read_bytes()
    _full_at_fsync(monkeypatch)
    with pytest.raises(StorageError):
        manifest.append(_record("b.mp4"))
    assert manifest.path.read_bytes() == before


def test_a_failing_read_of_an_input_inside_an_atomic_write_names_the_input_not_the_output(tmp_path):
    """An I/O error while reading an input as an output is written (a copy, a remux's source) said `cannot write
    OUTPUT`; it names the input. A failure of the output's own writes (its temporary, a copy's destination) and a
    full disk, which only a write meets, still name the output. /proc/self/mem at offset 0 is a real EIO on read."""
    from mmgen.disk_failures import reading
    from mmgen.errors import StorageError as Storage
    from mmgen.files import atomic_path, copy_into

    target, unreadable = tmp_path / "out.bin", Path("/proc/self/mem")
    if not unreadable.exists():
        pytest.skip("needs /proc/self/mem")
    with pytest.raises(Storage, match=f"^cannot read {unreadable}: Input/output error \\(the disk holding it"):
        with atomic_path(target) as tmp:
            copy_into(unreadable, tmp)  # what `models import` does with an adapter file
    with pytest.raises(Storage, match=f"^cannot read {unreadable}: Input/output error"):
        with atomic_path(target) as tmp, open(unreadable, "rb") as source, reading(unreadable):
            tmp.write_bytes(source.read(16))
    source = tmp_path / "in.mp4"
    import av.error

    with pytest.raises(Storage, match=f"^cannot read {source}: Input/output error"):
        with atomic_path(target):
            av.error.err_check(-errno.EIO, str(source))  # what PyAV raises when reading a remux's source fails
    for named in ("{tmp}", "{target}"):
        with pytest.raises(Storage, match=f"^cannot write {target}: Input/output error"):
            with atomic_path(target) as tmp:
                raise OSError(errno.EIO, "Input/output error", named.format(tmp=tmp, target=target))
    with pytest.raises(Storage, match=f"^cannot write {target}: No space left on device"):
        with atomic_path(target) as tmp:  # shutil's sendfile copy names its source for a full disk too
            raise OSError(errno.ENOSPC, "No space left on device", str(source))
    assert os.listdir(tmp_path) == []
