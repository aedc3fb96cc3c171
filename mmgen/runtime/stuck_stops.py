"""A stop that a torchrun worker cannot take: Python runs a signal's handler only between bytecodes, and a process
waiting in a collective (DDP's gradient all-reduce in backward, a gather, a barrier) waits in C++ until its peers
answer — a peer stopped (`kill -STOP`) or hung never does, so a SIGTERM or Ctrl-C was never handled: no line, no
checkpoint, until torchrun SIGKILLed every worker 30 s later. Python's signal wakeup fd is written by the C-level
handler even then: a daemon thread reads it, and a stop that no handler has taken `grace_s` later ends the process
itself, with one line naming the stuck state and the stop's exit code. A checkpoint cannot be saved there: saving
takes collectives with the peer that does not answer. Standard library only."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from mmgen.runtime import stop_signals, torchrun

_watching = False
# A process that used less than this share of one core over a grace window is waiting, not computing: a wait for a
# peer (gloo's, on a socket) uses none, while one C++ op of a long step (a CPU backward of the paper's model takes
# tens of seconds, and Python's handlers wait for it) keeps a core busy — that stop is taken once the op returns.
IDLE_SHARE = 0.1


def _runnable(watcher: int) -> bool:
    """Whether a thread of this process but `watcher` (the thread asking) is running or waiting for a core now (state
    R in /proc, Linux): a worker computing on a machine busy with other work (a starved `nice` job) may get too little
    CPU time in a window to tell it from a wait for a peer, which sleeps."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:  # not Linux: CPU time alone tells
        return False
    for task in tasks:
        if task == str(watcher):
            continue
        try:
            with open(f"/proc/self/task/{task}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "R":
                    return True
        except (OSError, IndexError):  # a thread that ended meanwhile
            continue
    return False


def _cpu_seconds() -> float:
    """The process's CPU time so far, every thread's."""
    times = os.times()
    return times.user + times.system


def answer_stuck_stops(grace_s: float = 10.0) -> None:
    """In a worker of a torchrun job of several processes (main thread only, once a process): a stop signal that no
    Python handler has taken `grace_s` after it came (stop_signals.stopped() still false), the process idle meanwhile
    (IDLE_SHARE: a long op that computes, or is runnable but not let onto a core on a busy machine, is waited for, a
    window at a time), ends the process with `mmgen: stopped (SIGTERM) while waiting for another process of the job,
    which does not answer (stopped or hung); no checkpoint saved` and 128 + the signal. Once a handler has taken a
    stop, nothing: the process is saving its checkpoint, as the stop asked, and waits for its peers there."""
    global _watching
    if _watching or not torchrun.launched() or torchrun.place()[1] < 2:
        return
    if threading.current_thread() is not threading.main_thread():
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except ValueError:  # not the main thread of the main interpreter
        os.close(read_end)
        os.close(write_end)
        return
    _watching = True

    def watch() -> None:
        me = threading.get_native_id()
        while True:
            came = os.read(read_end, 1)
            if not came or came[0] not in stop_signals.STOPS:
                continue
            while True:  # a grace window at a time, for as long as the process computes
                used, deadline, looks, runnable = _cpu_seconds(), time.monotonic() + grace_s, 0, 0
                while time.monotonic() < deadline:
                    if stop_signals.stopped():
                        return  # taken: the ordinary stop (a checkpoint, its line) goes on
                    time.sleep(0.05)
                    looks, runnable = looks + 1, runnable + _runnable(me)
                # idle all along: waiting on a peer, not computing (a thread that wakes now and then is no computing;
                # one runnable at most looks, but not let onto a core, is)
                if _cpu_seconds() - used < IDLE_SHARE * grace_s and runnable * 2 < looks:
                    break
            code = 128 + came[0]
            os.write(sys.stderr.fileno(), f"mmgen: stopped{stop_signals.stop_name(code) or ' (SIGINT)'} while waiting "
                     "for another process of the job, which does not answer (stopped or hung); no checkpoint "
                     "saved\n".encode())
            os._exit(code)

    threading.Thread(target=watch, name="mmgen-stuck-stops", daemon=True).start()
