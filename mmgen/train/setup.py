"""Everything a run needs before its first step, cheapest checks first: the run folder (and the checkpoint to
resume), the network, the preview settings, the decoded clips, the probe batch and the training state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from mmgen.config import to_dict
from mmgen.data.clips import (
    ClipDataset,
    ClipFormat,
    ScanReport,
    build_clip_dataset,
    folder_fingerprint,
    scan_media,
)
from mmgen.diffusion import SamplingConfig
from mmgen.diffusion.schedule import Schedule
from mmgen.errors import UsageError, alike_in_every_process, output_named
from mmgen.files import write_text
from mmgen.models import build_model, config_for
from mmgen.models.config import MMUNetConfig
from mmgen.runtime.device import Compute, select_precision
from mmgen.runtime.processes import Processes
from mmgen.terminal import counted, listed
from mmgen.train.checkpoint import Resumable, resume_from, set_aside
from mmgen.train.config import FinetuneConfig
from mmgen.train.events import EventFn, TrainEvent
from mmgen.train.order import BatchOrder
from mmgen.train.preview import check_previewable, preview_sampling
from mmgen.train.probe import AVProbe
from mmgen.train.run_checks import check_run_places
from mmgen.train.run_folder import (
    RAN_ON,
    RUN_HEADER,
    RunFolderLock,
    check_final_json,
    check_start,
    failed_start,
    is_run_folder,
    put_back_final,
)
from mmgen.train.run_weights import ARCH, RunWeights, lora_weights
from mmgen.train.runlog import RunLog, first_event
from mmgen.train.state import TrainingState
from mmgen.train.workers import ending_with_this_process
from mmgen.weights import LoadedModel, load_model
from mmgen.weights.lineage import file_lineage, own_lineage


@dataclass
class Setup:
    data_dir: Path
    run_dir: Path
    config: FinetuneConfig
    compute: Compute
    processes: Processes
    state: TrainingState
    model_config: MMUNetConfig
    dataset: ClipDataset
    report: ScanReport
    train_indices: list[int]
    probe: AVProbe | None
    preview: SamplingConfig | None  # None: no previews
    schedule: Schedule
    log: RunLog
    preview_compute: Compute  # what `mmgen generate` would sample in, so a preview is the clip it makes

    def order(self, start: int) -> BatchOrder:
        config, processes = self.config, self.processes
        return BatchOrder(
            self.train_indices, config.batch_size, config.seed, start, processes.rank, processes.world_size
        )

    def loader(self, start: int) -> torch.utils.data.DataLoader:
        """The batches of steps start, start + 1, … (this process's share of each)."""
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=self.order(start),
            num_workers=self.config.num_workers,
            pin_memory=self.compute.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.config.seed),  # keeps the global RNG untouched
            worker_init_fn=ending_with_this_process() if self.config.num_workers else None,
        )


# Below this base width (the paper's models have 128 and 192; the demo 32) a CPU trains faster in fp32.
BF16_TRAINING_MIN_WIDTH = 128


def training_precision(device: torch.device, name: str, model_config: MMUNetConfig) -> torch.dtype:
    """As for sampling, except where that would train slower or untested. MPS trains in fp32 (fp16 training there
    needs loss scaling we don't test). A CPU trains a narrow model in fp32: there PyTorch's bf16 CPU kernels for
    the backward of GroupNorm over 1–2 channels per group and of attention over short sequences are slower than
    fp32's (measured on an AMX Xeon: the demo's LoRA steps 1.6× slower in bf16 on 2 threads, 2.4× on 1), while
    the paper's model trains 2.1× faster in bf16. An explicit --precision is always obeyed."""
    if name == "auto" and device.type == "mps":
        return torch.float32
    if name == "auto" and device.type == "cpu" and model_config.model_channels < BF16_TRAINING_MIN_WIDTH:
        return torch.float32
    return select_precision(device, name)


