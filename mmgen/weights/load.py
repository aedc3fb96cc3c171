"""The one way to get a model: `load_model(name_or_path)` for pipelines, finetune and batch alike.

A name is resolved through the registry (bundled file, cache, or a download when allowed) or, for a model
imported without a registry entry, the cache alone; a path must be an mmgen .safetensors (its config in the
metadata) or a safetensors with a sidecar `<stem>.json` holding {"arch": ..., "config": {...}}.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import safetensors.torch
import torch

from mmgen.errors import ChecksumMismatch, ConfigError, ModelNotFound
from mmgen.models import build_model, config_for
from mmgen.weights.cache import CacheRecord, ModelCache
from mmgen.weights.checkpoint import read_header, sha256_file
from mmgen.weights.convert import Target, check_state_dict, install
from mmgen.weights.download import download, offline
from mmgen.weights.registry import ModelEntry, Registry, load_registry, unknown_model

Availability = Literal["bundled", "bundled (missing)", "cached", "downloadable", "needs import"]


@dataclass
class LoadedModel:
    """A model ready to sample from (eval mode), with what the sidecar of every output records."""

    name: str
    arch: str
    config: Any  # MMUNetConfig | SRUNetConfig
    model: torch.nn.Module
    sha256: str  # of the safetensors file the weights came from
    path: Path
    entry: ModelEntry | None  # None for a path or a model imported without a registry entry

    @property
    def upsampler(self) -> str | None:
        return self.entry.upsampler if self.entry else None


def availability(name: str, entry: ModelEntry | None, cache: ModelCache) -> Availability:
    """Where a model's weights stand right now, without touching the network."""
    if entry is not None and entry.weights.bundled:
        return "bundled" if entry.weights.bundled_path.is_file() else "bundled (missing)"
    if _cached(cache, name, entry) is not None:
        return "cached"
    return "downloadable" if entry is not None and entry.weights.urls else "needs import"


def _cached(cache: ModelCache, name: str, entry: ModelEntry | None) -> CacheRecord | None:
    """The cache record if it holds the weights the entry names (any import, for entries without a sha256)."""
    record = cache.record(name)
    if record is None or entry is None or entry.weights.sha256 in (None, record.source_sha256):
        return record
    return None


@dataclass(frozen=True)
class Pulled:
    path: Path
    fetched: bool  # False: it was already there (bundled, cached, or another process just fetched it)


def pull(
    name: str, *, quiet: bool = False, registry: Registry | None = None, cache: ModelCache | None = None
) -> Pulled:
    """Make a registry model's weights available locally, downloading and converting them if needed."""
    registry, cache = registry or load_registry(), cache or ModelCache()
    entry = registry.entries.get(name)
    if entry is None:
        if cache.record(name) is not None:
            return Pulled(cache.weights_path(name), fetched=False)
        raise unknown_model(name, sorted({*registry.names(), *cache.names()}))
    if entry.weights.bundled:
        path = entry.weights.bundled_path
        if not path.is_file():
            raise ModelNotFound(
                f"{name}: the bundled weights file {path} is missing",
                hint="reinstall mmgen, or pick another model with -m NAME|FILE (see `mmgen models list`)",
            )
        return Pulled(path, fetched=False)
    if _cached(cache, name, entry) is not None:
        return Pulled(cache.weights_path(name), fetched=False)
    if entry.needs_import:
        raise ModelNotFound(
            f"{name}: weights are not in the cache and cannot be downloaded automatically",
            hint=f"get {entry.origin}, then run `mmgen models import FILE --name {name}`",
        )
    urls = entry.weights.urls
    if offline() and not any(url.startswith("file:") for url in urls):
        raise ModelNotFound(
            f"{name}: weights are not in the cache ({cache.folder(name)}) and MMGEN_OFFLINE=1 forbids downloading",
            hint=f"fetch {urls[0]} on a connected machine, then run `mmgen models import FILE --name {name}`",
        )
    with cache.lock(name):
        if _cached(cache, name, entry) is not None:  # another process finished it while we waited
            return Pulled(cache.weights_path(name), fetched=False)
        sha256 = entry.weights.sha256
        part = download(urls, cache.part_path(name, sha256), sha256, label=name, quiet=quiet)
        target = Target(entry.arch, entry.config) if entry.config is not None else None
        install(cache, name, part, target, source=urls[0], source_sha256=sha256)
        part.unlink()
    return Pulled(cache.weights_path(name), fetched=True)


