"""The model registry: one YAML file per model (the file name is the model name), read from the packaged
presets, then `$MMGEN_PRESETS/models/`, then the user config dir's `models/` — a later folder's entry of the
same name replaces an earlier one, so a user can point `landscape` at a mirror.

Entries are parsed strictly into `ModelEntry` (unknown keys or wrong types name the file and field) after
resolving `base:` inheritance: the base entry's fields are deep-merged under the child's, except `weights`,
which is replaced whole (a child that names other weights must not inherit the parent's checksum or bundle).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import platformdirs

from mmgen import environment
from mmgen.config import from_dict, to_dict
from mmgen.diffusion.sampling_config import SamplingConfig, load_sampling_preset, sampling_presets
from mmgen.errors import ConfigError, ModelNotFound
from mmgen.models import config_for
from mmgen.presets import preset_dir
from mmgen.stamps import FileStamp
from mmgen.weights.names import is_name, is_path  # noqa: F401 (is_path: imported from here too)
from mmgen.weights.urls import check_url
from mmgen.yaml_files import load_yaml

Arch = Literal["mm-unet", "sr-unet"]
WeightsFormat = Literal["safetensors", "pt"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_DRIVE_ID = re.compile(r"[-\w]{10,}")
_ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass(frozen=True)
class DriveFile:
    """A file by name in a public Google Drive folder: how the paper's checkpoints are published (no direct URL,
    no checksum; see mmgen.weights.drive)."""

    folder: str  # the folder's id, as in drive.google.com/drive/folders/<id>
    file: str  # the file's name in that folder, e.g. Landscape.pt

    def __post_init__(self):
        if not _DRIVE_ID.fullmatch(self.folder):
            raise ValueError(f"drive.folder must be a Google Drive folder id, got {self.folder!r}")
        if not self.file or Path(self.file).name != self.file:
            raise ValueError(f"drive.file must be a plain file name, got {self.file!r}")

    @property
    def folder_url(self) -> str:
        return f"https://drive.google.com/drive/folders/{self.folder}"


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights come from: shipped in the package, downloaded, or (neither) imported by hand."""

    urls: tuple[str, ...] = ()  # tried in order: https, file://, or http on localhost
    sha256: str | None = None  # of the file at the urls (or of the bundled file); required with urls
    format: WeightsFormat = "safetensors"  # pt: an official torch checkpoint, converted on arrival
    size: int | None = None  # bytes at the urls, when known (shown by `models list`)
    bundled: str | None = None  # file name inside mmgen/assets/
    # A file in a Google Drive folder (the paper's release): trust-on-first-use, since nothing publishes its
    # sha256 — the first good download's sha256 and size are recorded and every later one must match.
    # Registry `urls` (a mirror with a sha256) are tried instead when an entry names both.
    drive: DriveFile | None = None
    parameters: int | None = None  # the released parameter count a downloaded or imported file must have

    def __post_init__(self):
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.urls and self.sha256 is None:
            raise ValueError("sha256 is required when urls are given (downloads are always verified)")
        if self.size is not None and self.size <= 0:
            raise ValueError(f"size must be a positive number of bytes, got {self.size}")
        if self.bundled and (self.urls or self.drive):
            raise ValueError("a bundled file has no urls or drive source")
        if self.parameters is not None and self.parameters <= 0:
            raise ValueError(f"parameters must be a positive count, got {self.parameters}")
        if self.bundled is not None and Path(self.bundled).name != self.bundled:
            raise ValueError(f"bundled must be a plain file name inside mmgen/assets, got {self.bundled!r}")
        for url in self.urls:
            check_url(url)

    @property
    def bundled_path(self) -> Path | None:
        return _ASSETS / self.bundled if self.bundled else None


