"""A model's identity without loading or downloading it: the sha256 of the weights a name or path stands for,
so that a batch can tell whether a finished job was made by the model it would use now."""

from __future__ import annotations

from pathlib import Path

from mmgen.files import sha256_file
from mmgen.weights.cache import ModelCache
from mmgen.weights.registry import Registry, is_path


def model_sha256(name: str, registry: Registry, cache: ModelCache) -> str:
    """The file's sha256 for a path; else the one the registry names, the cache recorded, or the bundled file
    has; else "unknown:NAME" (a model that must still be imported)."""
    if is_path(name):
        return sha256_file(Path(name))
    entry = registry.entries.get(name)
    if entry is not None and entry.weights.sha256:
        return entry.weights.sha256
    record = cache.record(name)
    if record is not None:
        return record.sha256
    if entry is not None and entry.weights.bundled and entry.weights.bundled_path.is_file():
        return sha256_file(entry.weights.bundled_path)
    return f"unknown:{name}"
