"""DataLoader workers that end with the training process: torch's own check (the worker's parent is gone) comes
only every 5 s (MP_STATUS_CHECK_INTERVAL), or once the clip it is decoding is done, so a run killed with kill -9
left its workers reading clips, holding memory, after it."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable


def ending_with_this_process() -> Callable[[int], None]:
    """A DataLoader's `worker_init_fn` that has each worker end as soon as this process does."""
    return functools.partial(_end_with, os.getpid())  # (a partial of a module's function: spawn pickles it)


def _end_with(trainer: int, worker_id: int) -> None:
    """Linux: the kernel kills the worker when the process that started it dies (PR_SET_PDEATHSIG), or now where it
    died before this asked. Elsewhere torch's own check stands."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # a libc without prctl: torch's own check stands
        return
    if os.getppid() != trainer:
        os.kill(os.getpid(), signal.SIGKILL)