@dataclass(frozen=True)
class ModelEntry:
    """One registry entry (DESIGN §6). `config` is the architecture dataclass; None means the weights file
    itself carries it (an mmgen safetensors, e.g. the bundled demo or a user's fine-tune)."""

    arch: Arch
    base: str | None = None
    config: Any = None  # parsed into MMUNetConfig / SRUNetConfig by the registry
    weights: WeightsSource = field(default_factory=WeightsSource)
    upsampler: str | None = None  # registry name of an sr-unet entry
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # YAML: a mapping, or a preset's name
    description: str = ""
    license: str = ""
    source: str = ""

    @property
    def needs_import(self) -> bool:
        """No way to fetch the weights automatically: the user downloads them and runs `models import`."""
        return not self.weights.urls and not self.weights.bundled and self.weights.drive is None

    @property
    def origin(self) -> str:
        """Where to get the weights by hand, worded to follow "get ...": the entry's `source` (e.g. "Landscape.pt
        from the official MM-Diffusion README: <links>"), else a generic phrase."""
        if self.weights.drive is not None:
            return f"{self.weights.drive.file} from the Google Drive folder {self.weights.drive.folder_url}"
        return self.source or f"the {self.weights.format} file from its publisher"


class Entries(dict):
    """The registry's valid entries by name, and its broken ones: a broken entry (its file invalid, or its base's,
    or its upsampler not an sr-unet entry) is a name whose use raises its ConfigError, naming the file and field —
    `entries.get(name)`, `entries[name]` — while it is known (`name in entries`) but not listed (iterating, items(),
    len): one bad downloaded preset refuses only where it is used, and every other entry works."""

    def __init__(self, valid: dict[str, ModelEntry], broken: dict[str, ConfigError]):
        super().__init__(valid)
        self.broken = broken

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or name in self.broken

    def __getitem__(self, name: str) -> ModelEntry:
        if name in self.broken:
            raise self.broken[name].with_traceback(None)  # its traceback this use's only, not every use's
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default


@dataclass(frozen=True)
class Registry:
    """All known entries by name (a broken one raising its error where it is used: Entries), and the YAML file each
    came from."""

    entries: Entries
    files: dict[str, Path]

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def names(self) -> list[str]:
        """The valid entries' names (the broken ones: `broken`)."""
        return sorted(self.entries)

    @property
    def broken(self) -> dict[str, ConfigError]:
        """Each broken entry's name, and the error its use raises."""
        return self.entries.broken

    def get(self, name: str) -> ModelEntry:
        if name not in self.entries:
            raise unknown_model(name, self.names())
        return self.entries[name]


