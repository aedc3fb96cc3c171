"""The torchrun job the environment describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), read and
checked before anything loads: standard library only, so a bad one is refused (exit 2) before torch loads, and
a command that runs as one process is refused under torchrun before it does its work once per process.
mmgen.runtime.processes joins the job this describes."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

from mmgen.errors import UsageError

SPLIT = ("batch", "finetune")  # the commands that split their work over a torchrun job's processes
ONE_PROCESS = ("generate", "soundtrack", "animate", "retake")  # media made by one process: refused under torchrun
ANY_PROCESS = ("models", "doctor")  # run as they are in any process of a job (check)
AGREED = ("finetune",)  # whose processes agree on their settings before they join (train.settings_agreement)
_SET_BY_TORCHRUN = ("set by torchrun (`torchrun --nproc_per_node N -m mmgen batch|finetune …`); "
                    "unset WORLD_SIZE to run one process")


def place() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process in the job the environment describes; (0, 1, 0) without one
    (WORLD_SIZE unset, empty or 1). UsageError naming what is missing or wrong when WORLD_SIZE says several
    processes: RANK and LOCAL_RANK integers, RANK below WORLD_SIZE, MASTER_ADDR and MASTER_PORT set (where the
    processes meet) — else torch failed with a KeyError or ValueError of its own, or waited for ever."""
    size = _integer("WORLD_SIZE", "1")
    if size < 1:
        raise UsageError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r}: takes a number of processes, 1 or more; "
                         f"it is {_SET_BY_TORCHRUN}")
    if size == 1:
        return 0, 1, 0
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name, "").strip()]
    if missing:
        raise UsageError(f"WORLD_SIZE={size} but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                         f"set: the variables of a torchrun job are {_SET_BY_TORCHRUN}")
    rank, local_rank = _integer("RANK", "0"), _integer("LOCAL_RANK", "0")
    _integer("MASTER_PORT", "0")
    if not 0 <= rank < size or local_rank < 0:
        wrong = f"RANK={rank}" if not 0 <= rank < size else f"LOCAL_RANK={local_rank}"
        raise UsageError(f"{wrong} with WORLD_SIZE={size}: a rank is from 0 to {size - 1}; the variables of a "
                         f"torchrun job are {_SET_BY_TORCHRUN}")
    return rank, size, local_rank


def _integer(name: str, unset: str) -> int:
    value = os.environ.get(name, "").strip() or unset
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name}={os.environ[name]!r}: takes an integer; it is {_SET_BY_TORCHRUN}") from None


def rank() -> int:
    """This process's rank (0 without torchrun, or where the environment says none that makes sense)."""
    try:
        return place()[0]
    except UsageError:
        return 0


def says_command_line_errors(command: str | None) -> bool:
    """Whether this process says a refusal of its command line (an unknown option, a bad value): every process of a
    torchrun job parses the one command line torchrun gave them all, so rank 0 alone says it (the others exit 2 in
    silence), not once per process; so is a stop that lands before the command began (cli.says_early_stop). A
    command that runs in any process (ANY_PROCESS: a worker's script may run `mmgen models pull` on a line of its
    own) says its own. Processes not started by torchrun (a job's variables left in a shell, ranks started by hand,
    each in a terminal of its own) each say their own: nobody else would."""
    return command in ANY_PROCESS or not launched() or rank() == 0


RANK_0_SAYS_WITHIN_S = 10.0


def leave_the_word_to_rank_0(hand_over: Callable[[], None] | None = None) -> None:
    """A torchrun worker that leaves to rank 0 a refusal all the job's processes meet alike waits, silent, before it
    exits: torchrun stops a job's other workers (SIGTERM) as soon as one fails, and that came to rank 0 before it had
    said the refusal (the user saw `interrupted (SIGTERM)` and torchrun's traceback, never what was wrong). It waits
    until torchrun stops it (rank 0 has ended) or RANK_0_SAYS_WITHIN_S pass, then exits as it would have.
    `hand_over` first gives rank 0 a refusal it may not have met itself (its own command line was fine), waiting for
    rank 0 to take it until torchrun stops this process (rank 0 has ended: it met the refusal too)."""
    if not launched() or rank() == 0 or threading.current_thread() is not threading.main_thread():
        return

    def ended(signum, frame) -> None:
        raise _Ended

    kept = {stop: signal.signal(stop, ended) for stop in (signal.SIGTERM, signal.SIGINT)}
    try:
        if hand_over is not None:
            hand_over()
        time.sleep(RANK_0_SAYS_WITHIN_S)
    except _Ended:
        pass
    finally:
        for stop, handler in kept.items():
            signal.signal(stop, handler)


