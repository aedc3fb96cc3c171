"""The finetune settings only this machine and the run folder can judge — the device exists, the model to start
from is known, a batch fits in memory, a resumed run goes on training what it trained — checked on the merged
settings (mmgen.train.config.run_config), each error naming the file and key, or the flag, a value came from."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmgen.errors import MmgenError, ModelNotFound, UsageError
from mmgen.input_files import why_not_a_file
from mmgen.pipelines.settings import InvalidSetting
from mmgen.terminal import number_text
from mmgen.weights.registry import is_path

if TYPE_CHECKING:
    from mmgen.train.config import FinetuneConfig, Setting


def check_here(config: FinetuneConfig, setting: Callable[[str], Setting], resume: bool = False) -> None:
    """What only this machine can judge — the device exists, the model to start from is known, the architecture
    builds — checked as the layers are merged, so that an error names the file (and key) or the flag a value
    came from, as from_dict's per-layer checks do. A resumed whole-model run needs no `init` (its checkpoint
    holds the weights); a LoRA run does (its base)."""
    from mmgen.models import config_for
    from mmgen.runtime.device import select_device

    try:
        select_device(config.device)
    except InvalidSetting as e:
        raise UsageError(e.said_as(str(setting("device")))) from None
    if config.init is not None and (not resume or config.lora is not None):
        _check_model_known(config.init, setting("init"))
    model_config = None
    if config.model is not None:
        model_config = config_for(config.model.arch, config.model.config, f"{setting('model')}.config")
    elif config.init is not None:
        from mmgen.weights.load import known_config

        try:
            model_config = known_config(config.init)
        except MmgenError:  # a file that does not describe a model: loading it says so, with its hint
            pass
    if model_config is not None:
        _check_batch_fits(config.batch_size, model_config, setting("batch_size"))


def _check_batch_fits(batch_size: int, model_config: Any, setting: Setting) -> None:
    """A batch larger than the training clips repeats them (mmgen.train.order), each copy with its own noise, so
    the clips do not bound it; this machine's memory does. A process's share of a batch is collated as float32
    clips: one that could never fit in RAM is refused now, before any decoding or writing."""
    from mmgen.runtime.memory import physical_memory
    from mmgen.runtime.processes import described
    from mmgen.terminal import size_text

    memory, processes = physical_memory(), described().world_size
    clip = 4 * (math.prod(model_config.video_size) + math.prod(model_config.audio_size))
    needed = batch_size // processes * clip
    if memory is not None and needed > memory:
        raise UsageError(f"{setting.given(batch_size)}: one batch of this model's clips takes {size_text(needed)} "
                         f"of memory, more than this machine has ({size_text(memory)})",
                         hint=f"choose a smaller batch: {memory // clip * processes} of these clips fill the memory "
                         "before the model needs any")


def _check_model_known(name: str, setting: Setting) -> None:
    from mmgen.weights.cache import ModelCache
    from mmgen.weights.registry import load_registry, unknown_model

    if is_path(name):
        if why := why_not_a_file(name, missing="no such model file"):
            raise ModelNotFound(f"{setting}: {name}: {why}")
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
