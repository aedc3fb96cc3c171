"""Progress reports from a pipeline to whoever shows them (a rich bar, plain lines, or nothing).

A pipeline never prints: it calls `progress(ProgressEvent(...))` and the CLI decides how it looks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Task = Literal["jobs", "clips", "windows", "steps", "upscale"]  # jobs: of a batch


@dataclass(frozen=True)
class ProgressEvent:
    """`done` of `total` units of `task` are finished (steps restart from 0 for every batch or window, but an upscaled
    animation's windows' steps count on into its upscaling's: conditional.make_matching). `job`: in a batch, the job
    the count is of, as its line names it (`job 2/5 (animate) b.mp4`); "" outside one."""

    task: Task
    done: int
    total: int
    job: str = ""


ProgressFn = Callable[[ProgressEvent], None]


def quiet(event: ProgressEvent) -> None:
    """The default: report nothing."""
