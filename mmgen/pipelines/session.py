"""Everything a pipeline run needs, checked cheaply BEFORE any model loads: the device, the sampling
settings, the seed, the model (known and available, the right architecture) and its upsampler — so a
typo fails in a second with exit 2 instead of after minutes of loading and sampling."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from mmgen.adapters import (
    Adapter,
    AdapterUse,
    BaseModel,
    check_base,
    check_fits,
    merge_adapters,
    read_uses,
)
from mmgen.diffusion import SamplingConfig, load_sampling_preset
from mmgen.diffusion.sampling_config import DEFAULT_PRESET
from mmgen.errors import ConfigError, InvalidSetting, UsageError
from mmgen.models.storage import store_for_compute
from mmgen.pipelines.preflight import LOCAL, check_model
from mmgen.pipelines.settings import RunSettings
from mmgen.runtime.device import Compute, select_compute
from mmgen.weights import LoadedModel, ModelCache, load_model, load_registry
from mmgen.weights.identity import local_identity
from mmgen.weights.lineage import own_lineage
from mmgen.weights.load import availability

_KEPT: ContextVar[dict | None] = ContextVar("mmgen_kept_models", default=None)  # see keep_loaded


@dataclass(frozen=True)
class Run:
    """The validated settings of one pipeline call."""

    model: str  # registry name or path, as given
    compute: Compute
    sampling: SamplingConfig  # with the conditional settings already chosen for soundtrack/animate
    seed: int
    upsampler: str | None  # registry name of the SR model to run, None: no upscaling
    adapters: tuple[AdapterUse, ...] = ()  # merged into the base model when it loads
    preset: str | None = None  # the sampling preset laid over the model's own settings (`sampling` holds the result)


@dataclass
class Models:
    base: LoadedModel  # with the run's adapters merged into its weights
    upsampler: LoadedModel | None
    adapters: tuple[tuple[Adapter, float], ...] = ()


def prepare(settings: RunSettings) -> Run:
    """Resolve and check a run's settings; nothing heavy is loaded. A soundtrack or animate run samples with the
    model's conditional settings."""
    compute = select_compute(settings.device, settings.precision)
    name = str(settings.model)  # a Path is welcome from Python
    check_model(name)
    own = own_lineage(name)  # its registry entry's, or what the model it was made from passed on
    base = load_sampling_preset(settings.preset, over=own.sampling) if settings.preset else own.sampling
    base = base or load_sampling_preset(DEFAULT_PRESET)
    if settings.conditional:
        base = base.for_conditional()
    base.check_steps(settings.steps, "steps", name)
    try:
        sampling = dataclasses.replace(base, conditional=None, **settings.sampling_overrides())
    except ValueError as e:
        raise UsageError(f"sampling settings: {e}") from None
    for key, (why, hint) in settings.unmeant(sampling.guidance).items():  # replacement guidance takes no scale
        value = getattr(settings, key)
        raise InvalidSetting(key, why, None if isinstance(value, bool) else value, hint=hint)  # `--wav: …`
    seed = secrets.randbelow(2**31) if settings.seed is None else settings.seed
    adapters = settings.adapters()
    _check_adapters(name, read_uses(adapters))  # a missing, damaged or foreign file fails now, before anything loads
    return Run(name, compute, sampling, seed, _choose_upsampler(name, own.upsampler, settings.upscaling()), adapters,
               settings.preset)


def _check_adapters(name: str, adapters: list[tuple[Adapter, float]]) -> None:
    """Refuse an adapter trained on other weights than the model `name`, where the model is on this machine (one
    still to be fetched is checked as it loads): a batch refuses the job while planning, a command before loading."""
    identity = local_identity(name, load_registry(), ModelCache()) if adapters else None
    if identity is None:
        return
    for adapter, _ in adapters:
        check_base(adapter, name, "mm-unet", *identity)  # check_model: the model is an mm-unet


def _choose_upsampler(name: str, upsampler: str | None, upscale: bool | None) -> str | None:
    if upscale is False:
        return None
    if upsampler is None:
        if upscale:
            raise InvalidSetting("upscale", f"model {name} names no upsampler", hint="run without upscaling")
        return None
    state = availability(upsampler, load_registry().entries.get(upsampler), ModelCache())
    if state in LOCAL or (upscale and state == "downloadable"):
        return upsampler
    if upscale:
        raise InvalidSetting(
            "upscale", f"the upsampler {upsampler} of {name} is not available ({state})",
            hint=f"import it with `mmgen models import FILE --name {upsampler}`, or run without upscaling",
        )
    return None


def load(run: Run) -> Models:
    """Load the run's model (and upsampler) onto its device, its conv and linear weights in the run's compute
    dtype (models/storage.py: what autocast would round them to anyway). Adapters are merged into float32
    weights first, so each merged weight is rounded once. Inside `keep_loaded()`, a model already loaded
    there is handed out again instead."""
    kept = _KEPT.get()
    compute = run.compute
    key = (run.model, run.upsampler, compute.device, compute.dtype, run.adapters)
    if kept is not None and key in kept:
        return kept[key]
    base = load_model(run.model, compute.device, torch.float32 if run.adapters else compute.dtype)
    if base.arch != "mm-unet":
        raise ConfigError(f"{run.model} is an {base.arch} model; this command needs an mm-unet")
    adapters = tuple(read_uses(run.adapters))
    for adapter, _ in adapters:
        check_fits(adapter, base.model, run.model, BaseModel.of(base))
    merge_adapters(base.model, list(adapters))
    store_for_compute(base.model, compute.dtype)
    upsampler = load_model(run.upsampler, compute.device, compute.dtype) if run.upsampler else None
    models = Models(base, upsampler, adapters)
    if kept is not None:
        kept[key] = models
    return models


@contextmanager
def keep_loaded() -> Iterator[None]:
    """Keep the models that pipeline calls load inside this block and reuse them for later calls with the same
    model, upsampler and device — how a batch loads each model once. They are released when the block ends."""
    token = _KEPT.set({})
    try:
        yield
    finally:
        _KEPT.reset(token)
