"""Progress reports from a pipeline to whoever shows them (a rich bar, plain lines, or nothing).

A pipeline never prints: it calls `progress(ProgressEvent(...))` and the CLI decides how it looks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Task = Literal["jobs", "clips", "windows", "steps", "upscale"]  # jobs: of a batch


@dataclass(frozen=True)
class ProgressEvent:
    """`done` of `total` units of `task` are finished (steps restart from 0 for every batch or window)."""

    task: Task
    done: int
    total: int


ProgressFn = Callable[[ProgressEvent], None]


def quiet(event: ProgressEvent) -> None:
    """The default: report nothing."""
