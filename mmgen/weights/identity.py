"""A model's identity without loading or downloading it: the sha256 of the weights a name or path stands for,
so that a batch can tell whether a finished job was made by the model it would use now."""

from __future__ import annotations

from pathlib import Path

from mmgen.weights import sidecar
from mmgen.weights.cache import ModelCache
from mmgen.weights.pull import cached_record
from mmgen.weights.registry import Registry, is_path


def model_sha256(name: str, registry: Registry, cache: ModelCache) -> str:
    """The sha256 of the weights file a name or path loads — how mmgen names a model everywhere (`models list`,
    sidecars, adapters) — found as weights/load does: a path's own, the bundled file's, the cached model's. A model
    not fetched yet has no such file: the registry's sha256 of the file it will be made from stands for it; else
    "unknown:NAME" (a model that must still be imported)."""
    if is_path(name):
        return cache.file_sha256(Path(name))  # hashed once while the file stays as it is (mmgen.stamps)
    entry = registry.entries.get(name)
    if entry is not None and entry.weights.bundled and entry.weights.bundled_path.is_file():
        return entry.weights.sha256 or cache.file_sha256(entry.weights.bundled_path)
    record = cached_record(cache, name, entry)
    if record is not None:
        return record.sha256
    if entry is not None and entry.weights.sha256:
        return entry.weights.sha256
    return f"unknown:{name}"


def model_sha256s(name: str, registry: Registry, cache: ModelCache) -> tuple[str, ...]:
    """`model_sha256`, then the other sha256 a batch may have recorded for the same model: its registry entry's
    (of the file it is made from), which batches named a fetched model by until 2026-12-01, and name it by still
    while it is not fetched — so the jobs done then stay done once the model is here."""
    current = model_sha256(name, registry, cache)
    entry = None if is_path(name) else registry.entries.get(name)
    former = entry.weights.sha256 if entry is not None else None
    return (current,) if former in (None, current) else (current, former)


def local_identity(name: str, registry: Registry, cache: ModelCache) -> tuple[str, set[str]] | None:
    """The sha256 a model on this machine loads with (LoadedModel.sha256) and that of every file holding exactly
    its weights (LoadedModel.same_weights_as too), found as weights/load finds them, without loading it: what an
    adapter's base must be (adapters.check_base). None for a model not here yet, whose file is not known."""
    if is_path(name):
        sha256 = cache.file_sha256(sidecar.kept_files(Path(name))[0])
        return sha256, {sha256}
    entry = registry.entries.get(name)
    if entry is not None and entry.weights.bundled:
        if not entry.weights.bundled_path.is_file():
            return None
        sha256 = entry.weights.sha256 or cache.file_sha256(entry.weights.bundled_path)
        return sha256, {sha256}
    record = cached_record(cache, name, entry)
    if record is None:
        return None
    return record.sha256, {record.sha256, *([record.source_sha256] if record.same_weights_as_source else [])}
