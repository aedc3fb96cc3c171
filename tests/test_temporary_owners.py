"""Whose process table a temporary's or a lock's OWNER names (mmgen.temporaries.owner: HOST.BOOT), and which
temporaries of this HOST are a killed run's (mmgen.temporaries.left_behind). OWNER was a hash of the host name and
the PID namespace alone (HOST): two hosts of one name, both in the initial PID namespace, swept each other's running
writes from a folder on NFS. Then it hashed the boot id in as well, and a temporary of an older mmgen killed here
(HOST-PID), or of this host before a power cut, was never swept again: a model's half-written weights stayed in the
cache for good. Now BOOT is a part of its own: this boot's go by their pid, another boot's or an older mmgen's when
they last changed before this boot began (an older mmgen's also by its own rule, its pid dead here)."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mmgen_cli import REPO

from mmgen import lock_holders, locks, temporaries

DEAD = 999_999_999  # a process id no process has: what a process killed outright looks like
OTHER_BOOT = "0badf0"  # BOOT of a boot that is not this one's (a host of the same name, or this one before)
# mmgen's pattern of a temporary until 2026-12-03 (993ecef): what an older mmgen sweeps, where OWNER is its own
OLDER_LEFTOVER = re.compile(r"\..*\.(?P<owner>[0-9a-f]{8})-(?P<pid>[1-9][0-9]{0,8})-[0-9a-f]{8}\.partial(\.[^.]*)?")


def _host() -> str:
    """HOST as an older mmgen hashes it (its whole OWNER): host name and PID namespace."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{platform.node()}\0{namespace}".encode()).hexdigest()[:8]