def unknown_model(name: str, known: list[str], what: str = "model") -> ModelNotFound:
    """No model of that name (`what`: "model or adapter" where NAME may be either, and `known` holds both kinds'
    names). A name that is a file in the current folder (`-m Landscape.pt`, a checkpoint downloaded by hand) is a
    name all the same (a bare value is the registry's): the hint says how to use the file."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if os.path.isfile(name):
        hint = (f"{name} is a file here: import it with `mmgen models import {name} --name "
                f"{close[0] if close else 'NAME'}`, then use -m {close[0] if close else 'NAME'}")
    else:
        hint = f"did you mean {' or '.join(close)}?" if close else "see `mmgen models list`"
    return ModelNotFound(f"unknown {what} {name!r}", hint=hint)


def registry_dirs() -> list[Path]:
    """Folders searched for `<name>.yaml`, lowest priority first (environment read when called)."""
    dirs = [preset_dir() / "models"]
    if (presets := environment.presets_folder()) is not None:
        dirs.append(presets / "models")
    dirs.append(Path(platformdirs.user_config_dir("mmgen")) / "models")
    return dirs


_read: tuple[tuple, Registry] | None = None  # the registry as last read, and what its files were then (_stamps)


def load_registry() -> Registry:
    """Every entry, validated; an invalid one is a ConfigError naming its file, raised where that entry is used
    (Entries), not here. Read once per process, and again only
    where its files have changed since (`_stamps`: one added, removed, replaced or edited, by this process or
    another) — parsing them takes ~17 ms, and a command asks for the registry many times. The Registry returned is
    shared: not to be changed."""
    global _read
    dirs = registry_dirs()
    stamps = _stamps(dirs)
    if _read is not None and _read[0] == stamps:
        return _read[1]
    registry = _parsed(dirs)
    _read = (stamps, registry)
    return registry


def _stamps(dirs: list[Path]) -> tuple:
    """What the registry is read from, told without reading it: each YAML file of `dirs` and of the sampling
    presets, by path, with its stamp (stamps.FileStamp: size, mtime, ctime, inode), so a file added, removed,
    replaced or edited is seen. (Like every stamp, not an edit that keeps the size within the clock tick of the
    write before it.)"""
    found = []
    for folder in (*dirs, preset_dir() / "sampling"):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            try:
                found.append((path, FileStamp.of(path)))
            except OSError:  # a link to nowhere: reading it says so
                found.append((path, None))
    return tuple(found)


def _parsed(dirs: list[Path]) -> Registry:
    """Every entry of the YAML files in `dirs` (later folders' entries replacing earlier ones), validated; an
    invalid one is kept as its error (Entries.broken), not the end of the registry."""
    raw: dict[str, Any] = {}
    files: dict[str, Path] = {}
    broken: dict[str, ConfigError] = {}
    for folder in dirs:
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            files[path.stem] = path
            raw.pop(path.stem, None)
            broken.pop(path.stem, None)
            try:
                raw[path.stem] = _read_file(path)
            except ConfigError as e:
                broken[path.stem] = e
    entries: dict[str, ModelEntry] = {}

    def resolve(name: str, seen: tuple[str, ...]) -> None:
        """`name` valid or broken, its base and upsampler first: a fault is told at the entry whose file holds
        it (a child: "its base is broken"), whatever order the files were read in."""
        if name in entries or name in broken or name in seen or name not in raw:
            return  # a cycle, or an unknown name: _merged and the upsampler check say so
        for other in (raw[name].get("base"), raw[name].get("upsampler")):
            if isinstance(other, str):
                resolve(other, (*seen, name))
        try:
            entry = _parse(_merged(name, raw, files, (), broken), files[name])
        except ConfigError as e:
            broken[name] = e
            return
        upsampler = entries.get(entry.upsampler) if entry.upsampler else None
        if entry.upsampler and (upsampler is None or upsampler.arch != "sr-unet"):
            broken[name] = ConfigError(f"{files[name]}: upsampler: {entry.upsampler!r} is not an sr-unet entry")
        else:
            entries[name] = entry

    for name in raw:
        resolve(name, ())
    return Registry(Entries(entries, broken), files)


def _read_file(path: Path) -> dict[str, Any]:
    """One registry file's fields, its `sampling:` preset expanded."""
    if not is_name(path.stem):
        raise ConfigError(f"{path}: model names use letters, digits and . _ + - only, at most 200 bytes")
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of entry fields")
    return _expand_sampling(data, path)


def _expand_sampling(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """`sampling: paper` names a preset in presets/sampling/; expanded before merging so a child can
    override single fields of an inherited preset."""
    name = data.get("sampling")
    if not isinstance(name, str):
        return data
    if name not in sampling_presets():
        raise ConfigError(
            f"{path}: sampling: unknown preset {name!r} (known: {', '.join(sampling_presets())})"
        )
    return {**data, "sampling": to_dict(load_sampling_preset(name))}


def _merged(name: str, raw: dict[str, Any], files: dict[str, Path], seen: tuple[str, ...],
            broken: dict[str, ConfigError]) -> dict[str, Any]:
    """The entry's fields with its `base` chain merged underneath (a broken base: its error, named)."""
    data = raw[name]
    base = data.get("base")
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{files[name]}: base: expected a model name, got {base!r}")
    if base in seen or base == name:
        raise ConfigError(f"{files[name]}: base: inheritance cycle {' -> '.join((*seen, name, base))}")
    if base in broken:
        raise ConfigError(f"{files[name]}: base: {base!r} is broken: {broken[base]}")
    if base not in raw:
        raise ConfigError(f"{files[name]}: base: {unknown_model(base, sorted(raw))}")
    parent = {k: v for k, v in _merged(base, raw, files, (*seen, name), broken).items() if k != "base"}
    if "weights" in data:
        parent.pop("weights", None)
    return _deep_merge(parent, data)


def _deep_merge(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(under)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _parse(data: dict[str, Any], path: Path) -> ModelEntry:
    entry = from_dict(ModelEntry, data, str(path))
    if entry.config is not None:
        if not isinstance(entry.config, dict):
            raise ConfigError(f"{path}: config: expected a mapping of {entry.arch} fields")
        entry = dataclasses.replace(entry, config=config_for(entry.arch, entry.config, f"{path}: config"))
    elif entry.weights.format == "pt":
        raise ConfigError(
            f"{path}: config: required for format pt (only an mmgen .safetensors carries its own)"
        )
    return entry
