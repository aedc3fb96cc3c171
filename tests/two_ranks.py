"""Two torchrun ranks played one after the other in this process. A real torchrun job takes tens of seconds to
start (tests/test_finetune_distributed.py); a refusal rank 0 decides for everyone needs only the job's one
collective, which a stand-in plays here (the gather before joining, through the job's store, too)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from mmgen.runtime import processes


def in_a_torchrun_job(monkeypatch: pytest.MonkeyPatch, processes_: int) -> None:
    """The environment torchrun gives its processes (WORLD_SIZE, where they meet); each test sets RANK."""
    for name, value in (("WORLD_SIZE", str(processes_)), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")):
        monkeypatch.setenv(name, value)


def every_rank_reads_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each rank, played alone, hears at the gather before joining (processes.before_joining) every other say what
    it said: the ranks of a job that all read the one command line and config file."""

    @dataclasses.dataclass(frozen=True)
    class Alike(processes.Processes):
        def gather(self, obj):
            return [obj] * self.world_size

    monkeypatch.setattr(processes, "before_joining", lambda: Alike(**vars(processes.described())))


def run_as_two_ranks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, command: Callable[[], int],
    rank_1_says: Callable[[Any], Any] | None = None, joined: list[int] | None = None,
) -> dict[int, tuple[int, str]]:
    """{rank: (exit code, stderr)} of `command` run as rank 0 and then as rank 1 of a two-process job. The
    stand-in gather hands each rank every rank's word, in rank order, as all_gather_object does: rank 0, played
    first, hears rank 1 say what it said itself (or `rank_1_says` of it: rank 1 saw things otherwise); rank 1 hears
    what rank 0 said at the same collective. `joined`, where given, gets each rank as it joins the process group."""
    rank_0_said = []
    rank_1_heard = iter(rank_0_said)

    @dataclasses.dataclass(frozen=True)
    class Joined(processes.Processes):
        def gather(self, obj):
            if self.rank == 0:
                rank_0_said.append(obj)
                return [obj, rank_1_says(obj) if rank_1_says else obj]
            word = next(rank_1_heard)
            return [word, rank_1_says(word) if rank_1_says else obj]

        def barrier(self):  # played one after the other: each rank is past the others' looks already
            pass

    def start(device_type: str) -> Joined:
        here = Joined(**vars(processes.described()))
        if joined is not None:
            joined.append(here.rank)
        return here

    monkeypatch.setattr(processes, "start", start)
    monkeypatch.setattr(processes, "before_joining", lambda: Joined(**vars(processes.described())))
    monkeypatch.setattr(processes, "stop", lambda joined: None)
    in_a_torchrun_job(monkeypatch, 2)
    capsys.readouterr()
    said = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        said[rank] = (command(), capsys.readouterr().err)
    return said
