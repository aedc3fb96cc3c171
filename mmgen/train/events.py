"""What the trainer tells its caller while it runs (the CLI draws progress from these)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from mmgen.data.clips import ScanReport


@dataclass(frozen=True)
class TrainEvent:
    kind: Literal["data", "start", "step", "note"]
    step: int = 0
    total: int = 0
    values: dict[str, float] = field(default_factory=dict)
    message: str = ""
    data: ScanReport | None = None


EventFn = Callable[[TrainEvent], None]


def ignore(event: TrainEvent) -> None:
    pass
