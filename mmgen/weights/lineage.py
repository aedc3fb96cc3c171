"""What a model passes on to the models made from it: its sampling settings and its upsampler.

A registry entry states them (presets/models/*.yaml: `sampling`, `upsampler`). A weights file made from a model —
a fine-tune and its checkpoints, an adapter merged into its base — carries them in its metadata ("sampling", as
JSON; "upsampler", a model name), and importing such a file into the cache copies them into its cache record.
So the demo fine-tuned on a user's clips still samples the way the demo must (from t = 650 and its data's mean,
audio kept at zero mean) rather than with the default preset, and `landscape` fine-tuned on a user's clips is
still upscaled by `landscape-sr`. A file that holds a registered model's weights — a copy of its file, or the cached
file converted from it — takes that model's own lineage when imported under a new name, or given by path (`weights_lineage`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mmgen.config import from_dict, parse_json, to_dict
from mmgen.diffusion.sampling_config import SamplingConfig
from mmgen.errors import ConfigError
from mmgen.weights import sidecar
from mmgen.weights.architecture import read_header
from mmgen.weights.cache import ModelCache
from mmgen.weights.registry import is_path, load_registry

SAMPLING, UPSAMPLER = "sampling", "upsampler"  # metadata keys


@dataclass(frozen=True)
class Lineage:
    sampling: SamplingConfig | None = None  # None: the default preset
    upsampler: str | None = None  # registry name of the SR model that upscales its video; None: none

    def metadata(self) -> dict[str, str]:
        """The metadata entries of a weights file made from a model with this lineage."""
        entries = {UPSAMPLER: self.upsampler} if self.upsampler is not None else {}
        if self.sampling is not None:
            entries[SAMPLING] = json.dumps(to_dict(self.sampling))
        return entries


def file_lineage(path: Path) -> Lineage:
    """What an mmgen weights file's metadata carries (nothing, for a file without it)."""
    header = read_header(path)
    metadata = header.metadata if header is not None else {}
    return Lineage(_sampling(metadata.get(SAMPLING), f"{path}: metadata {SAMPLING}"), metadata.get(UPSAMPLER))


def registered_copy(sha256s: set[str], name: str | None = None) -> tuple[str, Lineage] | None:
    """The registered model other than `name` whose weights file has one of `sha256s` (the file's own, and the one
    it was converted from), with that entry's lineage; None if there is none. A renamed copy of the demo then
    samples as the demo does, not with the default preset. A registered model's file is the one its entry names
    (the bundled file, a download's) and, once it is cached, the cached file and the file it came from (a model
    trusted on first use has no sha256 in its entry)."""
    cache = ModelCache()
    for other, entry in load_registry().entries.items():
        if other == name:
            continue
        known = {entry.weights.sha256}
        if not entry.weights.bundled:
            try:
                record = cache.record(other)
            except (ConfigError, OSError):  # a damaged record names nothing; `models list` says what to do
                record = None
            if record is not None:
                known |= {record.sha256, record.source_sha256}
        if known & sha256s:
            return other, Lineage(entry.sampling, entry.upsampler)
    return None


def weights_lineage(file: Path, sha256: str, name: str | None = None) -> tuple[Lineage, str | None]:
    """What the weights file `file` (of `sha256`) passes on, and the registered model it is a copy of (None: none):
    that model's lineage when it holds a registered model's weights — its own sha256 or, for an mmgen file, the one
    it was converted from (its metadata's source_sha256) — else what its metadata carries. `models import` and a
    model given by path (`-m copy.safetensors`) take it alike; `name` is the name it is imported under."""
    header = read_header(file)
    converted_from = header.metadata.get("source_sha256") if header is not None else None
    copy_of = registered_copy({sha256, converted_from} - {None}, name)
    if copy_of is not None:
        return copy_of[1], copy_of[0]
    return (file_lineage(file) if header is not None else Lineage()), None


def own_lineage(name_or_path: str | Path) -> Lineage:
    """A model's own: its registry entry's, else its weights file's (a path: `weights_lineage`, so a copy of a
    registered model's file samples as that model) or its cache record's (a model imported without a registry
    entry)."""
    cache = ModelCache()
    if is_path(name_or_path):
        path = sidecar.kept_files(Path(name_or_path))[0]  # the file load_model reads for it
        return weights_lineage(path, cache.file_sha256(path))[0]  # hashed once while its stamp holds
    name = str(name_or_path)
    entry = load_registry().entries.get(name)
    if entry is not None:
        return Lineage(entry.sampling, entry.upsampler)
    record = cache.record(name)  # the import's record, not the file: that is checked only as it loads
    if record is None:
        return Lineage()
    where = f"{cache.record_path(name)}: sampling"
    sampling = from_dict(SamplingConfig, record.sampling, where) if record.sampling is not None else None
    return Lineage(sampling, record.upsampler)


def _sampling(text: str | None, where: str) -> SamplingConfig | None:
    if text is None:
        return None
    data = parse_json(text, where, "sampling settings")
    return from_dict(SamplingConfig, data, where)
