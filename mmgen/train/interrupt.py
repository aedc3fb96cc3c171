"""Ctrl-C (SIGINT) and SIGTERM during training mean "save and stop": the first one only raises a flag that the
training loop reads at the end of its current step; a second Ctrl-C aborts at once."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from mmgen.terminal import say


class StopRequest:
    """A flag set by SIGINT/SIGTERM while the `with` block runs (main thread only; elsewhere it just never
    fires). Previous handlers are restored on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        say("\nmmgen: stopping after this step to save a checkpoint (Ctrl-C again to abort without saving)")
