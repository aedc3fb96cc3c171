"""`mmgen models rm NAME` empties the model's folder: it deleted the record, the weights and `*.part` only, so a
killed writer's hidden temporary (another container's, an older mmgen's: `.model.c2ef8667-PID-….partial.safetensors`,
up to a GB) stayed with the folder, and a second rm said `nothing in the cache (FOLDER)` while it was there. Holding
the model's lock, which every writer of its weights holds (an import, a pull), rm now removes every temporary there
but a running process's of this machine, and the folder with them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mmgen_cli import mmgen_env

from mmgen import temporaries
from mmgen.cli import run
from mmgen.weights import ModelCache

DEAD = 999_999_999  # a process id no process has: what a process killed outright looks like


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelCache:
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    return ModelCache()


def _entry(cache: ModelCache, name: str, *processes: str) -> list[Path]:
    """A cached model's files and a temporary of its weights for each of `processes` (OWNER-PID, or "" for a name
    of an mmgen from before OWNER-PID), as they lie after kills."""
    folder = cache.folder(name)
    folder.mkdir(parents=True)
    cache.record_path(name).write_text("{}\n")
    cache.weights_path(name).write_bytes(b"weights")
    made = []
    for process in processes:
        made.append(folder / f".model.{process}{'-' if process else ''}0123abcd.partial.safetensors")
        made[-1].write_bytes(b"half-written weights")
    return made


def test_rm_removes_every_killed_writers_temporary_and_the_folder(cache, capsys):
    other_table = "0badf00d" if temporaries.host() != "0badf00d" else "0badf00e"
    _entry(cache, "mine", f"{other_table}.0badf0-{DEAD}", f"{other_table}-1", f"{temporaries.host()}.0badf0-{DEAD}", "")
    assert run(["models", "rm", "mine"]) == 0 and "removed mine" in capsys.readouterr().err
    assert not cache.folder("mine").exists()


def test_rm_of_a_folder_holding_only_leftovers_removes_them_and_says_so(cache, capsys):
    left = _entry(cache, "mine", f"0badf00{'e' if temporaries.host() == '0badf00d' else 'd'}-{DEAD}")
    cache.record_path("mine").unlink()
    cache.weights_path("mine").unlink()
    assert run(["models", "rm", "mine"]) == 0 and "removed mine" in capsys.readouterr().err
    assert not left[0].exists() and not cache.folder("mine").exists()


def test_rm_leaves_a_running_writers_temporary_here(cache):
    """A process of this machine alive (here: this one), writing without the lock (a record restamped after a
    hash): its file stays, and the folder with it."""
    running, killed = _entry(cache, "mine", f"{temporaries.owner()}-{os.getpid()}", f"0badf00d.0badf0-{DEAD}")
    assert cache.remove("mine")
    assert running.is_file() and not killed.exists() and sorted(cache.folder("mine").iterdir()) == [
        cache.folder("mine") / ".lock", running]
