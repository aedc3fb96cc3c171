"""The process group of a torchrun job (or a single process): who am I, on which device, and the few collective
operations the trainer needs. Only rank 0 writes files; everything here is a no-op for a single process."""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from mmgen.errors import MmgenError, UsageError
from mmgen.runtime import torchrun


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The one process that writes logs, checkpoints, samples and the final model."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def largest(self, value: int) -> int:
        """The largest of every process's `value`, on every process (e.g. the stop signal one of them got)."""
        if not self.distributed:
            return value
        reduced = torch.tensor([value], device=_collective_device())
        dist.all_reduce(reduced, op=dist.ReduceOp.MAX)
        return int(reduced.item())

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order, on every process."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def gather_or_fail(self, obj: Any, failure: Exception | None) -> list[Any]:
        """Every process's `obj`, as gather gives them, where every process got its own; where any met `failure`
        instead (its share of the work raised: a disk error), every process raises the first failure, in rank order,
        marked `every_process`: said by rank 0 alone, every process ending with its exit code (mmgen.cli._failed).
        A failure only raised in its own process left the others waiting at their next gather until torchrun
        stopped them."""
        heard = self.gather((obj, None if failure is None else _portable(failure)))
        failing = [rank for rank, (_, failed) in enumerate(heard) if failed is not None]
        if not failing:
            return [got for got, _ in heard]
        first = failure if failing[0] == self.rank else heard[failing[0]][1]  # its own: with its traceback (--debug)
        first.every_process = True
        raise first

    def as_main(self, value: Any) -> Any:
        """Rank 0's `value` on every process: what the job decides once, where each process would decide on its own
        (a default run folder named from each one's clock)."""
        return self.gather(value)[0]

    def refuse_with_main(self, problem: str | None) -> None:
        """Raise rank 0's `problem` (what only it checked: a lock it took) as a UsageError on every process, said
        by rank 0 alone (MmgenError.every_process), so a torchrun job stops as one process would."""
        if problem := self.as_main(problem):
            refused = UsageError(problem)
            refused.every_process = True
            raise refused

    def check_on_main(self, check: Callable[[], None]) -> None:
        """Run `check` on rank 0 alone (what only the writing process looks at: the run folder it holds) and raise
        the UsageError it raises there on every process (refuse_with_main)."""
        problem = None
        if self.is_main:
            try:
                check()
            except UsageError as e:
                problem = str(e)
        self.refuse_with_main(problem)


def _portable(error: Exception) -> Exception:
    """`error` as another process can have it (pickled, as a gather sends it); one whose class cannot be made again
    from its pickle (an __init__ of other arguments) as an MmgenError of the same line and exit code."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        if isinstance(error, MmgenError):
            stand_in = MmgenError(error.message, error.hint)
            stand_in.exit_code = error.exit_code
            return stand_in
        return MmgenError(f"{error.__class__.__name__}: {error}", "run with --debug for the traceback")


def _collective_device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


def gpu(local_rank: int) -> torch.device:
    """This process's GPU in a torchrun job: cuda:LOCAL_RANK, one process per GPU of its machine. UsageError (exit 2)
    when the machine has no such GPU (`--nproc_per_node 4` on a machine with 2): said by each process that meets
    it, as its own, where the others' GPUs are there (rank 0's is: a line said by rank 0 alone was said by none)."""
    count = torch.cuda.device_count()
    if local_rank >= count:
        refused = UsageError(f"LOCAL_RANK={local_rank}, but this machine has {count} GPU{'' if count == 1 else 's'} "
                             f"(cuda:0 to cuda:{count - 1}): a torchrun job takes one process per GPU",
                             hint=f"torchrun --nproc_per_node {count} or fewer")
        refused.every_process = False  # its own, even where raised among what every process checks alike
        raise refused
    return torch.device("cuda", local_rank)


def described() -> Processes:
    """This process's place in the torchrun job the environment describes (RANK, WORLD_SIZE, LOCAL_RANK), before
    joining it; a plain command is a job of one. UsageError for a bad one (torchrun.place)."""
    return Processes(*torchrun.place())


class NotJoined(Processes):
    """A torchrun job's process before it joins the process group (no backend chosen yet: that needs its settings),
    gathering through the job's store: each one's settings and refusal, before any waits in init_process_group
    for one that has already exited."""

    gathered = 0

    def gather(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        NotJoined.gathered += 1
        store = dist.PrefixStore(f"mmgen-gather-{NotJoined.gathered}", _job_store(self, _TIMEOUT))
        store.set(str(self.rank), pickle.dumps(obj))
        return [pickle.loads(_waited_for(store, str(rank))) for rank in range(self.world_size)]


def before_joining() -> Processes:
    """This process's place in its torchrun job, able to gather (NotJoined) before it joins the process group."""
    return NotJoined(*torchrun.place())


