"""How an adapter is shaped — rank, alpha, which layers — as the run's flags chose it: plain values, checked when
made (no torch here, so `mmgen finetune --help` and its flag checks stay quick)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from mmgen.errors import UsageError, in_callers_words

Targets = Literal["attention", "attention+conv", "all"]
TARGETS: tuple[Targets, ...] = ("attention", "attention+conv", "all")


@dataclass(frozen=True)
class LoraSpec:
    """How an adapter is shaped: what the run's `--lora/--lora-alpha/--lora-targets` chose."""

    rank: int
    alpha: float
    targets: Targets = "attention+conv"

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise UsageError(f"{in_callers_words('--lora', 'lora_rank')}: the rank must be at least 1, got {self.rank}")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise UsageError(f"{in_callers_words('--lora-alpha', 'lora_alpha')} must be a positive number, "
                             f"got {self.alpha}")
        if self.targets not in TARGETS:
            raise UsageError(f"{in_callers_words('--lora-targets', 'lora_targets')}: {self.targets!r} is not one of "
                             f"{', '.join(TARGETS)}")
