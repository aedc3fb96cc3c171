"""Whose process table a temporary's or a lock's OWNER names (mmgen.temporaries.owner). It was a hash of the host
name and the PID namespace alone: two hosts of one name, both in the initial PID namespace (`pid:[4026531836]` on
every Linux host), shared one OWNER, and each swept the other's running writes from a folder on NFS as a killed
local process's. The kernel's boot id now tells them apart, the same for every process of one boot."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from mmgen_cli import REPO

from mmgen import temporaries

DEAD = 999_999_999  # a process id no process has: what a process killed outright looks like


@pytest.fixture
def booted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Set this process's boot id (a file standing for Linux's); owner() is asked afresh for each."""
    def boot(boot_id: str) -> str:
        (tmp_path / "boot_id").write_text(f"{boot_id}\n")
        temporaries.owner.cache_clear()
        return temporaries.owner()

    monkeypatch.setattr(temporaries, "BOOT_ID", str(tmp_path / "boot_id"))
    yield boot
    temporaries.owner.cache_clear()


def test_hosts_of_one_name_and_pid_namespace_booted_apart_have_different_owners(booted):
    """Host name and PID namespace are this process's for both: only the boot differs, as on two cloned hosts."""
    one = booted("6b1e0a52-58c1-4e55-9b0a-0c7a5f1d2e01")
    other = booted("c0ffee00-1111-4222-8333-944445555666")
    assert one != other
    assert booted("6b1e0a52-58c1-4e55-9b0a-0c7a5f1d2e01") == one  # one boot: one OWNER


def test_another_hosts_dead_looking_temporary_in_a_shared_folder_is_left_alone(booted, tmp_path: Path):
    """The other host's writer has a pid that is no process here: named with its OWNER, its file stays."""
    booted("c0ffee00-1111-4222-8333-944445555666")
    theirs = tmp_path / f".clip.{temporaries.owner()}-{DEAD}-0123abcd.partial.mp4"
    theirs.write_bytes(b"being written")
    booted("6b1e0a52-58c1-4e55-9b0a-0c7a5f1d2e01")
    mine = tmp_path / f".clip.{temporaries.owner()}-{DEAD}-4567cdef.partial.mp4"
    mine.write_bytes(b"left by a killed run")

    temporaries.remove_leftovers(tmp_path)
    assert theirs.is_file() and not mine.exists()


@pytest.mark.skipif(not os.path.exists("/proc/sys/kernel/random/boot_id"), reason="no boot id (not Linux)")
def test_a_temporary_named_before_the_boot_was_in_owner_is_left_alone(tmp_path: Path):
    """Its writer (an older mmgen, here or on a host of the same name) may run still: read as another table's, it
    is not swept, even where its pid is no process here."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    before = hashlib.sha256(f"{platform.node()}\0{namespace}".encode()).hexdigest()[:8]  # OWNER as it was
    older = tmp_path / f".clip.{before}-{DEAD}-0123abcd.partial.mp4"
    older.write_bytes(b"an older mmgen's")

    temporaries.remove_leftovers(tmp_path)
    assert older.is_file()


def test_every_process_of_one_boot_has_one_owner():
    """A killed run's temporaries are found by the next process's OWNER: it must not change between processes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    other = subprocess.run([sys.executable, "-c", "from mmgen.temporaries import owner; print(owner())"],
                           env=env, capture_output=True, text=True, check=True)
    assert other.stdout.strip() == temporaries.owner()