def _waited_for(store: dist.Store, key: str) -> bytes:
    """`key`'s value once another process has set it, looked for every 50 ms: a stop's Python handler runs between
    the looks (torch's own wait is in C++, where it never would; one of a timeout warns in c10d's words)."""
    while not store.check([key]):
        time.sleep(0.05)
    return store.get(key)


def start(device_type: str) -> Processes:
    """Join the torchrun job described by the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, …),
    with NCCL for CUDA and gloo otherwise; a plain `mmgen finetune` is a job of one."""
    here = described()
    if here.distributed and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(gpu(here.local_rank))
        backend = "nccl" if device_type == "cuda" else "gloo"
        store = dist.PrefixStore("default_pg", _job_store(here, _TIMEOUT))  # as torch keys its own: may be torchrun's
        dist.init_process_group(backend, store=store, rank=here.rank, world_size=here.world_size, timeout=_TIMEOUT)
    return here


def _say_waiting_after_s() -> float:
    """How long a process waits for the others before it says so: half a second when launched by hand (WORLD_SIZE
    set in the environment: a stale one waits for processes that never come); under torchrun, whose processes
    start together and reach the rendezvous seconds apart, only a longer wait (another node still starting)."""
    return 10.0 if torchrun.launched() else 0.5


_TIMEOUT = timedelta(minutes=30)
_met: list[dist.Store] = []  # the job's store, once met: a second rendezvous would start a second TCPStore


def _job_store(here: Processes, timeout: timedelta) -> dist.Store:
    """The job's store (_rendezvous), met once per process: gathered through before joining (NotJoined), then
    joined through."""
    if not _met:
        _met.append(_rendezvous(here, timeout))
    return _met[0]


def _rendezvous(here: Processes, timeout: timedelta) -> dist.Store:
    """The job's store once all its processes have reached it: torch's env:// rendezvous, as init_process_group
    makes it itself, but waited for on a thread of its own. torch waits in C++ (up to `timeout`), where the main
    thread never runs a signal's Python handler: a plain command with a stale WORLD_SIZE in its environment hung
    silently, and neither Ctrl-C nor SIGTERM ended it. Here the main thread waits, says what for
    (_say_waiting_after_s), and a stop ends the wait as any other (KeyboardInterrupt: exit 130, 143, nothing
    written); the waiting thread is left behind, a daemon."""
    met: list[Any] = []

    def meet() -> None:
        try:
            met.append(next(dist.rendezvous("env://", here.rank, here.world_size, timeout=timeout)))
        except BaseException as e:  # handed to the main thread
            met.append(e)

    thread = threading.Thread(target=meet, name="mmgen-rendezvous", daemon=True)
    thread.start()
    thread.join(_say_waiting_after_s())
    if thread.is_alive():
        from mmgen.terminal import say

        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        say(f"mmgen: waiting for {here.world_size} processes to join (WORLD_SIZE={here.world_size}, "
            f"RANK={here.rank}, at {where}); Ctrl-C to stop")
        torchrun.waiting = True  # (left set by a stop: its line is this process's to say)
        while thread.is_alive():
            thread.join(0.5)
        torchrun.waiting = False
    if isinstance(met[0], BaseException):
        raise met[0]
    store = met[0][0]
    store.set_timeout(timeout)
    return store


def stop(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()
