"""The training state: everything that changes while a run trains and must survive a resume — the network,
its moving average, the optimizer, the gradient scaler, the step (the data order and the learning rate are pure
functions of it) and the random generators — as one object that saves itself to a checkpoint and restores
itself from one, bitwise.

Which parameters train, and which weights a checkpoint holds, are chosen in one place each
(`trained_parameters`, `TrainingState.weights`): the optimizer, gradient clipping, the EMA and the divergence
check all follow them.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mmgen.runtime.device import Compute
from mmgen.runtime.processes import Processes
from mmgen.terminal import counted
from mmgen.train.checkpoint import Checkpoint, Resumable, save_checkpoint
from mmgen.train.config import FinetuneConfig
from mmgen.train.run_weights import RunWeights


def trained_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters the optimizer updates: those that require gradients (all, for a plain fine-tune)."""
    return [p for p in model.parameters() if p.requires_grad]


def parameters_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter's bytes: equal digests = bitwise equal weights."""
    digest = hashlib.sha256()
    for name, p in model.state_dict().items():
        digest.update(name.encode())
        digest.update(p.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rank_seed(seed: int, rank: int) -> int:
    """Each process draws its own noise; rank 0 uses the seed itself, so a single process is seeded plainly."""
    return seed + 1_000_003 * rank


@dataclass
class Streams:
    """The random generators of one process: `generator` (CPU) draws timesteps, flips and window shifts;
    `noise` draws the diffusion noise on the device (the same generator on CPU). Dropout draws from torch's
    global RNG, which is saved alongside."""

    generator: torch.Generator
    noise: torch.Generator

    @classmethod
    def seeded(cls, seed: int, device: torch.device) -> Streams:
        generator = torch.Generator().manual_seed(seed)
        noise = generator if device.type == "cpu" else torch.Generator(device).manual_seed(seed)
        return cls(generator, noise)

    def reseed(self, seed: int) -> None:
        for g in {id(self.generator): self.generator, id(self.noise): self.noise}.values():
            g.manual_seed(seed)

    def state(self, device: torch.device) -> dict[str, torch.Tensor | str | None]:
        return {
            "generator": self.generator.get_state(),
            "noise": None if self.noise is self.generator else self.noise.get_state(),
            "noise_device": self.noise.device.type,
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }

    def restore(self, saved: dict[str, torch.Tensor | str | None], device: torch.device, seed: int) -> str | None:
        """Put the saved states back. A run resumed on another kind of device (a checkpoint written on a GPU,
        resumed on the CPU, or the other way) cannot take the old noise stream: each kind's generator has its
        own state (a CUDA state is refused by an MPS generator, "RNG state is wrong size"), so that stream
        starts afresh from `seed` and the returned note says so."""
        self.generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch"])
        if saved["cuda"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda"], device)
        # checkpoints written before "noise_device" was saved: a separate noise state was the device's own
        was = saved.get("noise_device") or (device.type if saved["noise"] is not None else "cpu")
        if was == self.noise.device.type:
            if self.noise is not self.generator:
                self.noise.set_state(saved["noise"])
            return None
        if self.noise is not self.generator:
            self.noise.manual_seed(seed)
        return f"resumed on {self.noise.device.type} after training on {was}: the noise stream restarted"


class Meter:
    """Running sums of a log interval's step values (kept as tensors: no device sync per step). They are part of
    the training state: a run resumed between two log lines logs the same means as one that never stopped."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.count = 0  # steps in the interval
        self.timed, self.since = 0, time.perf_counter()  # steps this process took since `since` (not resumed ones)

    def add(self, values: dict[str, Any]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        self.timed += 1

    def take(self, processes: Processes) -> dict[str, float]:
        """Interval means (averaged over processes) plus steps/s; resets the meter."""
        keys = sorted(self.sums)
        means = torch.tensor([float(self.sums[k]) / self.count for k in keys], dtype=torch.float64)
        means = torch.tensor(processes.gather(means.tolist()), dtype=torch.float64).mean(dim=0)
        elapsed = time.perf_counter() - self.since
        out = {k: float(v) for k, v in zip(keys, means.tolist(), strict=True)}
        out["lr"] = float(self.sums["lr"]) / self.count
        out["steps_per_s"] = self.timed / elapsed if elapsed > 0 else 0.0
        self.sums, self.count, self.timed, self.since = {}, 0, 0, time.perf_counter()
        return out

    def state(self) -> dict[str, Any]:
        return {"sums": {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in self.sums.items()},
                "count": self.count}

    def restore(self, saved: dict[str, Any], device: torch.device) -> None:
        self.sums = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in saved["sums"].items()}
        self.count = saved["count"]


class TrainingState:
    """A network being trained (fp32 master weights on the compute device) and all that goes with it."""

    def __init__(
        self,
        model: torch.nn.Module,
        files: RunWeights,
        config: FinetuneConfig,
        compute: Compute,
        processes: Processes,
    ):
        self.model, self.files, self.config, self.compute, self.processes = model, files, config, compute, processes
        self.step = 0
        self.parameters = trained_parameters(model)
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
        )
        self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
        _share_frozen(self.ema.module, model)
        self.scaler = torch.amp.GradScaler(compute.device.type, enabled=compute.dtype == torch.float16)
        self.streams = Streams.seeded(rank_seed(config.seed, processes.rank), compute.device)
        self.meter = Meter()  # the values of the steps since the last log line

    def update(self, loss: torch.Tensor, lr: float) -> torch.Tensor:
        """One optimizer step on `loss` at learning rate `lr`, then the EMA; returns the gradient norm (before
        clipping). With fp16 the scaler skips a step whose gradients overflowed."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip or math.inf)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update_parameters(self.model)
        self.step += 1
        return grad_norm.detach()

    def weights(self) -> dict[str, torch.nn.Module]:
        """What a checkpoint's weight files hold: the raw network and its moving average."""
        return {"model": self.model, "ema": self.ema.module}

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.parameters)

    def save(self, folder: Path) -> Checkpoint | None:
        """Checkpoint the state (every process takes part: each one's generators are gathered); rank 0 writes
        and gets the checkpoint, the others None."""
        rng = self.processes.gather(self.streams.state(self.compute.device))
        meters = self.processes.gather(self.meter.state())
        saved = None
        if self.processes.is_main:
            state = {
                "step": self.step,
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "ema_n_averaged": int(self.ema.n_averaged),
                "rng": rng,
                "meters": meters,
            }
            weights = self.weights()
            saved = save_checkpoint(
                folder,
                self.step,
                model=weights["model"],
                ema=weights["ema"],
                write=self.files.write,
                state=state,
                keep=self.config.keep_checkpoints,
            )
        self.processes.barrier()
        return saved

    def restore(self, resumable: Resumable) -> str | None:
        """Continue from a loaded checkpoint (whose raw weights are already `model`'s). Returns a note when the
        random streams could not be restored (a different number of processes)."""
        state = resumable.state
        self.step = resumable.checkpoint.step
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:  # empty when saved without fp16: a run resumed in fp16 starts its loss scale afresh
            self.scaler.load_state_dict(state["scaler"])
        self.files.load_into(self.ema.module, resumable.ema)
        self.ema.n_averaged.fill_(state["ema_n_averaged"])
        rng, processes = state["rng"], self.processes
        meters = state.get("meters")  # absent from checkpoints written before the meter was kept: start it afresh
        if meters is not None and len(meters) == processes.world_size:
            self.meter.restore(meters[processes.rank], self.compute.device)
        if len(rng) == processes.world_size:
            return self.streams.restore(
                rng[processes.rank], self.compute.device, rank_seed(self.config.seed + self.step, processes.rank)
            )
        # A different number of processes: carry on with fresh streams (not bitwise like the old run).
        self.streams.reseed(rank_seed(self.config.seed + self.step, processes.rank))
        return streams_restarted(processes.world_size, len(rng))


def streams_restarted(processes: int, saved: int) -> str:
    """The note of a run resumed with `processes` processes from a checkpoint that `saved` processes wrote."""
    return f"resumed with {counted(processes, 'process')} instead of {saved}: random streams restarted"


def _share_frozen(average: torch.nn.Module, model: torch.nn.Module) -> None:
    """Let the moving average use the model's own storage for weights that never train (a LoRA run's frozen
    base): their average is themselves, and a second copy of a 133 M-parameter base would cost 535 MB."""
    for kept, own in zip(average.parameters(), model.parameters(), strict=True):
        if not own.requires_grad:
            kept.data = own.data
