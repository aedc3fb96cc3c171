"""Two torchrun ranks played one after the other in this process. A real torchrun job takes tens of seconds to
start (tests/test_finetune_distributed.py); a refusal rank 0 decides for everyone needs only the job's one
collective, which a stand-in plays here."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from mmgen.runtime import processes


def run_as_two_ranks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, command: Callable[[], int]
) -> dict[int, tuple[int, str]]:
    """{rank: (exit code, stderr)} of `command` run as rank 0 and then as rank 1 of a two-process job. The
    stand-in gather hands rank 1 what rank 0 gathered, as all_gather_object does: rank 0's word first."""
    rank_0_said = []

    @dataclasses.dataclass(frozen=True)
    class Joined(processes.Processes):
        def gather(self, obj):
            if self.rank == 0:
                rank_0_said.append(obj)
            return [obj if self.rank == 0 else rank_0_said[0], None]

    monkeypatch.setattr(processes, "start", lambda device_type: Joined(**vars(processes.described())))
    monkeypatch.setattr(processes, "stop", lambda joined: None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    capsys.readouterr()
    said = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        said[rank] = (command(), capsys.readouterr().err)
    return said