@pytest.fixture
def boot_began(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Set when this boot began (a /proc/stat of the test's own), seconds from now."""
    def began(seconds_from_now: float) -> None:
        (tmp_path / "stat").write_text(f"cpu  1 2 3\nbtime {int(time.time() + seconds_from_now)}\nprocesses 9\n")

    monkeypatch.setattr(temporaries, "PROC_STAT", str(tmp_path / "stat"))
    return began


def _temporary(folder: Path, process: str, data: bytes = b"0123") -> Path:
    """A temporary of `process` (OWNER-PID) for clip.mp4 in `folder`."""
    path = folder / f".clip.{process}-0123abcd.partial.mp4"
    path.write_bytes(data)
    return path


def test_hosts_of_one_name_booted_apart_share_host_not_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """HOST stays an older mmgen's OWNER, so both agree on "this host's"; BOOT tells two boots apart."""
    monkeypatch.setattr(temporaries, "BOOT_ID", str(tmp_path / "boot_id"))
    owners = []
    for boot_id in ["6b1e0a52-58c1-4e55-9b0a-0c7a5f1d2e01", "c0ffee00-1111-4222-8333-944445555666"]:
        (tmp_path / "boot_id").write_text(f"{boot_id}\n")
        temporaries.boot.cache_clear()
        owners.append(temporaries.owner())
    monkeypatch.undo()
    temporaries.boot.cache_clear()  # this boot's again
    assert owners[0] != owners[1] and {owner.split(".")[0] for owner in owners} == {_host()}
    assert re.fullmatch(r"[0-9a-f]{8}\.[0-9a-f]{6}", temporaries.owner())


def test_another_boots_temporary_changed_after_this_boot_began_is_a_live_writers_and_stays(tmp_path, boot_began):
    """A host of the same name sharing the folder writes it now: its pid says nothing here, and it stays."""
    boot_began(-3600)
    theirs = _temporary(tmp_path, f"{_host()}.{OTHER_BOOT}-{DEAD}")
    mine = _temporary(tmp_path, f"{temporaries.owner()}-{DEAD}", b"left by a killed run")
    temporaries.remove_leftovers(tmp_path)
    assert theirs.is_file() and not mine.exists()


def test_another_boots_temporary_last_changed_before_this_boot_is_swept(tmp_path, boot_began):
    """Left by a power cut: its writer died with the boot it ran in (the pid may be anyone's now: it is not asked)."""
    boot_began(+60)  # this boot began after the file was written
    before = _temporary(tmp_path, f"{_host()}.{OTHER_BOOT}-{os.getpid()}")
    other_host = "0badf00d" if _host() != "0badf00d" else "0badf00e"
    elsewhere = _temporary(tmp_path, f"{other_host}.{OTHER_BOOT}-{DEAD}", b"another host's")
    temporaries.remove_leftovers(tmp_path)
    assert not before.exists() and elsewhere.is_file()  # another HOST's: never


def test_an_older_mmgens_temporary_of_a_killed_run_here_is_swept(tmp_path, boot_began):
    """`.model.c2ef8667-PID-....partial.safetensors` of an older mmgen killed in this boot: its pid is dead here,
    and it goes as that mmgen would have swept it."""
    boot_began(-3600)
    killed = _temporary(tmp_path, f"{_host()}-{DEAD}", b"half-written weights")
    temporaries.remove_leftovers(tmp_path)
    assert not killed.exists()


def test_an_older_mmgens_temporary_goes_by_its_pid_and_this_boot(tmp_path, boot_began):
    """Its pid alive here: kept while it changed in this boot (that mmgen may be writing it), swept where it last
    changed before this boot began (the pid is someone else's now)."""
    running = _temporary(tmp_path, f"{_host()}-{os.getpid()}")
    boot_began(-3600)
    assert temporaries.leftovers(tmp_path) == []
    boot_began(+60)
    assert temporaries.leftovers(tmp_path) == [running]


def test_this_boots_temporary_goes_by_its_pid_alone(tmp_path, boot_began):
    boot_began(+60)  # (a clock set back: this boot's files are never judged by time)
    running = _temporary(tmp_path, f"{temporaries.owner()}-{os.getpid()}")
    assert temporaries.leftovers(tmp_path) == [] and running.is_file()


def test_an_older_mmgen_reads_a_new_name_as_no_temporary_of_its_own():
    """An older mmgen (its OWNER is HOST) must not sweep a live new writer's file: its pattern finds no OWNER-PID in
    the new name, nor does its named_after (OWNER of 8 hex digits, then the pid)."""
    name = f".clip.{temporaries.owner()}-{DEAD}-0123abcd.partial.mp4"
    assert temporaries.LEFTOVER.fullmatch(name) and not OLDER_LEFTOVER.fullmatch(name)
    assert not re.fullmatch(r"\.clip\.[0-9a-f]{8}-[1-9][0-9]{0,8}-[0-9a-f]{8}\.partial\.mp4", name)


def test_named_after_finds_new_and_older_temporaries_with_their_process(tmp_path):
    target = tmp_path / "clip.mp4"
    new = _temporary(tmp_path, f"{temporaries.owner()}-{DEAD}")
    older = _temporary(tmp_path, f"{_host()}-{DEAD}")
    assert sorted(temporaries.named_after(target)) == sorted(
        [(new, f"{temporaries.owner()}-{DEAD}"), (older, f"{_host()}-{DEAD}")])


def test_named_after_reads_owner_pid_as_process_names_it(tmp_path, monkeypatch):
    """named_after reads OWNER-PID by PROCESS, the one pattern of it (leftovers and not_running read it so too): a
    name that PROCESS comes to take (here a BOOT of 8 hex digits) is the target's temporary to named_after too."""
    monkeypatch.setattr(temporaries, "PROCESS", temporaries.PROCESS.replace("{6}", "{8}"))
    longer = _temporary(tmp_path, f"{_host()}.0123abcd-{DEAD}")
    assert temporaries.named_after(tmp_path / "clip.mp4") == [(longer, f"{_host()}.0123abcd-{DEAD}")]


def test_a_lock_line_of_this_host_without_a_boot_names_its_pid_only_where_it_holds_the_lock(tmp_path, monkeypatch):
    """`HOST-PID` (an mmgen before the boot was in OWNER) could be a host of the same name's: its pid is named
    where /proc/locks shows it holding the file, as a bare pid is; another boot's is another table's."""
    path = tmp_path / ".batch-running.lock"
    with locks.file_lock(path):
        path.write_text(f"{_host()}-{os.getpid()} mmgen batch\n")
        assert lock_holders.holder(path) == lock_holders.Holder(os.getpid(), "mmgen batch")  # listed as holding it
        monkeypatch.setattr(lock_holders, "PROC_LOCKS", str(tmp_path / "no-locks"))
        (tmp_path / "no-locks").write_text("")
        assert lock_holders.holder(path) is None
        path.write_text(f"{_host()}.{OTHER_BOOT}-{os.getpid()} mmgen batch\n")
        assert lock_holders.holder(path) == lock_holders.Holder(None, "mmgen batch")


def test_every_process_of_one_boot_has_one_owner():
    """A killed run's temporaries are found by the next process's OWNER: it must not change between processes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    other = subprocess.run([sys.executable, "-c", "from mmgen.temporaries import owner; print(owner())"],
                           env=env, capture_output=True, text=True, check=True)
    assert other.stdout.strip() == temporaries.owner()