def prepare(
    data_dir: Path,
    run_dir: Path,
    config: FinetuneConfig,
    device: torch.device,
    processes: Processes,
    resume: bool,
    on_event: EventFn,
    lock: RunFolderLock,
) -> Setup:
    with alike_in_every_process():  # every process looks at the one run folder and the one folder of clips
        cache_dir = check_run_places(run_dir, config, resume)
        resumable = _check_run_dir(run_dir, data_dir, resume, processes, on_event, lock)
        processes.check_on_main(lambda: check_final_json(run_dir, RunWeights.final_name_of(config.lora)))
        scan = scan_media(data_dir, _run_folders(run_dir))  # once: for the fingerprint, then for the dataset
        fingerprint = folder_fingerprint(data_dir, scan[0])
        if resumable is not None:
            _check_same_data(run_dir, data_dir, fingerprint, on_event)
    model, files, origin = _model(config, resumable)
    model_config = files.model_config
    compute = Compute(device, training_precision(device, config.precision, model_config))
    preview = None
    if config.sample_every:
        check_previewable(model_config.sample_rate)
        preview = preview_sampling(config.init, config.sample_sampler, config.sample_steps)
    dataset, report = build_clip_dataset(
        data_dir,
        ClipFormat.of_model(model_config),
        cache_dir,
        stride=config.stride,
        progress=lambda done, total, path: on_event(TrainEvent("data", done, total, message=path.name)),
        scanned=scan,
        run=clip_cache_user(run_dir),
        processes=processes,
    )
    on_event(TrainEvent("data", report.files, report.files, data=report))
    schedule = Schedule.respaced("")
    train_indices, probe = _split(dataset, config, schedule, on_event)

    model.to(compute.device).train()
    model.gradient_checkpointing = config.gradient_checkpointing
    state = TrainingState(model, files, config, compute, processes)
    log = RunLog(run_dir / "log.jsonl")
    if resumable is not None:
        note = state.restore(resumable)
        if note:
            on_event(TrainEvent("note", message=note))
        if processes.is_main:
            log.rewind(state.step)
    if processes.is_main:
        _write_config(run_dir, data_dir, config, compute)
        if resumable is None:
            log.clear()  # a failed start's log, if any: this run's history starts here
            log.write(
                "data",
                0,
                folder=str(data_dir.resolve()),
                fingerprint=fingerprint,
                files=report.files,
                clips=report.clips,
                decoded=report.decoded,
                reused=report.reused,
                train_clips=len(train_indices),
                skipped=[{"file": str(s.path), "reason": s.reason} for s in report.skipped],
                left_out=[{"folder": str(s.path), "reason": s.reason} for s in report.left_out],
            )
        log.write("start", state.step, **compute.record())  # each start's own: a resume may train in another precision
    parameters = sum(p.numel() for p in model.parameters())
    if files.lora:
        trained = sum(p.numel() for p in state.parameters)
        origin += f" with rank-{files.lora.rank} LoRA adapters ({trained / 1e6:.3f} M trained)"
    on_event(
        TrainEvent(
            "start",
            state.step,
            config.steps,
            message=f"{origin}, {parameters / 1e6:.2f} M parameters, {counted(len(train_indices), 'training clip')}, "
            f"{compute.describe()}" + (f", {processes.world_size} processes" if processes.distributed else ""),
        )
    )
    return Setup(
        data_dir, run_dir, config, compute, processes, state, model_config, dataset, report, train_indices,
        probe, preview, schedule, log, Compute(device, select_precision(device, config.precision)),
    )  # fmt: skip


def clip_cache_user(run_dir: Path) -> str:
    """Who a run is to the clip cache, in the skip records it writes there: its run folder (every torchrun process's)."""
    return str(Path(run_dir).resolve())


_LISTED = 3  # damaged checkpoints named in the error line (a run keeps 3 by default)


