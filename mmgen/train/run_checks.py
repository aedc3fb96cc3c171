"""The finetune settings only this machine and the run folder can judge — the device exists, the model to start
from is known, a batch fits in memory, a resumed run goes on training what it trained — checked on the merged
settings (mmgen.train.config.run_config), each error naming the file and key, or the flag, a value came from; and
the run folder and clip cache themselves (check_run_folder, which loads no torch: the command line asks it before
the device check does)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmgen.errors import MmgenError, ModelNotFound, UsageError, in_callers_words, output_named
from mmgen.input_files import why_not_a_file
from mmgen.pipelines.settings import InvalidSetting
from mmgen.runtime import torchrun
from mmgen.terminal import number_text
from mmgen.weights.registry import is_path
from mmgen.written_paths import missing_hint

MARGIN = 1.5  # a step's estimate is refused only this far past the memory there is (it is an estimate)

if TYPE_CHECKING:
    from mmgen.train.config import FinetuneConfig, Setting


def check_here(config: FinetuneConfig, setting: Callable[[str], Setting], resume: bool = False) -> None:
    """What only this machine can judge — the model to start from is known, the architecture builds, a batch fits,
    the device exists — checked as the layers are merged, so that an error names the file (and key) or the flag a
    value came from, as from_dict's per-layer checks do. A resumed whole-model run needs no `init` (its checkpoint
    holds the weights); a LoRA run does (its base). The device comes last: whether it is here is torch's to say
    (its CUDA or MPS runtime), and torch takes seconds to load, which a refusal of the others does not wait for."""
    from mmgen.models import config_for

    _check_batch_splits(config.batch_size, setting("batch_size"))
    if config.init is not None and (not resume or config.lora is not None):
        _check_model_known(config.init, setting("init"))
    model_config = None
    if config.model is not None:
        model_config = config_for(config.model.arch, config.model.config, f"{setting('model')}.config")
    elif config.init is not None:
        from mmgen.weights.architecture import known_config

        try:
            model_config = known_config(config.init)
        except MmgenError:  # a file that does not describe a model: loading it says so, with its hint
            pass
    if model_config is not None:
        _check_batch_fits(config, model_config, setting("batch_size"))
    from mmgen.runtime.device import select_device  # (imports torch)

    try:
        select_device(config.device)
    except InvalidSetting as e:
        raise UsageError(e.said_as(str(setting("device")))) from None


def _check_batch_splits(batch_size: int, setting: Setting) -> None:
    """Under torchrun each process trains on an equal share of every batch (mmgen.train.order): a batch the process
    count does not divide — a new one, or a --resume at another count — is refused before any clip is decoded, by
    every process alike, said once (rank 0)."""
    processes = torchrun.place()[1]
    if batch_size % processes:
        refused = UsageError(f"{setting.given(batch_size)} does not split evenly over {processes} processes",
                             hint=f"give a batch size that is a multiple of {processes}, or run a number of "
                             f"processes that divides {batch_size}")
        refused.every_process = True
        raise refused


def _check_batch_fits(config: FinetuneConfig, model_config: Any, setting: Setting) -> None:
    """A batch larger than the training clips repeats them (mmgen.train.order), each copy with its own noise, so
    the clips do not bound it; this machine's memory does, shared by the job's processes on it (torchrun's
    LOCAL_WORLD_SIZE). A process's share is collated as float32 clips, and a whole-model step in RAM keeps each
    clip's activations for the backward pass (train.batch_memory: an estimate kept under what a run takes). A batch
    whose clips could never fit, or whose step's estimate is past the memory by MARGIN, is refused now, before any
    decoding or writing."""
    from mmgen.runtime.memory import physical_memory
    from mmgen.terminal import size_text
    from mmgen.train.batch_memory import activation_bytes, clip_bytes, trains_in_ram

    memory, processes, here = physical_memory(), torchrun.place()[1], torchrun.processes_here()
    if memory is None or not hasattr(model_config, "video_size"):  # (an SR model's file: loading it says so)
        return
    per_clip, kept, limit, more = clip_bytes(model_config), "its clips", memory, ""
    if config.lora is None and trains_in_ram(config.device):
        per_clip += activation_bytes(model_config, config.gradient_checkpointing)
        kept, limit = "its clips and the activations kept for the backward pass", memory * MARGIN
        more = "" if config.gradient_checkpointing else "; --recompute keeps less"
    needed = config.batch_size // processes * here * per_clip  # this machine's processes share its memory
    if needed > limit:
        fit = int(memory // (per_clip * here) or limit // (per_clip * here)) * processes  # (what the check lets by)
        raise UsageError(f"{setting.given(config.batch_size)}: a training step of this model at this batch takes "
                         f"about {size_text(needed)} of memory ({kept}), more than this machine has "
                         f"({size_text(memory)})",
                         hint=f"choose a smaller batch: about {fit} fit{more}" if fit else
                         f"no batch of this model fits in this machine's memory{more}")


def _check_model_known(name: str, setting: Setting) -> None:
    from mmgen.weights.cache import ModelCache
    from mmgen.weights.registry import load_registry, unknown_model

    if is_path(name):
        if why := why_not_a_file(name, missing="no such model file"):  # a file's path read as a batch file's is
            raise ModelNotFound(f"{setting}: {name}: {why}{missing_hint(name) if setting.file else ''}")
        return
    registry, cache = load_registry(), ModelCache()
    if name not in registry and cache.record(name) is None:
        error = unknown_model(name, sorted({*registry.names(), *cache.names()}))
        raise ModelNotFound(f"{setting}: {error.message}", error.hint)


def check_same_training(run_dir: Path, config: FinetuneConfig, setting: Callable[[str], Setting]) -> None:
    """A resumed run goes on training what it trained: the whole model, or LoRA adapters of the same rank, alpha
    and targets (its newest checkpoint says which). An error names the setting that asks otherwise and the file."""
    from mmgen.train.checkpoint import trained_lora

    found = trained_lora(run_dir)
    if found is None or found[1] == config.lora:
        return
    checkpoint, trained = found
    weights, asked = checkpoint.raw_weights, config.lora
    if trained is None:
        lora = setting("lora_rank")
        raise UsageError(f"{lora.given(config.lora_rank)} asks for LoRA adapters, but this run fine-tunes the whole "
                         f"model ({weights} holds no adapters)", hint=lora.dropped())
    if asked is None:
        raise UsageError(f"{setting('lora_rank')} is not set, but this run trains rank-{trained.rank} LoRA adapters "
                         f"({weights})", hint=f"resume with --lora {trained.rank}")
    for key, was, now in (("lora_rank", trained.rank, asked.rank), ("lora_alpha", trained.alpha, asked.alpha),
                          ("lora_targets", trained.targets, asked.targets)):
        if was != now:
            raise UsageError(f"{setting(key).given(now)}, but this run's adapters ({weights}) have {key} {number_text(was)}",
                             hint=setting(key).dropped(keep=was))


def check_run_folder(data_dir: Path, run_dir: Path, config: FinetuneConfig, resume: bool) -> None:
    """What train.setup refuses of the run folder and clip cache, asked before torch loads, so that a run that cannot
    start in `run_dir` (a folder in use, not empty, a --resume with nothing to resume from) is refused at once, in
    the same words (its clips' folder `data_dir` is the caller's to have checked: config_layers.run_config). The run
    asks again holding the folder (setup's check is the guard: another run may start or end in it meanwhile). Left
    to that look: a --resume of a run with step folders (one finished is left as it is, checked no further:
    trainer.run_training; which checkpoint loads is for torch to read), and a folder that look changes first, putting
    back or removing what a killed process left there (run_folder.put_back_final)."""
    from mmgen.temporaries import leftovers
    from mmgen.train.run_folder import RunFolderLock, check_final_json, check_start, final_weights
    from mmgen.train.step_folders import step_folders

    check_final_json(run_dir, final_weights(config.lora is not None))
    if resume and step_folders(run_dir / "checkpoints"):
        return
    check_run_places(run_dir, config, resume)
    RunFolderLock(run_dir).check_free()
    if not leftovers(run_dir):
        check_start(run_dir, data_dir, resume)


def check_run_places(run_dir: Path, config: FinetuneConfig, resume: bool) -> Path:
    """The run's clip cache (returned) and its run folder can take files, and neither lies in the other or the run
    folder in a cache (check_outside_caches). A clip cache to be made must take files, said now; one that is there
    may hold every clip already, and is then only read (a read-only mount is fine): it must take files only where
    one is decoded anew (ClipCache.lookup)."""
    from mmgen.output_checks import check_output_folder, check_writable_folder

    cache_dir = clip_cache(config)
    cache_dir = check_output_folder(cache_dir) if cache_dir.is_dir() else \
        check_writable_folder(cache_dir, hint=f"choose another {_cache_dir_words()}, or set MMGEN_CACHE")
    check_outside_caches(run_dir, cache_dir, resume)
    check_writable_folder(run_dir, hint=f"choose another {output_named()}")
    return cache_dir


def _cache_dir_words() -> str:
    """What names the clip cache, in its caller's words: `--cache-dir`, or FinetuneConfig's `cache_dir=`."""
    return in_callers_words("--cache-dir", "cache_dir=")


def clip_cache(config: FinetuneConfig) -> Path:
    """The folder of the run's decoded clips: --cache-dir, else the mmgen cache's `clips`."""
    from mmgen.weights.cache import cache_root, own_path

    return config.cache_dir or own_path(cache_root(), "clips")  # (a link there: DamagedEntry, never written through)


def check_outside_caches(run_dir: Path, cache_dir: Path, resume: bool) -> None:
    """UsageError when `run_dir` is, or is inside — through symlinks, or another spelling of the name — the run's
    clip cache `cache_dir` or mmgen's cache folder: a run folder there lay among the cache's hashed files. And the
    other way round, for a new run, when the clip cache is, or is inside, the run folder: a new run that fails
    removes its run folder (the cache with it). A resumed run removes none, and one started so before this was
    refused goes on as it was recorded."""
    from mmgen.weights.cache import part_of_cache

    real = Path(os.path.realpath(run_dir))
    cache = cache_dir if real.is_relative_to(os.path.realpath(cache_dir)) else part_of_cache(run_dir)
    if cache is not None:
        raise UsageError(f"{run_dir}: the run folder is inside a cache ({cache})",
                         hint=f"choose another {output_named()}, outside the cache; the cache holds mmgen's own files")
    if not resume and Path(os.path.realpath(cache_dir)).is_relative_to(real):
        raise UsageError(f"{cache_dir}: the clip cache is inside the run folder ({run_dir})",
                         hint=f"choose a {_cache_dir_words()} outside the run folder (clips decoded once serve every run)")
