"""The one way to get a model: `load_model(name_or_path)` for pipelines, finetune and batch alike.

A name is resolved through the registry (bundled file, cache, or a download when allowed) or, for a model
imported without a registry entry, the cache alone; a path must be an mmgen .safetensors (its config in the
metadata) or a safetensors with a sidecar `<stem>.json` holding {"arch": ..., "config": {...}}.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmgen.errors import ChecksumMismatch, MmgenError, ModelNotFound
from mmgen.files import sha256_file
from mmgen.input_files import why_not_a_file
from mmgen.models import build_model
from mmgen.models.storage import Storage
from mmgen.weights import sidecar, trust
from mmgen.weights.architecture import Target, describe
from mmgen.weights.cache import CacheRecord, ModelCache
from mmgen.weights.checkpoint import check_weight
from mmgen.weights.convert import check_state_dict
from mmgen.weights.pull import availability, pull, repair_hint
from mmgen.weights.registry import ModelEntry, is_path, load_registry, unknown_model
from mmgen.weights.safetensors_file import read_tensors
from mmgen.weights.safetensors_open import open_safetensors


@dataclass
class LoadedModel:
    """A model ready to sample from (eval mode), with what the sidecar of every output records."""

    name: str
    arch: str
    config: Any  # MMUNetConfig | SRUNetConfig
    model: torch.nn.Module
    sha256: str  # of the safetensors file the weights came from, as checked when it was loaded
    path: Path
    entry: ModelEntry | None  # None for a path or a model imported without a registry entry
    source_sha256: str | None = None  # of the file it was converted from (e.g. the official Landscape.pt)
    same_weights_as: str | None = None  # source_sha256, when this file holds exactly its values (CacheRecord)


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
    return entry.weights.bundled_path if state == "bundled" else cache.weights_file(name)


def load_model(
    name_or_path: str | Path,
    device: str | torch.device = "cpu",
    compute: torch.dtype = torch.float32,
    *,
    download: bool = True,
    quiet: bool = False,
) -> LoadedModel:
    """Load a model by registry name or safetensors path, strictly (every key and shape must fit).
    On `device`, in eval mode; `compute` is the dtype it will run in (autocast's): the weights autocast
    computes in it are kept in it (models/storage.py), the rest in float32."""
    json_file = None  # where a config the weights file does not carry may be: beside it (`describe`)
    if is_path(name_or_path):
        entry, name = None, str(name_or_path)
        if why := why_not_a_file(name_or_path, missing="no such model file"):
            raise ModelNotFound(f"{name_or_path}: {why}")
        path, json_file = sidecar.kept_files(Path(name_or_path))  # a run's replacing it: the weights it replaces
    else:
        name = str(name_or_path)
        path = resolve_weights(name, download=download, quiet=quiet)
        entry = load_registry().entries.get(name)
    with _removed_while_read(name_or_path, path):
        return _read(name, path, entry, json_file, is_path(name_or_path), torch.device(device), compute)


def _read(name: str, path: Path, entry: ModelEntry | None, json_file: Path | None, by_path: bool,
          device: torch.device, compute: torch.dtype) -> LoadedModel:
    """`load_model` once it knows where the weights are: checked, described and read."""
    cache, bundled = ModelCache(), entry is not None and entry.weights.bundled  # bundled: never the cache's
    record = None if by_path or bundled or path.parent != cache.folder(name) else _checked_record(cache, name, entry)
    if record is not None:
        sha256 = record.sha256
    elif bundled:
        sha256 = sha256_file(path)  # checked against the entry below
    else:  # a file given by path: hashed once while its stamp holds (its lineage was found by the same sha256)
        sha256 = ModelCache().file_sha256(path)
    if bundled and entry.weights.sha256 not in (None, sha256):
        raise ChecksumMismatch(
            f"{name}: the bundled weights file {path} is damaged: expected sha256 {entry.weights.sha256}, "
            f"got {sha256}",
            hint="reinstall mmgen",
        )
    target = describe(path, entry, json_file)
    model = _instantiate(path, target, device, compute)
    source_sha256 = record.source_sha256 if record is not None else None
    same = source_sha256 if record is not None and record.same_weights_as_source else None
    return LoadedModel(name, target.arch, target.config, model, sha256, path, entry, source_sha256, same)


@contextmanager
def _removed_while_read(name_or_path: str | Path, path: Path) -> Iterator[None]:
    """While the weights at `path` are read: their file gone (`models rm` in another process, which waits for no
    reader; a file given by path deleted) is said as that, exit 1, not as an unexpected FileNotFoundError (whose
    filename safetensors does not set)."""
    try:
        yield
    except FileNotFoundError:
        if os.path.lexists(path):
            raise
        if is_path(name_or_path):
            raise MmgenError(f"{name_or_path}: the model file was removed while in use") from None
        raise MmgenError(f"model {name_or_path} was removed while in use (models rm?)") from None


def _checked_record(cache: ModelCache, name: str, entry: ModelEntry | None) -> CacheRecord:
    """The cache record of `name` once its weights file is checked against it (size and stamp, re-hashed when
    the stamp moved) and, for a file trusted on first use, the record against the trusted sha256."""
    record = cache.record(name)
    if record is None:  # cached a moment ago (resolve_weights), gone now: `_removed_while_read` says so
        raise FileNotFoundError(errno.ENOENT, "no cache record", str(cache.record_path(name)))
    record = cache.checked(name, record, repair_hint(name, entry))
    trust.check_trusted(cache.root, name, record.source_sha256, None, "the file the cached model came from")
    return record


def _instantiate(path: Path, target: Target, device: torch.device, compute: torch.dtype) -> torch.nn.Module:
    """Build on the meta device (no memory, no init work) and adopt the file's tensors as parameters, each read
    (safetensors_file.read_tensors: plain reads, no memory map) and put straight into the dtype and layout it is
    kept in for `compute` (models/storage.py): no full-precision state dict is built first, so loading peaks at
    the kept weights plus one tensor as read. A tensor holding NaN or Inf is refused as it is read
    (checkpoint.check_weight)."""
    model = build_model(target.arch, target.config, device="meta")
    storage = Storage.of(model, compute)
    with open_safetensors(path) as file:
        shapes = {k: torch.empty(file.get_slice(k).get_shape(), device="meta") for k in file.keys()}  # noqa: SIM118
    check_state_dict(shapes, {k: v.shape for k, v in model.state_dict().items()}, str(path))
    state = {name: storage.keep(name, check_weight(path, name, tensor), device) for name, tensor in read_tensors(path)}
    model.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in itertools.chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    if left:  # a non-persistent buffer would stay on meta: the architecture must build it lazily instead
        raise RuntimeError(f"{target.arch}: tensors not restored from the state dict: {', '.join(left[:3])}")
    return model.to(device).eval()