def _check_run_dir(
    run_dir: Path, data_dir: Path, resume: bool, processes: Processes, on_event: EventFn, lock: RunFolderLock,
) -> Resumable | None:
    """Refuse to mix two runs in one folder (one training in it now, or a finished or resumable one); let a new run
    replace what a run that stopped before its first checkpoint left; load the checkpoint to resume (the newest
    that loads; damaged newer ones are reported and set aside). Cheap, before any decoding. The command line has
    asked the same before torch loaded (run_checks.check_run_folder): asked again here, holding the folder, it
    is the answer that counts (another run may have started or ended in it since)."""
    found, damaged = None, []
    if processes.is_main:  # made now, so the run holds it from this first look (a second run is refused before decoding)
        run_dir.mkdir(parents=True, exist_ok=True)
    _hold(lock, processes)
    if processes.is_main:
        put_back_final(run_dir)
    failed = check_start(run_dir, data_dir, resume)
    if resume:
        found, damaged = resume_from(run_dir)
    elif failed is not None:
        then = ("its checkpoints were set aside as damaged" if failed.set_aside
                else "the run here stopped before its first checkpoint")
        on_event(TrainEvent("note", message=f"note: {run_dir}: {then}; starting again (its config.yaml and log.jsonl "
                                            "are replaced)"))
    processes.barrier()  # every process has looked before rank 0 moves or writes anything
    problem = None
    if processes.is_main:
        aside = []
        for checkpoint, reason in damaged:
            aside.append(set_aside(checkpoint).name)
            then = f", resuming from step {found.checkpoint.step}" if found else ""
            on_event(
                TrainEvent(
                    "note",
                    message=f"warning: checkpoint {checkpoint.path} does not load ({reason}); set aside as "
                    f"{aside[-1]}{then}",
                )
            )
        if found is None and damaged:
            problem = _all_damaged(run_dir, data_dir, sorted(aside))
    processes.barrier()
    if found is None and damaged:  # every process found none that loads; rank 0 has set them aside
        processes.refuse_with_main(problem)
    return found


def _all_damaged(run_dir: Path, data_dir: Path, aside: list[str]) -> str:
    """Why --resume stops where no checkpoint loads, once they are set aside (kept as evidence, never deleted),
    and how to start the run again: the folder now holds what a run that never saved leaves."""
    which = "its one checkpoint is" if len(aside) == 1 else f"all {len(aside)} of its checkpoints are"
    failed = failed_start(run_dir, has_checkpoint=False)
    hint = failed.hint(data_dir, resume=True) if failed else f"start a new run in another folder ({output_named()})"
    return str(UsageError(f"{run_dir}: nothing to resume: {which} damaged (the warnings above say why); set "
                          f"aside in {run_dir / 'checkpoints'} as {listed(aside, _LISTED)}", hint))


def _hold(lock: RunFolderLock, processes: Processes) -> None:
    """Rank 0 takes the run folder's lock; every process raises if it could not (rank 0 says it)."""
    processes.check_on_main(lock.take)


def _check_same_data(run_dir: Path, data_dir: Path, fingerprint: str, on_event: EventFn) -> None:
    """A run resumes on the clips it started with: the folder its log records, or a folder holding the same files
    (moved or renamed). Other clips would quietly make one run of two trainings; that is a new run."""
    started = first_event(run_dir / "log.jsonl", "data") or {}
    folder = started.get("folder")
    if folder is None or Path(folder) == data_dir.resolve():
        return  # the same folder (new files in it are welcome), or a run logged before folders were recorded
    if started.get("fingerprint") == fingerprint:
        on_event(TrainEvent("note", message=f"note: {data_dir} holds the same files as {folder}, where this run "
                                            "started; going on"))
        return
    raise UsageError(
        f"{data_dir}: this run was trained on other clips, in {folder}",
        hint=f"resume with {folder}; to train on {data_dir}, start a new run (another {output_named()})",
    )


