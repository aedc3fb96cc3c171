"""SIGINT (Ctrl-C), SIGTERM (`kill`, `docker stop`, a cluster's preemption) and SIGHUP (the terminal went away)
all mean "stop": while a command runs each one raises KeyboardInterrupt, so one code path cleans up after all
three, and the command exits 128 + the signal's number (130, 143, 129: the shell's code for "stopped by it").
For the few milliseconds in which an output's files are put in place together (`stops_held`), a stop waits; so it
does while a call loads a module for the first time (torch, scipy, torch._dynamo: `first_imports_held`).
Python swallows an exception raised where nothing can catch it — a weakref callback, importlib's module-lock `cb`
("Exception ignored in: …") — and so does a library's bare `except:`: a stop raised there is lost, and the command
would run on to its end. So the stop is recorded too, and `check_stop` raises it again at the next safe point (each
sampling step, an output about to be written, the subcommands imported): the command still stops before it writes
anything, and Python's "Exception ignored" traceback for it is never printed.

Before and after the command a stop is only recorded, never raised (one recorded before it stops it as it
begins): one that comes while the interpreter shuts
down (torch's atexit handlers take a while) cannot print a traceback or leave an exit 0 — it turns a finished
command's 0 into the stop's code, with the same one-line message (the outputs are complete). A signal that the
shell ignores for us (`nohup`, a background job's SIGINT) stays ignored. Standard library only: `mmgen` installs
this before torch loads.
"""

from __future__ import annotations

import atexit
import builtins
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOPS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_received: list[int] = []  # every stop signal, in order
_answered = 0  # how many of them the command's exit code already answers for
_raising = False  # inside `stops_interrupt`: a stop raises KeyboardInterrupt
_exit_code: int | None = None  # what `final_code` decided for the process
_held = 0  # inside `stops_held` (nested): a stop is only recorded, and raised as the outermost hold ends
_deferred = False  # a stop came while held
_raised = False  # a stop raised KeyboardInterrupt in this command: every `check_stop` from now on raises it again
_owned = False  # own_process ran: the process's stops are mmgen's until it exits
_hooked = 0  # how many calls are inside `first_imports_held` (any thread): the import hook is in while one is
_hook_lock = threading.Lock()


def _on_stop(signum: int, frame: FrameType | None) -> None:
    global _deferred
    _received.append(signum)
    if _raising:
        if _held:
            _deferred = True
            return
        _stop_now()


def _stop_now() -> None:
    global _raised
    _raised = True
    raise KeyboardInterrupt


def check_stop() -> None:
    """A safe point of a command: where a stop raised KeyboardInterrupt that went no further (swallowed by Python in
    a weakref or module-lock callback, or by a library's bare `except:`), it is raised again here. Nothing happens
    inside `stops_held`, outside a command, or off the main thread."""
    if _raised and _raising and not _held and threading.current_thread() is threading.main_thread():
        raise KeyboardInterrupt


def _unraisable(unraisable: object) -> None:
    """sys.unraisablehook while a command runs: a stop's KeyboardInterrupt that Python could not raise (a weakref
    callback's) is no traceback — the stop is recorded, and `check_stop` raises it again; anything else is said as
    before."""
    if isinstance(getattr(unraisable, "exc_value", None), KeyboardInterrupt) and _received:
        return
    _previous_unraisable(unraisable)


_previous_unraisable = sys.unraisablehook


@contextmanager
def stops_held() -> Iterator[None]:
    """A stop that comes while the block runs waits for it to end, then raises KeyboardInterrupt there (if the
    block ended without an exception of its own; else that one goes on, and `stopped()` says what it means).
    For the few milliseconds in which several renames must all happen or none (mmgen.files.kept_together): a
    stop lands before them or after, never between. Outside a command (a Python caller of mmgen's API, whose
    handlers are its own or Python's) the outermost hold defers the caller's handlers itself: a stop is kept
    until the block ends, the caller's handlers come back, and the stop is then given to them (Python's own
    raises KeyboardInterrupt there; a SIGTERM left to its default ends the process, with the files in place).
    Only the main thread receives signals: elsewhere this does nothing."""
    global _held, _deferred
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    callers = None if _held else _defer_callers_stops()
    if not _held:
        _deferred = False  # (a stop from here to the next line raises at once: nothing is held yet)
    _held += 1
    try:
        yield
    except BaseException:
        _release()
        _give_back(callers)  # a stop it kept raises here, the block's own exception as its context
        raise
    deferred = _release()
    _give_back(callers)
    if deferred and _raising:
        _stop_now()


