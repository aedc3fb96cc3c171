"""`mmgen finetune` as a function: train an MM-UNet on a folder of clips, resumably, on one or many processes.

One run = one folder:
    config.yaml                 every setting, resolved (what --resume reads back)
    log.jsonl                   data / train / probe / sample / checkpoint / done events (see runlog.py)
    checkpoints/step-N/         raw + EMA weights and the full training state (see checkpoint.py)
    samples/step-N.mp4          previews from the EMA weights
    model.safetensors (+ .json) the final EMA weights: `mmgen generate -m RUN/model.safetensors`

Resuming reproduces an uninterrupted run bitwise on CPU: the batch order is a pure function of (seed, step),
the learning rate a pure function of the step, every random draw comes from generators whose states are
checkpointed (with the global torch RNG used by dropout), and optimizer and EMA state are saved exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mmgen.config import to_dict
from mmgen.data.clips import ClipDataset, ClipFormat, ScanReport, build_clip_dataset
from mmgen.diffusion.schedule import Schedule
from mmgen.errors import OutputExists, UsageError
from mmgen.files import atomic_output, write_text
from mmgen.modal import Modal, each
from mmgen.models import build_model, config_for
from mmgen.runtime import processes as distributed
from mmgen.runtime.device import Compute, select_device, select_precision
from mmgen.train.checkpoint import Checkpoint, latest_checkpoint, require_checkpoint, save_checkpoint
from mmgen.train.config import FinetuneConfig
from mmgen.train.interrupt import StopRequest
from mmgen.train.objective import diffusion_loss, draw_noising
from mmgen.train.order import BatchOrder
from mmgen.train.preview import check_previewable, write_preview
from mmgen.train.probe import AVProbe
from mmgen.train.runlog import RunLog
from mmgen.weights import load_model, save_model
from mmgen.weights.cache import cache_root

ARCH = "mm-unet"


@dataclass(frozen=True)
class TrainEvent:
    """What the trainer tells its caller (the CLI draws progress from these)."""

    kind: Literal["data", "start", "step", "note"]
    step: int = 0
    total: int = 0
    values: dict[str, float] = field(default_factory=dict)
    message: str = ""
    data: ScanReport | None = None


EventFn = Callable[[TrainEvent], None]


@dataclass(frozen=True)
class FinetuneResult:
    run_dir: Path
    step: int  # steps completed
    interrupted: bool  # stopped by Ctrl-C/SIGTERM after saving a checkpoint
    model_path: Path | None  # RUN/model.safetensors once the run reached its last step
    data: ScanReport


def finetune(
    data_dir: Path,
    run_dir: Path,
    config: FinetuneConfig,
    *,
    resume: bool = False,
    on_event: EventFn | None = None,
) -> FinetuneResult:
    """Train per `config` on the clips under `data_dir`, writing the run to `run_dir`; with `resume`, continue
    from the run's newest complete checkpoint. Under torchrun every process calls this; only rank 0 writes."""
    device = select_device(config.device)
    processes = distributed.start(device.type)
    try:
        if processes.distributed and device.type == "cuda":
            device = torch.device("cuda", processes.local_rank)
        compute = Compute(device, _training_precision(device, config.precision))
        return _Run(Path(data_dir), Path(run_dir), config, compute, processes, on_event or _ignore).train(
            resume
        )
    finally:
        distributed.stop(processes)


def _ignore(event: TrainEvent) -> None:
    pass


def _training_precision(device: torch.device, name: str) -> torch.dtype:
    """As for sampling, except that MPS trains in fp32 (fp16 training there needs loss scaling we don't test)."""
    if name == "auto" and device.type == "mps":
        return torch.float32
    return select_precision(device, name)


