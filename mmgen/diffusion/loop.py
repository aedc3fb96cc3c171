"""The one loop every sampler runs: take each step (guided when a condition is given) and report progress.

A sampler is a list of `Step`s (where each update starts and lands on the noise scale) plus a step
function; this keeps conditioning and the progress callback in one place instead of in every sampler.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mmgen.diffusion.guidance import Condition, Guide, StepFn
from mmgen.modal import Modal, each
from mmgen.runtime.memory import StepMemory
from mmgen.runtime.stop_signals import check_stop

# Receives {"i": step number from 0, "total": steps, "t": model timestep, "x": state after the step,
# "x0": the step's prediction of the clean sample}.
Callback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Step:
    """One update x(t) → x(t_next): its model timestep (for progress) and ᾱ where it starts and lands."""

    t: int
    alpha_bar: float
    alpha_bar_next: float  # 1.0: the step lands on clean data


@torch.no_grad()
def run_steps(
    step_fn: StepFn,
    steps: Sequence[Step],
    x_T: Modal,
    *,
    condition: Condition | None = None,
    callback: Callback | None = None,
) -> Modal:
    """Run `step_fn` over `steps` from x_T; the step function gets the previous step's x0 (multistep
    solvers need it) and returns (x_next, x0)."""
    guide = None if condition is None else Guide(condition, x_T)
    x, prev_x0 = x_T, None
    memory = StepMemory()
    for i, step in enumerate(steps):
        check_stop()  # a stop that a library swallowed ends the sampling here (stop_signals)
        if guide is None:
            x, x0 = step_fn(x, i, prev_x0)
        else:
            levels, last = (step.alpha_bar, step.alpha_bar_next), i == len(steps) - 1
            x, x0 = guide.step(step_fn, x, i, prev_x0, levels, last)
        prev_x0 = each(torch.Tensor.detach, x0)
        memory.after_step()
        if callback is not None:
            callback({"i": i, "total": len(steps), "t": step.t, "x": x, "x0": x0})
    result = x if guide is None else guide.finish(x)
    memory.done()
    return result
