"""`mmgen models rm NAME` removes what killed registrations of an adapter left, as a model's (weights.entry_lock
.remove_files, one path for both): a first `models import --name NAME` killed in another container or host left its
hidden temporary (`.adapter.HOST.BOOT-PID-….partial.safetensors`, an adapter's size) in adapters/NAME with no record,
and rm said `no adapter named 'NAME' is registered` while it stayed there for good."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from mmgen_cli import mmgen_env

from mmgen import temporaries
from mmgen.adapters import store
from mmgen.cli import run

DEAD = 999_999_999  # a process id no process has: what a process killed outright looks like
OTHER = "0badf00d" if temporaries.host() != "0badf00d" else "0badf00e"  # another container's or host's HOST


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)


def _leftover(name: str, process: str) -> Path:
    folder = store.folder_of(name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".adapter.{process}-0123abcd.partial.safetensors"
    path.write_bytes(b"half-copied adapter")
    return path


def _register(name: str) -> None:
    """A registered adapter's record and file, as `models import` leaves them."""
    folder = store.folder_of(name)
    folder.mkdir(parents=True, exist_ok=True)
    data = b"adapter bytes"
    (folder / store.FILE).write_bytes(data)
    record = store.AdapterRecord(name, "demo", "0" * 64, 4, 4.0, "all", hashlib.sha256(data).hexdigest(), len(data),
                                 "/x/adapter.safetensors", "2026-12-03T00:00:00+00:00")
    (folder / store.RECORD).write_text(json.dumps(record.__dict__) + "\n")


@pytest.mark.parametrize("flag", [["--adapter"], []])
def test_rm_of_a_folder_holding_only_a_killed_registrations_temporary_removes_it(flag, capsys):
    left = _leftover("mine", f"{OTHER}.0badf0-{DEAD}")
    assert run(["models", "rm", "mine", *flag]) == 0 and "removed adapter mine" in capsys.readouterr().err
    assert not left.exists() and not store.folder_of("mine").exists()
    assert run(["models", "rm", "mine", "--adapter"]) != 0  # nothing left: said as before
    assert "no adapter named 'mine' is registered" in capsys.readouterr().err


def test_rm_of_a_registered_adapter_keeps_a_running_writers_temporary_here():
    """One path with a model's: a temporary of a process of this machine alive (here: this one) stays, and the
    folder with it; those of dead writers, of any host, go with the adapter."""
    _register("mine")
    running = _leftover("mine", f"{temporaries.owner()}-{os.getpid()}")
    killed = [_leftover("mine", p) for p in (f"{OTHER}-1", f"{temporaries.host()}.0badf0-{DEAD}")]
    assert store.remove("mine")
    assert not any(p.exists() for p in killed)
    assert sorted(store.folder_of("mine").iterdir()) == sorted([store.folder_of("mine") / ".lock", running])