def _model(config: FinetuneConfig, resumable: Resumable | None) -> tuple[torch.nn.Module, RunWeights, str]:
    """The network to train (fp32 master weights on CPU), what its files hold, and a phrase saying where it came
    from. A LoRA run loads its base again on resume and restores only the adapters."""
    torch.manual_seed(config.seed)  # scratch init and dropout; replaced by the saved state on resume
    if config.lora is not None:
        base = _load_base(config.init)
        resumed = resumable.raw if resumable is not None else None
        files = lora_weights(base, config.lora, config.init, resumed)
        doing = f"resuming at step {resumable.checkpoint.step}" if resumable else f"adapting {config.init}"
        return base.model, files, doing
    if resumable is not None:
        if not isinstance(resumable.raw, LoadedModel):
            raise UsageError("this run trains LoRA adapters: resume it with its own --lora settings")
        loaded = resumable.raw
        files = RunWeights(loaded.config, lineage=file_lineage(loaded.path))
        return loaded.model, files, f"resuming at step {resumable.checkpoint.step}"
    if config.init is not None:
        loaded = _load_base(config.init)
        return loaded.model, RunWeights(loaded.config, lineage=own_lineage(config.init)), f"fine-tuning {config.init}"
    spec = config.model
    model_config = config_for(spec.arch, spec.config, "model.config")
    return build_model(spec.arch, model_config), RunWeights(model_config), f"training a new {spec.arch} from scratch"


def _load_base(name: str) -> LoadedModel:
    loaded = load_model(name)
    if loaded.arch != ARCH:
        raise UsageError(f"{name}: a {loaded.arch} model cannot be fine-tuned here (only {ARCH})")
    return loaded


def _split(
    dataset: ClipDataset, config: FinetuneConfig, schedule: Schedule, on_event: EventFn
) -> tuple[list[int], AVProbe | None]:
    """Training clip indices and the audio-visual probe batch: `probe_clips` clips chosen by the seed,
    held out of training when there are at least 4× as many clips, else shared with training."""
    n = len(dataset)
    chosen = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed)).tolist()
    count = min(config.probe_clips, n)
    held_out = n >= 4 * config.probe_clips
    train = sorted(chosen[count:]) if held_out else list(range(n))
    if count < 2 or config.probe_interval == 0:
        return train, None
    clips = [dataset[i] for i in sorted(chosen[:count])]
    batch = {k: torch.stack([c[k] for c in clips]) for k in clips[0]}
    if not held_out:
        on_event(TrainEvent("note", message=f"only {n} clips: the audio-visual probe uses training clips"))
    return train, AVProbe(batch, config.probe_timesteps, config.seed, schedule)


def _run_folders(run_dir: Path) -> Callable[[Path], str | None]:
    """Why a folder inside the data folder is not training data: it is this run's folder, or another run's —
    their previews are a model's own output (`finetune my_clips/ -o my_clips/run` is a natural layout)."""
    this = run_dir.resolve()

    def reason(folder: Path) -> str | None:
        if folder.resolve() == this:
            return "this run's own folder (its previews are the model's output, not training data)"
        if is_run_folder(folder):
            return "an mmgen finetune run's folder (its previews are a model's output, not training data)"
        return None

    return reason


def _write_config(run_dir: Path, data_dir: Path, config: FinetuneConfig, compute: Compute) -> None:
    """Every setting as given (`device: auto` picks again on --resume, on whatever machine that is), then RAN_ON: the
    device and precision this start resolved them to, a comment line: an older mmgen refuses a key it does not know,
    and a run resumed here once must still resume there."""
    run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    header = f"{RUN_HEADER}{data_dir}: every setting of this run (read back by --resume)\n"
    ran_on = "# what device and precision picked when this run last started (a record; --resume picks again):\n" \
        f"# {RAN_ON}: {yaml.safe_dump(compute.record(), sort_keys=False, default_flow_style=True)}"
    write_text(run_dir / "config.yaml", header + text + ran_on)
