"""The sampling settings a model carries with it.

A registry entry states them (presets/models/*.yaml). A weights file made from a model — a fine-tune, an adapter
merged into its base — carries the settings of the model it came from in its metadata (key "sampling", JSON),
and importing such a file into the cache copies them into its cache record. So the demo fine-tuned on a user's
clips still samples the way the demo must (from t = 650 and its data's mean, audio kept at zero mean) rather
than with the default preset.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmgen.config import from_dict, to_dict
from mmgen.diffusion.sampling_config import SamplingConfig
from mmgen.errors import ConfigError
from mmgen.weights.cache import ModelCache
from mmgen.weights.checkpoint import read_header
from mmgen.weights.registry import load_registry

METADATA_KEY = "sampling"


def sampling_metadata(sampling: SamplingConfig | None) -> dict[str, str]:
    """The metadata entry a weights file made from a model with `sampling` carries (none for None)."""
    return {} if sampling is None else {METADATA_KEY: json.dumps(to_dict(sampling))}


def file_sampling(path: Path) -> SamplingConfig | None:
    """The settings written into an mmgen weights file's metadata; None for a file without them."""
    header = read_header(path)
    text = header.metadata.get(METADATA_KEY) if header is not None else None
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(f"{path}: its metadata '{METADATA_KEY}' is not valid JSON") from None
    return from_dict(SamplingConfig, data, f"{path}: metadata {METADATA_KEY}")


def own_sampling(name_or_path: str | Path) -> SamplingConfig | None:
    """A model's own settings: its registry entry's, else its weights file's (a path) or its cache record's (a
    model imported without a registry entry); None when it has none."""
    from mmgen.weights.load import is_path  # here: load imports convert, which imports this module

    if is_path(name_or_path):
        return file_sampling(Path(name_or_path))
    name = str(name_or_path)
    entry = load_registry().entries.get(name)
    if entry is not None:
        return entry.sampling
    cache = ModelCache()
    record = cache.record(name)  # the import's record, not the file: that is checked only as it loads
    if record is None or record.sampling is None:
        return None
    return from_dict(SamplingConfig, record.sampling, f"{cache.record_path(name)}: sampling")