def _held_import(name: str, globals: dict | None = None, locals: dict | None = None, fromlist: tuple = (),
                 level: int = 0) -> object:
    """builtins.__import__ during an mmgen call: an import that loads a module for the first time runs inside
    `stops_held`, so a stop that comes meanwhile raises as the import statement ends, every module it loaded whole.
    A KeyboardInterrupt raised inside a library's import takes back the module it cut short but keeps the submodules
    already loaded, and the library then fails in every later call of the process: sympy, half-loaded by the first
    torch.broadcast_shapes, said `module 'sympy' has no attribute 'core'`. torch itself starts in C++ that calls back
    into Python (pybind11: torch.distributed's c10d init): a KeyboardInterrupt raised in such a callback aborted the
    process (`terminate called after throwing an instance of 'pybind11::error_already_set'`, exit 134). An import of
    what is loaded already (a module, and each name of its `from … import` list) goes straight through. (Not in the
    loader: a stop raised there would have the whole import taken back.)"""
    if not level and _loaded(name, fromlist):
        return _previous_import(name, globals, locals, fromlist, level)
    with stops_held():
        return _previous_import(name, globals, locals, fromlist, level)


def _loaded(name: str, fromlist: tuple | None) -> bool:
    """Whether `import name` / `from name import *fromlist` loads nothing: the module, and each name from it, there
    already (read from its __dict__: a lazy module's __getattr__ would load a submodule here, outside the hold)."""
    module = sys.modules.get(name)
    if module is None:
        return False
    if fromlist:
        names = module.__dict__
        for attribute in fromlist:
            if attribute not in names:
                return False
    return True


@contextmanager
def first_imports_held() -> Iterator[None]:
    """While any mmgen call runs (a command, or a Python program's pipeline call, from any thread), each module's
    first import holds a stop until it ends (_held_import). Imports of what is loaded already cost ~0.3 µs more
    meanwhile; after the last call ends, the hook is gone."""
    global _hooked, _previous_import
    with _hook_lock:
        if not _hooked and builtins.__import__ is not _held_import:
            _previous_import = builtins.__import__
            builtins.__import__ = _held_import
        _hooked += 1
    try:
        yield
    finally:
        with _hook_lock:
            _hooked -= 1
            if not _hooked and builtins.__import__ is _held_import:  # (not a hook a program set meanwhile)
                builtins.__import__ = _previous_import


_previous_import = builtins.__import__


def _defer_callers_stops() -> tuple[dict[int, object], list[int]]:
    """Outside a command, each stop signal's handler that is the caller's (or Python's) replaced by one that only
    keeps the signal: the handlers replaced, and the list the signals that come are kept in. A signal ignored, one
    with our own handler (a command runs, or the `mmgen` process records stops: `_on_stop` defers them already)
    or with a handler not set from Python is left as it is."""
    came: list[int] = []

    def keep(signum: int, frame: FrameType | None) -> None:
        came.append(signum)

    return {sig: signal.signal(sig, keep) for sig in STOPS if callers_own(signal.getsignal(sig))}, came


def callers_own(handler: object) -> bool:
    """Whether a stop signal's `handler` (as signal.getsignal gives it) is a Python caller's own or Python's (its
    default: SIGINT raises KeyboardInterrupt, SIGTERM ends the process) — mmgen called from Python, outside a
    command — rather than a command's (`_on_stop`), ignored, or set outside Python (None)."""
    return handler is not None and handler is not signal.SIG_IGN and handler is not _on_stop


def _give_back(callers: tuple[dict[int, object], list[int]] | None) -> None:
    """The caller's handlers back (`_defer_callers_stops`), then each stop kept meanwhile sent again, to them."""
    if callers is None:
        return
    replaced, came = callers
    for sig, handler in replaced.items():
        signal.signal(sig, handler)
    for sig in dict.fromkeys(came):
        signal.raise_signal(sig)  # its handler runs before this returns: Python's SIGINT one raises KeyboardInterrupt


def _release() -> bool:
    """End one hold; whether it was the outermost one and a stop came during it."""
    global _held, _deferred
    _held -= 1  # first: a stop from here on raises at once (one before it was deferred, and is read next)
    if _held or not _deferred:
        return False
    _deferred = False
    return True


def record(signum: int) -> None:
    """A stop that another handler took (training's "save after this step"): it still sets the exit code."""
    _received.append(signum)


def answered_by_the_call() -> None:
    """The stops `record`ed so far are answered by the call that took them, when it runs outside a command (a
    Python program's `finetune`, stopped, returns `interrupted=True`): the next command of the process is not stopped
    by them as it begins (stops_interrupt). Inside a command, its exit code answers them."""
    global _answered
    if not _raising:
        _answered = len(_received)