def resolve_weights(name: str, *, download: bool = True, quiet: bool = False) -> Path:
    """Path of a registry/cached model's safetensors; fetches it first when `download` allows."""
    if download:
        return pull(name, quiet=quiet).path
    registry, cache = load_registry(), ModelCache()
    entry = registry.entries.get(name)
    if entry is None and cache.record(name) is None:
        raise unknown_model(name, sorted({*registry.names(), *cache.names()}))
    state = availability(name, entry, cache)
    if state not in ("bundled", "cached"):
        raise ModelNotFound(
            f"{name}: weights are not available locally ({state})", hint=f"run `mmgen models pull {name}`"
        )
    return entry.weights.bundled_path if state == "bundled" else cache.weights_path(name)


def is_path(name_or_path: str | Path) -> bool:
    """`-m` takes a registry name or a path; anything with a folder separator or a .safetensors suffix is a path."""
    text = str(name_or_path)
    return isinstance(name_or_path, Path) or "/" in text or os.sep in text or text.endswith(".safetensors")


def load_model(
    name_or_path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    *,
    download: bool = True,
    quiet: bool = False,
) -> LoadedModel:
    """Load a model by registry name or safetensors path, strictly (every key and shape must fit).
    Weights are cast to `dtype` (default float32) and moved to `device`; the model is in eval mode."""
    if is_path(name_or_path):
        path, entry, name, record = Path(name_or_path), None, str(name_or_path), None
        if not path.is_file():
            raise ModelNotFound(f"{path}: no such model file")
    else:
        name = str(name_or_path)
        path = resolve_weights(name, download=download, quiet=quiet)
        entry = load_registry().entries.get(name)
        record = ModelCache().record(name) if path.name == "model.safetensors" else None
    sha256 = record.sha256 if record is not None else sha256_file(path)
    if entry is not None and entry.weights.bundled and entry.weights.sha256 not in (None, sha256):
        raise ChecksumMismatch(
            f"{name}: the bundled weights file {path} is damaged: expected sha256 {entry.weights.sha256}, "
            f"got {sha256}",
            hint="reinstall mmgen",
        )
    target = _describe(path, entry)
    model = _instantiate(path, target, torch.device(device), dtype or torch.float32)
    return LoadedModel(name, target.arch, target.config, model, sha256, path, entry)


def _describe(path: Path, entry: ModelEntry | None) -> Target:
    """The architecture of a weights file: its own metadata first, then a sidecar json, then the entry."""
    header = read_header(path)
    if header is not None:
        return Target(header.arch, config_for(header.arch, header.config, f"{path}: metadata config"))
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{sidecar}: invalid JSON ({e})") from None
        # Lenient on purpose: a run folder's json may carry more than the architecture.
        if not isinstance(data, dict) or not isinstance(data.get("arch"), str):
            raise ConfigError(f"{sidecar}: arch: required (mm-unet or sr-unet)")
        config = config_for(data["arch"], data.get("config") or {}, f"{sidecar}: config")
        return Target(data["arch"], config)
    if entry is not None and entry.config is not None:
        return Target(entry.arch, entry.config)
    raise ConfigError(f"{path}: no architecture config in its metadata and no sidecar {sidecar.name}")


def _instantiate(path: Path, target: Target, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Build on the meta device (no memory, no init work) and adopt the loaded tensors as parameters."""
    state = safetensors.torch.load_file(str(path), device="cpu")
    model = build_model(target.arch, target.config, device="meta")
    check_state_dict(state, {k: v.shape for k, v in model.state_dict().items()}, str(path))
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in itertools.chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    if left:  # a non-persistent buffer would stay on meta: the architecture must build it lazily instead
        raise RuntimeError(f"{target.arch}: tensors not restored from the state dict: {', '.join(left[:3])}")
    return model.to(device).eval()