class _Ended(Exception):
    """torchrun stopped a worker waiting for rank 0 to say a refusal: rank 0 has ended."""


def launched() -> bool:
    """Whether torchrun started this process (its agent sets TORCHELASTIC_RUN_ID for its workers): its parent is the
    launcher, which stands between the user's signals and it (Ctrl-C reaches torchrun alone, which passes it on)."""
    return bool(os.environ.get("TORCHELASTIC_RUN_ID"))


_following = False
waiting = False  # this process said it waits for the others to join (processes._rendezvous) and has not joined yet:
# alone, it says its own stop's line too (cli._interrupted), which in a job rank 0 says for every process


def follow_launcher(every_s: float = 0.5) -> None:
    """A process torchrun started (TORCHELASTIC_RUN_ID set) stops as if sent SIGTERM once its launcher is gone:
    torchrun starts its workers in sessions of their own, so a launcher killed outright (`kill -9`, the OOM
    killer) passed nothing on, and its workers trained on as orphans, holding the run folder's lock. A daemon
    thread watches the parent process (prctl's PR_SET_PDEATHSIG would fire on the death of the parent's *thread*
    that started this one, and is Linux's alone); once this process has another parent it sends itself SIGTERM,
    and the ordinary stop follows (finetune saves a checkpoint, exit 143). Elsewhere (no torchrun: a shell's
    child, under nohup, may outlive its shell) nothing."""
    global _following
    if _following or not launched():
        return
    _following = True  # once a process (a Python program may run several commands)
    launcher = os.getppid()

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(every_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="mmgen-follow-launcher", daemon=True).start()


def check(command: str | None) -> None:
    """UsageError, said by rank 0 alone, for a command that makes media as one process (ONE_PROCESS) in a job of
    several (torchrun --nproc_per_node 2): each process would do the whole work again and write the same files at
    once; and for a bad job environment (`place`), for those and the commands that join the job (SPLIT). `models`
    and `doctor` run as they are: they read, or write the cache under its locks, alike from any process (a
    worker's script may list or pull models; doctor is where a user looks when the environment is wrong)."""
    if command not in SPLIT and command not in ONE_PROCESS:
        return
    size = place()[1]
    if size > 1 and command in ONE_PROCESS:
        refused = UsageError(f"{command} runs as one process, not under torchrun (WORLD_SIZE={size}): only "
                             f"{' and '.join(SPLIT)} split their work over several processes")
        refused.every_process = True
        raise refused


def processes_here() -> int:
    """How many of the job's processes run on this machine (torchrun's LOCAL_WORLD_SIZE; all of them where it is
    unset): they share its memory."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return max(1, min(world, int(os.environ.get("LOCAL_WORLD_SIZE", "0") or world)))


def launcher() -> str:
    """How to start this run again: plain `mmgen`, or torchrun with the same processes per node. torchrun runs
    its workers in their own sessions, so Ctrl-C reaches torchrun alone, which passes one SIGINT to each worker:
    they save and exit, then torchrun reports the signal. One node: --standalone (a free local port). Several:
    the job's own rendezvous options, which a worker cannot see, go where the placeholder is."""
    world, per_node = int(os.environ.get("WORLD_SIZE", "1")), processes_here()
    if world <= 1:
        return "mmgen"
    if per_node >= world:
        return f"torchrun --standalone --nproc_per_node {per_node} -m mmgen"
    return f"torchrun --nnodes {world // per_node} --nproc_per_node {per_node} <rendezvous options> -m mmgen"