def learning_rate(config: FinetuneConfig, step: int) -> float:
    """The learning rate of step `step` (0-based): linear warm-up, then constant or cosine decay to 0."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.lr_decay == "cosine":
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return config.lr


def rank_seed(seed: int, rank: int) -> int:
    """Each process draws its own noise; rank 0 uses the seed itself, so a single process is seeded plainly."""
    return seed + 1_000_003 * rank


def parameters_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter's bytes: equal digests = bitwise equal weights."""
    digest = hashlib.sha256()
    for name, p in model.state_dict().items():
        digest.update(name.encode())
        digest.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class _Run:
    def __init__(
        self,
        data_dir: Path,
        run_dir: Path,
        config: FinetuneConfig,
        compute: Compute,
        processes: distributed.Processes,
        on_event: EventFn,
    ):
        self.data_dir, self.run_dir, self.config = data_dir, run_dir, config
        self.compute, self.processes = compute, processes
        self.main = processes.is_main
        self.on_event = on_event if self.main else _ignore
        self.log = RunLog(run_dir / "log.jsonl")
        self.schedule = Schedule.respaced("")

    # ---- setup -------------------------------------------------------------------------------------------

    def train(self, resume: bool) -> FinetuneResult:
        config = self.config
        checkpoint = self._check_run_dir(resume)
        model, model_config, init_note = self._model(checkpoint)
        if config.sample_every:
            check_previewable(model_config.sample_rate)
        fmt = ClipFormat.of_model(model_config)
        dataset, report = build_clip_dataset(
            self.data_dir,
            fmt,
            config.cache_dir or cache_root() / "clips",
            stride=config.stride,
            progress=(
                lambda done, total, path: self.on_event(TrainEvent("data", done, total, message=path.name))
            )
            if self.main
            else None,
        )
        self.on_event(TrainEvent("data", report.files, report.files, data=report))
        train_indices, probe = self._split(dataset)

        model.to(self.compute.device).train()
        model.gradient_checkpointing = config.gradient_checkpointing
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
        )
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
        scaler = torch.amp.GradScaler(self.compute.device.type, enabled=self.compute.dtype == torch.float16)
        seed = rank_seed(config.seed, self.processes.rank)
        generator = torch.Generator().manual_seed(seed)  # timesteps, flips, window shifts (CPU)
        noise_generator = (
            generator
            if self.compute.device.type == "cpu"
            else torch.Generator(self.compute.device).manual_seed(seed)
        )
        start = 0
        if checkpoint is not None:
            start = self._restore(checkpoint, optimizer, ema, scaler, generator, noise_generator)
        trainable = (
            DistributedDataParallel(
                model, device_ids=[self.compute.device.index] if self.compute.device.type == "cuda" else None
            )
            if self.processes.distributed
            else model
        )

        if self.main:
            self._write_config(model_config)
            if checkpoint is None:
                self.log.write(
                    "data",
                    0,
                    files=report.files,
                    clips=report.clips,
                    decoded=report.decoded,
                    reused=report.reused,
                    train_clips=len(train_indices),
                    skipped=[{"file": str(s.path), "reason": s.reason} for s in report.skipped],
                )
        parameters = sum(p.numel() for p in model.parameters())
        self.on_event(
            TrainEvent(
                "start",
                start,
                config.steps,
                message=f"{init_note}, {parameters / 1e6:.2f} M parameters, {len(train_indices)} training clips, "
                f"{self.compute.describe()}"
                + (f", {self.processes.world_size} processes" if self.processes.distributed else ""),
            )
        )

        order = BatchOrder(
            train_indices,
            config.batch_size,
            config.seed,
            start,
            self.processes.rank,
            self.processes.world_size,
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=order,
            num_workers=config.num_workers,
            pin_memory=self.compute.device.type == "cuda",
            generator=torch.Generator().manual_seed(config.seed),  # keeps the global RNG untouched
        )
        self._state = (optimizer, ema, scaler, generator, noise_generator)
        step, interrupted = start, False
        meter = _Meter()
        with StopRequest() as stop:
            batches = iter(loader)
            while step < config.steps:
                batch = next(batches)
                values = self._step(trainable, model, batch, step)
                step += 1
                meter.add(values)
                self.on_event(TrainEvent("step", step, config.steps))
                if step % config.log_every == 0 or step == config.steps:
                    self._log_train(step, meter, order)
                self._periodic(step, model, ema, probe)
                interrupted = self.processes.any(stop.requested) and step < config.steps
                if (
                    interrupted
                    or step == config.steps
                    or (config.save_every and step % config.save_every == 0)
                ):
                    self._save(step, model, model_config)
                if interrupted:
                    break
            del batches
        if step >= config.steps and start >= config.steps:  # nothing left to train: make sure outputs exist
            self._save(step, model, model_config)
        model_path = None if interrupted else self._finish(step, model, ema, model_config, report)
        return FinetuneResult(self.run_dir, step, interrupted, model_path, report)

    def _check_run_dir(self, resume: bool) -> Checkpoint | None:
        """Refuse to mix two runs in one folder; find the checkpoint to resume. Cheap, before any decoding."""
        if resume:
            found = require_checkpoint(self.run_dir)
        elif self.run_dir.exists() and any(self.run_dir.iterdir()):
            hint = (
                "add --resume to continue it"
                if latest_checkpoint(self.run_dir / "checkpoints")
                else "choose another -o or empty it"
            )
            raise OutputExists(f"{self.run_dir}: the run folder is not empty", hint)
        else:
            found = None
        self.processes.barrier()  # every process has looked before rank 0 writes anything
        return found

    def _model(self, checkpoint: Checkpoint | None) -> tuple[torch.nn.Module, Any, str]:
        """The network to train (fp32 master weights on CPU), its config, and a phrase saying where it came from."""
        config = self.config
        torch.manual_seed(config.seed)  # scratch init and dropout; replaced by the saved state on resume
        if checkpoint is not None:
            loaded = load_model(checkpoint.raw_weights)
            return loaded.model, loaded.config, f"resuming at step {checkpoint.step}"
        if config.init is not None:
            loaded = load_model(config.init)
            if loaded.arch != ARCH:
                raise UsageError(
                    f"{config.init}: a {loaded.arch} model cannot be fine-tuned here (only {ARCH})"
                )
            return loaded.model, loaded.config, f"fine-tuning {config.init}"
        spec = config.model
        model_config = config_for(spec.arch, spec.config, "model.config")
        return build_model(spec.arch, model_config), model_config, f"training a new {spec.arch} from scratch"

    def _split(self, dataset: ClipDataset) -> tuple[list[int], AVProbe | None]:
        """Training clip indices and the audio-visual probe batch: `probe_clips` clips chosen by the seed,
        held out of training when there are at least 4× as many clips, else shared with training."""
        config = self.config
        n = len(dataset)
        chosen = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed)).tolist()
        count = min(config.probe_clips, n)
        held_out = n >= 4 * config.probe_clips
        train = sorted(chosen[count:]) if held_out else list(range(n))
        if count < 2 or config.probe_interval == 0:
            return train, None
        clips = [dataset[i] for i in sorted(chosen[:count])]
        batch = {k: torch.stack([c[k] for c in clips]) for k in clips[0]}
        if not held_out and self.main:
            self.on_event(
                TrainEvent("note", message=f"only {n} clips: the audio-visual probe uses training clips")
            )
        return train, AVProbe(batch, config.probe_timesteps, config.seed, self.schedule)

    def _restore(self, checkpoint, optimizer, ema, scaler, generator, noise_generator) -> int:
        state = checkpoint.load_state()
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        ema.module.load_state_dict(checkpoint.load_ema())
        ema.n_averaged.fill_(state["ema_n_averaged"])
        rng = state["rng"]
        rank = self.processes.rank
        if len(rng) == self.processes.world_size:
            mine = rng[rank]
            generator.set_state(mine["generator"])
            if noise_generator is not generator and mine["noise"] is not None:
                noise_generator.set_state(mine["noise"])
            torch.set_rng_state(mine["torch"])
            if mine["cuda"] is not None and self.compute.device.type == "cuda":
                torch.cuda.set_rng_state(mine["cuda"], self.compute.device)
        else:  # a different number of processes: carry on with fresh streams (not bitwise like the old run)
            for g in {id(generator): generator, id(noise_generator): noise_generator}.values():
                g.manual_seed(rank_seed(self.config.seed + checkpoint.step, rank))
            self.on_event(
                TrainEvent(
                    "note",
                    message=f"resumed with {self.processes.world_size} processes instead "
                    f"of {len(rng)}: random streams restarted",
                )
            )
        if self.main:
            self.log.rewind(checkpoint.step)
        return checkpoint.step

    # ---- one step ----------------------------------------------------------------------------------------

    def _step(
        self, trainable: torch.nn.Module, model: torch.nn.Module, batch: Modal, step: int
    ) -> dict[str, Any]:
        config, compute = self.config, self.compute
        optimizer, ema, scaler, generator, noise_generator = self._state
        if config.flip:
            flip = (torch.rand(batch["video"].shape[0], generator=generator) < 0.5).view(-1, 1, 1, 1, 1)
            batch = {**batch, "video": torch.where(flip, batch["video"].flip(-1), batch["video"])}
        x0 = each(lambda x: x.to(compute.device, non_blocking=True), batch)
        noising = draw_noising(x0, generator, noise_generator, independent=config.timesteps == "independent")
        lr = learning_rate(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with compute.autocast():
            loss, parts = diffusion_loss(
                trainable,
                x0,
                noising,
                self.schedule,
                weights=config.loss_weights,
                min_snr_gamma=config.min_snr_gamma,
                x0_weight_cap=config.x0_weight_cap,
                shift_generator=generator,
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or math.inf)
        scaler.step(optimizer)
        scaler.update()
        ema.update_parameters(model)
        return {
            "loss": loss.detach(),
            "loss_video": parts["video"],
            "loss_audio": parts["audio"],
            "grad_norm": grad_norm.detach(),
            "lr": lr,
        }

    # ---- outputs -----------------------------------------------------------------------------------------

    def _log_train(self, step: int, meter: _Meter, order: BatchOrder) -> None:
        values = meter.take(self.processes)
        if self.main:
            values["clips_per_s"] = values.pop("steps_per_s") * self.config.batch_size
            values["epoch"] = round(order.epoch_at(step), 4)
            self.log.write("train", step, **values)
            self.on_event(TrainEvent("step", step, self.config.steps, values=values))

    def _periodic(self, step: int, model: torch.nn.Module, ema: AveragedModel, probe: AVProbe | None) -> None:
        config = self.config
        if not self.main:
            return
        if probe is not None and config.probe_interval and step % config.probe_interval == 0:
            values = probe.measure(model, self.compute)
            self.log.write("probe", step, **values)
            self.on_event(TrainEvent("note", step, message=f"step {step}: av_gap {values['av_gap']:+.5f}"))
        if config.sample_every and step % config.sample_every == 0:
            path = self.run_dir / "samples" / f"step-{step:07d}.mp4"
            write_preview(
                path,
                ema.module,
                self.compute,
                sampler=config.sample_sampler,
                steps=config.sample_steps,
                seed=config.seed,
            )
            self.log.write("sample", step, path=str(path.relative_to(self.run_dir)))
            self.on_event(TrainEvent("note", step, message=f"step {step}: preview {path}"))

    def _rng_state(self) -> dict[str, torch.Tensor | None]:
        _, _, _, generator, noise_generator = self._state
        cuda = self.compute.device.type == "cuda"
        return {
            "generator": generator.get_state(),
            "noise": None if noise_generator is generator else noise_generator.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.compute.device) if cuda else None,
        }

    def _save(self, step: int, model: torch.nn.Module, model_config: Any) -> None:
        optimizer, ema, scaler, _, _ = self._state
        rng = self.processes.gather(self._rng_state())  # every process's streams, for an exact resume
        if self.main:
            state = {
                "step": step,
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "ema_n_averaged": int(ema.n_averaged),
                "rng": rng,
            }
            saved = save_checkpoint(
                self.run_dir / "checkpoints",
                step,
                model=model,
                ema=ema.module,
                arch=ARCH,
                config=model_config,
                state=state,
                keep=self.config.keep_checkpoints,
            )
            self.log.write("checkpoint", step, path=str(saved.path.relative_to(self.run_dir)))
        self.processes.barrier()

    def _write_config(self, model_config: Any) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "config.yaml"
        text = yaml.safe_dump(to_dict(self.config), sort_keys=False)
        write_text(path, f"# mmgen finetune {self.data_dir}: every setting of this run (read back by --resume)\n" + text)

    def _finish(
        self, step: int, model: torch.nn.Module, ema: AveragedModel, model_config: Any, report: ScanReport
    ) -> Path:
        """The final EMA weights as RUN/model.safetensors (+ a json describing them); check the processes agree."""
        digests = self.processes.gather(parameters_digest(model))
        path = self.run_dir / "model.safetensors"
        if self.main:
            if len(set(digests)) != 1:
                raise RuntimeError(f"processes ended with different weights: {digests}")
            training = {
                "steps": step,
                "init": self.config.init,
                "data": str(self.data_dir),
                "clips": report.clips,
                "processes": self.processes.world_size,
            }
            sha256 = save_model(
                path,
                ema.module,
                ARCH,
                model_config,
                {"source": "mmgen finetune", "weights": "ema", "training": training},
            )
            sidecar = {"arch": ARCH, "config": to_dict(model_config), "sha256": sha256, "training": training}
            with atomic_output(path.with_suffix(".json"), overwrite=True) as tmp:
                tmp.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
            self.log.write("done", step, model=path.name, sha256=sha256, process_digests=digests)
        self.processes.barrier()
        return path


class _Meter:
    """Running sums of a log interval's step values (kept as tensors: no device sync per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.count = 0
        self.since = time.perf_counter()

    def add(self, values: dict[str, Any]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def take(self, processes: distributed.Processes) -> dict[str, float]:
        """Interval means (averaged over processes) plus steps/s; resets the meter."""
        keys = sorted(self.sums)
        means = torch.tensor([float(self.sums[k]) / self.count for k in keys], dtype=torch.float64)
        means = torch.tensor(processes.gather(means.tolist()), dtype=torch.float64).mean(dim=0)
        elapsed = time.perf_counter() - self.since
        out = {k: float(v) for k, v in zip(keys, means.tolist(), strict=True)}
        out["lr"] = float(self.sums["lr"]) / self.count
        out["steps_per_s"] = self.count / elapsed if elapsed > 0 else 0.0
        self.sums, self.count, self.since = {}, 0, time.perf_counter()
        return out
