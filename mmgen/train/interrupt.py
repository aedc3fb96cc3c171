"""Ctrl-C (SIGINT), SIGTERM and SIGHUP during training mean "save and stop": the first one only raises a flag that
the training loop reads at the end of its current step, and sets the exit code (mmgen.runtime.stop_signals); a
second Ctrl-C aborts at once. Called from Python (outside a command) the stop is the program's: once the step's
checkpoint is saved it is given to the program's own handler (Python's: KeyboardInterrupt), nothing is printed, and
the line the command says is logged instead (INFO, on the `mmgen.train.interrupt` logger). A second SIGTERM does not: a scheduler's SIGTERM can reach a torchrun worker twice
(directly and forwarded by torchrun), and the checkpoint is what it is asking for. Before the run's first step
has finished there is nothing new to save, so a stop aborts at once: waiting could take long (building a huge
batch, the first step of a big model) and would save what the run folder already holds."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from mmgen.disk_failures import resource_failure
from mmgen.errors import MmgenError
from mmgen.runtime import torchrun
from mmgen.runtime.stop_signals import STOPS, answered_by_the_call, callers_own, record
from mmgen.terminal import say

_log = logging.getLogger(__name__)


class CheckpointNotSaved(MmgenError):
    """A stop asked for a checkpoint ("stopping after this step to save a checkpoint") and the run ended without
    one: what failed instead, in its own words (a full disk's line, say). The command still exits with the stop's
    code; its last line says this, correcting the promise."""

    def __init__(self, step: int, cause: Exception):
        cause = resource_failure(cause) or cause  # the machine's words for it (memory, another process ended)
        why = str(cause) if isinstance(cause, MmgenError) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"no checkpoint saved at step {step}: {why}")


def _abort_hint() -> str:
    """How to abort instead, said with the stop: a second Ctrl-C — but not under torchrun, which passes a second
    Ctrl-C on as SIGTERM (asking again for the checkpoint coming), and whose workers stop for a checkpoint when it
    is killed (torchrun.follow_launcher): only killing the workers themselves (SIGKILL) aborts there."""
    return "" if torchrun.launched() else " (Ctrl-C again to abort without saving)"


class StopRequest:
    """A flag set by a stop signal while the `with` block runs (main thread only; elsewhere it just never fires;
    a signal the shell ignores, e.g. under nohup, stays ignored). Previous handlers are restored on exit."""

    def __init__(self) -> None:
        # says that it will save: under torchrun rank 0 alone, as every process is stopped and saves together
        self.says = torchrun.rank() == 0  # torch-free: the CLI imports this before it loads torch
        self.requested = False
        self.signum = 0  # the stop signal that asked for the checkpoint (0: none yet)
        self.stepped = False  # a step has finished since the run started: from then on a stop saves first
        self._previous: dict[int, object] = {}
        self._callers: list[int] = []  # the stops that asked for a checkpoint and are a Python caller's to answer

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOPS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        answered_by_the_call()  # the stops it recorded are this run's (from Python: its `interrupted`), no later call's

    def pass_on(self) -> None:
        """Once the run has saved what the stop asked for (the step's checkpoint, or at the last step the model), a
        Python caller's stop goes on to its own handler, back in place since the block ended: Python's SIGINT one
        raises KeyboardInterrupt here, a SIGTERM left to its default ends the process. Inside a command, nothing:
        the command answers its stops (its exit code)."""
        for sig in self._callers:
            signal.raise_signal(sig)  # the handler runs before this returns

    def shared(self, signum: int) -> bool:
        """Whether a stop asked the job for a checkpoint: `signum`, the largest stop signal its processes got (0:
        none). A process that learns of the stop from another takes that signal as its own, so it exits with the
        same code and line (143, `interrupted (SIGTERM)`) — it exited 130, as if stopped by Ctrl-C."""
        if signum and not self.requested:
            self.requested = True
            self.signum = signum
            record(signum)
        return bool(signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.stepped:
            record(signum)
            raise KeyboardInterrupt
        if self.requested:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.requested = True
        self.signum = signum
        record(signum)
        if callers_own(self._previous.get(signum)):
            self._callers.append(signum)
            _log.info("stopping after this step to save a checkpoint")
        elif self.says:
            say("")  # below the bar's line
            say(f"mmgen: stopping after this step to save a checkpoint{_abort_hint()}")
