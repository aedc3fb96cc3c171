"""A run whose loss, gradients or weights stop being finite numbers has diverged: it stops with exit 1 and a line
naming the step and which of them went wrong (a finite loss with gradients that are not points at the backward
pass), keeps the checkpoints it saved before (each one checked finite before it is written), and writes no model.

Each step's loss and gradient norm are checked on the device, without waiting for it: the first step that went
wrong is kept in a device tensor and read when the run writes something anyway (a log line, a probe, a preview,
a checkpoint), so a healthy run pays no extra device synchronisation per step.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmgen.errors import MmgenError, in_callers_words
from mmgen.runtime.processes import Processes


class TrainingDiverged(MmgenError):
    """The loss or the weights are no longer finite (exit 1, like any failed job)."""


class DivergenceWatch:
    def __init__(self, device: torch.device, gradients_may_overflow: bool):
        # fp16 training: the gradient scaler skips a step whose gradients overflowed, which is routine.
        self.gradients_may_overflow = gradients_may_overflow
        # the first bad step (-1: none yet) and whether its loss was bad (1) or only its gradients (0)
        self.first_bad = torch.tensor([-1, 0], dtype=torch.int64, device=device)

    def observe(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """Note whether step `step` (1-based) computed a finite loss (and, unless they may overflow, gradients)."""
        loss_bad = ~torch.isfinite(loss.detach())
        bad = loss_bad if self.gradients_may_overflow else loss_bad | ~torch.isfinite(grad_norm)
        now = torch.stack([torch.full_like(self.first_bad[0], step), loss_bad.to(torch.int64)])
        self.first_bad = torch.where(bad & (self.first_bad[0] < 0), now, self.first_bad)

    def check(self, processes: Processes, step: int, last_good: Path | None, *, weights_finite: bool = True) -> None:
        """Raise TrainingDiverged on every process if any process saw a non-finite loss or gradients by step `step`,
        or its weights are not finite now. `last_good` is the newest checkpoint saved, for the message. (The
        gradients are not named: clipping scales every one by a norm that is NaN, so all of them are.)"""
        seen = processes.gather((*self.first_bad.tolist(), weights_finite))
        if all(first < 0 and ok for first, _, ok in seen):
            return
        firsts = [(first, loss_bad) for first, loss_bad, _ in seen if first >= 0]
        if not firsts:
            what = f"the weights after step {step} are not finite"
        else:
            first = min(first for first, _ in firsts)
            loss = any(loss_bad for each, loss_bad in firsts if each == first)
            what = (f"the loss at step {first} is not finite" if loss else
                    f"the gradients at step {first} are not finite, though its loss is")
        kept = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was saved before it"
        lr, warmup = in_callers_words("--lr", "lr="), in_callers_words("--warmup", "warmup=")  # FinetuneConfig's
        clip = in_callers_words("--grad-clip", "grad_clip=")
        raise TrainingDiverged(f"training diverged: {what}; no model written, {kept}",
                               f"lower {lr} (or raise {warmup}, or set {clip}) and start again")