def stopped() -> bool:
    """Whether a stop signal came since the command began. A stop can land anywhere — inside an import, which
    leaves a half-loaded module that then fails with an error of its own (AttributeError, RecursionError) — so
    once one came, whatever exception ends the command is the stop's doing: it exits with `stop_code`."""
    return bool(_received)


def stop_code() -> int:
    """The exit code of a command stopped just now: 128 + the first stop signal (130 for a KeyboardInterrupt
    raised without one, e.g. by a test)."""
    return 128 + (_received[0] if _received else signal.SIGINT)


def is_stop_code(code: object) -> bool:
    return code in {128 + sig for sig in STOPS}


def stop_name(code: int) -> str:
    """"" for Ctrl-C, which needs no naming; " (SIGTERM)" for the others."""
    return "" if code == 128 + signal.SIGINT else f" ({signal.Signals(code - 128).name})"


def _install() -> dict[int, object]:
    """Our handler for every stop signal not ignored; the handlers it replaced."""
    return {sig: signal.signal(sig, _on_stop) for sig in STOPS if signal.getsignal(sig) is not signal.SIG_IGN}


@contextmanager
def stops_interrupt() -> Iterator[None]:
    """While the block runs, a stop signal raises KeyboardInterrupt; the previous handlers come back after.
    A stop that came before it and that nothing answered yet (`own_process` recorded it while the command was
    still loading) raises as the block begins: the command it was meant for is stopped, never run to an exit 0.
    Only the main thread receives signals: elsewhere this does nothing."""
    global _raising, _answered, _raised, _previous_unraisable
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = _install()
    del _received[:_answered]  # the stops earlier commands answered; those left are this command's
    _answered, _raised = 0, False
    unraisable = sys.unraisablehook
    if unraisable is not _unraisable:
        _previous_unraisable = unraisable
    sys.unraisablehook = _unraisable
    try:
        with first_imports_held():
            _raising = True
            if _received:
                _stop_now()
            yield
    finally:
        _answered = len(_received)  # first: a stop after this line but before the next is raised, so answered
        _raising = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = unraisable


def own_process(say_stopped: Callable[[int], None]) -> None:
    """For the `mmgen` process itself, before torch loads: stops are recorded from now on, and an atexit handler
    registered now — so it runs after those registered later, torch's included — turns an exit 0 into the code
    of a stop that came during shutdown, calling `say_stopped(code)` to say so. Stops after it are ignored.
    Called again (mmgen.entry, then mmgen.cli.main) it does nothing: the process is mmgen's already."""
    global _owned
    if _owned:
        return
    _install()
    atexit.register(_at_exit, say_stopped)
    _owned = True


def final_code(code: int, say_stopped: Callable[[int], None]) -> int:
    """The process's exit code for a command that ended with `code`: a stop since it ended turns 0 into the
    stop's code (said with `say_stopped`); any other code stands (a failure says more than "stopped")."""
    global _answered, _exit_code
    late = _received[_answered:]
    _answered = len(_received)
    if code == 0 and late:
        code = 128 + late[0]
        say_stopped(code)
    _exit_code = code
    return code


def _at_exit(say_stopped: Callable[[int], None]) -> None:
    for sig in STOPS:
        if signal.getsignal(sig) is _on_stop:
            signal.signal(sig, signal.SIG_IGN)
    if _exit_code is None:  # the process is not exiting through `final_code`
        return
    decided = _exit_code
    code = final_code(decided, say_stopped)
    # sys.exit's code is already on its way out: only _exit can still change it. A stop's code is _exit-ed too:
    # once a KeyboardInterrupt went through C code that ran Python code (PyRun_String, as pybind11's py::exec
    # does while torch loads), CPython ends a `python -m` process by SIGINT after this — 130 for SIGTERM's 143.
    if code != decided or is_stop_code(code):
        drop_unprinted()
        sys.stderr.flush()
        os._exit(code)


def drop_unprinted() -> None:
    """What a stopped command had yet to print on standard output goes nowhere: flushed at exit, it would wait for a
    reader that stopped reading (`mmgen generate --json | reader`, the pipe full) — with the stops ignored by then,
    so no second Ctrl-C could end that wait. Standard output's descriptor is pointed at /dev/null: every flush after
    this one, the interpreter's last included, writes nothing and returns at once."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no stdout, or not a file's (closed, None, a stream of Python's)
        pass
    finally:
        os.close(null)
