"""Fine-tuning's training: an MM-UNet trained on a folder of clips, resumably, on one or many processes (run.finetune,
the Python API's `mmgen finetune`, checks what needs no torch, then calls run_training).

One run = one folder:
    config.yaml                 every setting, resolved (what --resume reads back)
    log.jsonl                   data / train / probe / sample / checkpoint / diverged / done events (runlog.py)
    checkpoints/step-N/         raw + EMA weights and the full training state (see checkpoint.py, state.py)
    samples/step-N.mp4          previews from the EMA weights
    model.safetensors (+ .json) the final EMA weights: `mmgen generate -m RUN/model.safetensors`

Resuming reproduces an uninterrupted run bitwise on CPU: the batch order is a pure function of (seed, step),
the learning rate a pure function of the step, every random draw comes from generators whose states are
checkpointed (with the global torch RNG used by dropout), and optimizer and EMA state are saved exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from mmgen.data.clip_cache import clear_skips_only
from mmgen.modal import Modal, each
from mmgen.new_folders import new_folders_removed_on_failure
from mmgen.runtime import processes as distributed
from mmgen.runtime.device import select_device
from mmgen.runtime.global_rng import callers_rng_kept
from mmgen.runtime.memory import StepMemory
from mmgen.train.config import FinetuneConfig
from mmgen.train.divergence import DivergenceWatch
from mmgen.train.events import EventFn, TrainEvent, ignore
from mmgen.train.interrupt import CheckpointNotSaved, StopRequest
from mmgen.train.objective import diffusion_loss, draw_noising
from mmgen.train.outputs import RunOutputs
from mmgen.train.run import FinetuneResult
from mmgen.train.run_checks import clip_cache
from mmgen.train.run_folder import RunFolderLock, clear_failed_start
from mmgen.train.setup import Setup, clip_cache_user, prepare
from mmgen.train.state import TrainingState, parameters_digest
from mmgen.train.step_folders import latest_checkpoint

__all__ = ["EventFn", "TrainEvent", "learning_rate", "parameters_digest", "run_training"]


def run_training(data_dir: Path, run_dir: Path, config: FinetuneConfig, resume: bool, on_event: EventFn | None
                 ) -> FinetuneResult:
    """The run of run.finetune (the Python API's), once what needs no torch is checked: start it, or resume it from its
    newest checkpoint that loads, and train to its last step."""
    device = select_device(config.device)
    processes = distributed.start(device.type)
    # One run folder for the job: rank 0's (a plain `finetune` names one from the clock, and a torchrun job's
    # processes start seconds apart; a rank with a name of its own wrote it in the clip cache's skip records)
    run_dir = Path(processes.as_main(str(run_dir)))
    lock = RunFolderLock(run_dir)

    def clear(folder: Path) -> bool:  # only the run folder this run holds: never another run's, made meanwhile
        if folder == Path(run_dir):
            if not lock.held:
                return False
            clear_failed_start(folder)
        elif folder == cache:
            clear_skips_only(folder, clip_cache_user(run_dir))
        return True

    try:
        # A run that fails before its first checkpoint takes back the folders it made (rank 0 writes them): its own
        # config.yaml and log.jsonl are no run to resume, and a new start writes them again; so is a clip cache
        # holding no decoded clip (its skip records are written again). Never a folder that was there.
        cache = clip_cache(config)
        made = new_folders_removed_on_failure([Path(run_dir), cache], clear) if processes.is_main else nullcontext()
        with made:
            if processes.distributed and device.type == "cuda":
                device = distributed.gpu(processes.local_rank)
            events = on_event if on_event is not None and processes.is_main else ignore
            with callers_rng_kept(device):  # training reseeds torch's global RNG: the caller's draws are its own
                setup = prepare(Path(data_dir), Path(run_dir), config, device, processes, resume, events, lock)
                return _train(setup, events)
    finally:
        lock.release()
        distributed.stop(processes)


def learning_rate(config: FinetuneConfig, step: int) -> float:
    """The learning rate of step `step` (0-based): linear warm-up, then constant or cosine decay to 0."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.lr_decay == "cosine":
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return config.lr


def _train(setup: Setup, on_event: EventFn) -> FinetuneResult:
    """The paper's training loop (Ho et al., 2020, Algorithm 1, for both modalities at once): repeat — take a
    batch of clips x0, draw timesteps t and noise eps, take a gradient step on ‖eps − eps_θ(x_t, t)‖²."""
    config, state, compute, processes = setup.config, setup.state, setup.compute, setup.processes
    network = (  # what the forward pass runs through: the model, or its DDP wrapper that averages gradients
        DistributedDataParallel(state.model, device_ids=[compute.device.index] if compute.device.type == "cuda" else None)
        if processes.distributed
        else state.model
    )
    outputs = RunOutputs(setup, on_event)
    watch = DivergenceWatch(compute.device, gradients_may_overflow=state.scaler.is_enabled())
    start, interrupted = state.step, False
    memory = StepMemory()  # freed memory kept for the next step, handed back if fragments grow the process
    with StopRequest() as stop, _saved_as_asked(stop, state, setup.run_dir / "checkpoints"):
        batches = iter(setup.loader(start))
        while state.step < config.steps:
            x0 = _clips(next(batches), config.flip, state.streams.generator, compute.device)
            noising = draw_noising(
                x0, state.streams.generator, state.streams.noise, independent=config.timesteps == "independent"
            )
            with compute.autocast():
                loss, parts = diffusion_loss(
                    network,
                    x0,
                    noising,
                    setup.schedule,
                    weights=config.loss_weights,
                    min_snr_gamma=config.min_snr_gamma,
                    x0_weight_cap=config.x0_weight_cap,
                    shift_generator=state.streams.generator,
                )
            lr = learning_rate(config, state.step)
            grad_norm = state.update(loss, lr)
            memory.after_step()
            stop.stepped = True
            watch.observe(state.step, loss, grad_norm)
            state.meter.add(
                {"loss": loss.detach(), "loss_video": parts["video"], "loss_audio": parts["audio"],
                 "grad_norm": grad_norm, "lr": lr}
            )  # fmt: skip
            interrupted = outputs.after_step(watch, lambda: stop.shared(processes.largest(stop.signum)))
            if interrupted:
                break
        del batches
    if start >= config.steps:  # nothing left to train: make sure the last checkpoint exists
        outputs.save(watch)
    model_path = None if interrupted else outputs.finish(watch)
    stop.pass_on()  # from Python, a stop is the program's to answer (KeyboardInterrupt), now that all is saved
    return FinetuneResult(setup.run_dir, state.step, interrupted, model_path, setup.report,
                          ran_on=setup.compute.record())


@contextmanager
def _saved_as_asked(stop: StopRequest, state: TrainingState, checkpoints: Path) -> Iterator[None]:
    """A failure once a stop has asked for a checkpoint (in the step it waits for, or in saving) is the checkpoint
    the stop was promised not being saved (CheckpointNotSaved), said as such, not passed over as the stop's doing —
    unless that step's checkpoint is there, complete (the failure came after it: a collective once another process
    of the job ended), when the failure goes on as it is."""
    try:
        yield
    except Exception as e:
        if stop.requested and getattr(latest_checkpoint(checkpoints), "step", None) != state.step:
            raise CheckpointNotSaved(state.step, e) from e
        raise


def _clips(batch: Modal, flip: bool, generator: torch.Generator, device: torch.device) -> Modal:
    """A training batch on the device, each clip's video mirrored left-right with probability ½ when `flip`."""
    if flip:
        mirrored = (torch.rand(batch["video"].shape[0], generator=generator) < 0.5).view(-1, 1, 1, 1, 1)
        batch = {**batch, "video": torch.where(mirrored, batch["video"].flip(-1), batch["video"])}
    return each(lambda x: x.to(device, non_blocking=True), batch)

