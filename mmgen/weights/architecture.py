"""What architecture a model is, read without loading its weights or torch (seconds to import), so that a setting
judged against it — finetune's batch against this machine's memory (train.run_checks) — is refused before torch
loads: an mmgen safetensors' own metadata (read_header), the sidecar json beside a file, a cache record, a registry
entry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgen.config import MAX_RECORD_BYTES, parse_json, read_small_file
from mmgen.disk_failures import reading
from mmgen.errors import ConfigError
from mmgen.models import config_for
from mmgen.weights import sidecar
from mmgen.weights.cache import ModelCache
from mmgen.weights.registry import ModelEntry, is_path, load_registry
from mmgen.weights.safetensors_open import open_safetensors

FORMAT_TAG = "mmgen"  # metadata["format"] of files written by save_model


def is_safetensors(path: Path) -> bool:
    """By content — an 8-byte little-endian header length, then a JSON object — or by a `.safetensors` name.
    A file cut short inside its header, one whose header length is absurd, or garbage named .safetensors (which
    torch.load would hand to the library anyway) still counts, so that reading it says it is damaged."""
    if path.suffix.lower() == ".safetensors":
        return True
    head = first_bytes(path, 9)
    return len(head) == 9 and head[8:9] == b"{"


def first_bytes(path: Path, count: int) -> bytes:
    with reading(path), open(path, "rb") as f:  # a failing disk: the machine's trouble (exit 1), not the file's
        return f.read(count)


@dataclass(frozen=True)
class Header:
    """What an mmgen safetensors says about itself."""

    arch: str
    config: dict[str, Any]  # architecture dataclass fields
    metadata: dict[str, str]  # everything in the file's metadata (mmgen_version, source, ...)


def read_header(path: Path) -> Header | None:
    """The architecture and config stored in an mmgen safetensors; None for any other file."""
    if not is_safetensors(path):
        return None
    with open_safetensors(path, "numpy") as f:  # (the library's checks of its header; no torch)
        metadata = f.metadata() or {}
    if metadata.get("format") != FORMAT_TAG or "arch" not in metadata or "config" not in metadata:
        return None
    config = parse_json(metadata["config"], str(path), "weights file: its metadata 'config'",
                        hint="get the file again")
    return Header(metadata["arch"], config, metadata)


@dataclass(frozen=True)
class Target:
    """What a checkpoint is checked against: an architecture and its config dataclass."""

    arch: str
    config: Any
    parameters: int | None = None  # the released count, when the registry names one


def known_config(name_or_path: str | Path) -> Any | None:
    """A model's architecture config without loading or fetching it: from a file's own metadata (a path, or a
    bundled file), a cached model's record, or its registry entry; None when only weights that are not here
    would say (a registry model not pulled yet whose entry states no config, or no such model)."""
    if is_path(name_or_path):
        path, json_file = sidecar.kept_files(Path(name_or_path))
        return describe(path, None, json_file).config if path.is_file() else None
    name = str(name_or_path)
    entry, cache = load_registry().entries.get(name), ModelCache()
    record = cache.record(name)
    if record is not None:
        return config_for(record.arch, record.config, f"{cache.record_path(name)}: config")
    if entry is not None and entry.config is not None:
        return entry.config
    if entry is not None and entry.weights.bundled and entry.weights.bundled_path.is_file():
        return describe(entry.weights.bundled_path, entry).config
    return None


def describe(path: Path, entry: ModelEntry | None, json_file: Path | None = None) -> Target:
    """The architecture of a weights file: its own metadata first, then its sidecar json (`json_file`, else the one
    beside it), then the entry."""
    header = read_header(path)
    if header is not None:
        return Target(header.arch, config_for(header.arch, header.config, f"{path}: metadata config"))
    json_file = json_file or sidecar.json_of(path)
    if json_file.is_file():
        try:
            data = parse_json(read_small_file(json_file, MAX_RECORD_BYTES), str(json_file), "sidecar")
        except OSError as e:
            raise ConfigError(f"{json_file}: cannot read ({e.strerror or e})") from None
        # Lenient on purpose: a run folder's json may carry more than the architecture.
        if not isinstance(data, dict) or not isinstance(data.get("arch"), str):
            raise ConfigError(f"{json_file}: arch: required (mm-unet or sr-unet)")
        config = config_for(data["arch"], data.get("config") or {}, f"{json_file}: config")
        return Target(data["arch"], config)
    if entry is not None and entry.config is not None:
        return Target(entry.arch, entry.config)
    raise ConfigError(f"{path}: no architecture config in its metadata and no sidecar {json_file.name}",
                      hint=f"to use a checkpoint mmgen did not write, such as an official .pt, import it: `mmgen "
                      f"models import {path} --name NAME`, adding --arch mm-unet or sr-unet for a model the registry "
                      "does not know; then give NAME")
