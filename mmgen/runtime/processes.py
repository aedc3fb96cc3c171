"""The process group of a torchrun job (or a single process): who am I, on which device, and the few collective
operations the trainer needs. Only rank 0 writes files; everything here is a no-op for a single process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from mmgen.errors import UsageError
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

    def any(self, flag: bool) -> bool:
        """True on every process if it is true on any (e.g. "Ctrl-C was pressed"), so all stop at one step."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], device=_collective_device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order, on every process."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def refuse_with_main(self, problem: str | None) -> None:
        """Raise rank 0's `problem` (what only it checked: a lock it took) as a UsageError on every process, said
        by rank 0 alone (MmgenError.every_process), so a torchrun job stops as one process would."""
        if problem := self.gather(problem)[0]:
            refused = UsageError(problem)
            refused.every_process = True
            raise refused


def _collective_device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


def described() -> Processes:
    """This process's place in the torchrun job the environment describes (RANK, WORLD_SIZE, LOCAL_RANK), before
    joining it; a plain command is a job of one. UsageError for a bad one (torchrun.place)."""
    return Processes(*torchrun.place())


def start(device_type: str) -> Processes:
    """Join the torchrun job described by the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, …),
    with NCCL for CUDA and gloo otherwise; a plain `mmgen finetune` is a job of one."""
    here = described()
    if here.distributed and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(here.local_rank)
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
    return here


def stop(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()
