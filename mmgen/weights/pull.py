"""`pull`: make a registry model's weights available locally — bundled, already cached, or fetched into the
cache (from the entry's `urls` with their sha256, else its Google Drive file on trust-on-first-use) and
converted there. Every fetch happens under the model's cache lock, so two pulls of one model fetch it once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mmgen.errors import ChecksumMismatch, ModelNotFound, UsageError, in_callers_words
from mmgen.files import kept_together, retire, sha256_file
from mmgen.weights import drive, trust
from mmgen.weights.cache import CacheRecord, ModelCache, check_cache_writable
from mmgen.weights.download import download, offline
from mmgen.weights.names import is_name
from mmgen.weights.registry import ModelEntry, Registry, load_registry, unknown_model
from mmgen.weights.urls import check_url

Availability = Literal["bundled", "bundled (missing)", "cached", "downloadable", "needs import"]


def availability(name: str, entry: ModelEntry | None, cache: ModelCache | None) -> Availability:
    """Where a model's weights stand right now, without touching the network. `cache` None: no cache folder to look
    in (doctor's, where it cannot be one: catalog's without_cache)."""
    if entry is not None and entry.weights.bundled:
        return "bundled" if entry.weights.bundled_path.is_file() else "bundled (missing)"
    if cache is not None and cached_record(cache, name, entry) is not None:
        return "cached"
    return "needs import" if entry is None or entry.needs_import else "downloadable"


def cached_record(cache: ModelCache, name: str, entry: ModelEntry | None) -> CacheRecord | None:
    """The cache record if it holds the weights the entry names (any import, for entries without a sha256)."""
    record = cache.record(name)
    if record is None or entry is None or entry.weights.sha256 in (None, record.source_sha256):
        return record
    return None


def fetch_plan(entry: ModelEntry) -> str | None:
    """What `pull` would fetch for an entry, in words (None: nothing, it is bundled or imported by hand)."""
    weights = entry.weights
    if weights.urls:
        return weights.urls[0]
    if weights.drive is not None:
        return f"{weights.drive.file} from {weights.drive.folder_url}"
    return None


def repair_hint(name: str, entry: ModelEntry | None) -> str:
    """How to replace a damaged cached model."""
    if entry is not None and not entry.needs_import:
        return f"run `mmgen models verify` to check every model, then `mmgen models pull {name}` to fetch it again"
    return f"run `mmgen models verify`, then `mmgen models import FILE --name {name} --overwrite` to replace it"


def kept_download(name: str, cache: ModelCache | None = None) -> Path | None:
    """The partial download an interrupted pull of `name` left in the cache; the next pull resumes it (an HTTP
    Range request, the rest of a file:// copy, or gdown's resume of its temporary)."""
    if not is_name(name):
        return None
    folder = (cache or ModelCache()).folder(name)
    parts = sorted(folder.glob("*.part"), key=lambda p: p.stat().st_size) if folder.is_dir() else []
    return parts[-1] if parts else None


class StoppedWaiting(KeyboardInterrupt):
    """A stop (Ctrl-C, SIGTERM, SIGHUP) that came while this pull waited for another process's lock on the model: it
    stops the command as any stop does, but what the model's folder holds (a `.part` being downloaded) is the other
    process's, not this one's to say it kept."""


@dataclass(frozen=True)
class Pulled:
    path: Path
    fetched: bool  # False: it was already there (bundled, cached, or another process just fetched it)


def pull(
    name: str,
    *,
    quiet: bool = False,
    repair: bool = False,
    url: str | None = None,
    sha256: str | None = None,
    registry: Registry | None = None,
    cache: ModelCache | None = None,
) -> Pulled:
    """Make a registry model's weights available locally, downloading and converting them if needed. A cached
    file that changed on disk raises ChecksumMismatch, or with `repair` is fetched again. `url` (with `sha256`,
    or the sha256 trusted on first use) fetches from a mirror instead of the entry's source."""
    registry, cache = registry or load_registry(), cache or ModelCache()
    entry = registry.entries.get(name)
    if entry is None:
        if cache.record(name) is not None and url is None:
            return Pulled(cache.weights_file(name), fetched=False)
        raise unknown_model(name, sorted({*registry.names(), *cache.names()}))
    if url is not None:
        entry = _mirrored(cache, name, entry, url, sha256)
    elif sha256 is not None:
        raise UsageError(f"{in_callers_words('--sha256', 'sha256')} goes with {in_callers_words('--url', 'url')} "
                         "(the file at that URL must have it)")
    if entry.weights.bundled:
        path = entry.weights.bundled_path
        if not path.is_file():
            raise ModelNotFound(
                f"{name}: the bundled weights file {path} is missing",
                hint="reinstall mmgen, or pick another model with -m NAME|FILE (see `mmgen models list`)",
            )
        return Pulled(path, fetched=False)
    if _intact(cache, name, entry, repair):
        return Pulled(cache.weights_file(name), fetched=False)
    if entry.needs_import:
        raise ModelNotFound(
            f"{name}: weights are not in the cache and cannot be downloaded automatically",
            hint=f"get {entry.origin}, then run `mmgen models import FILE --name {name}`",
        )
    urls = entry.weights.urls
    if offline() and not any(u.startswith("file:") for u in urls):
        if not urls:
            raise ModelNotFound(
                f"{name}: weights are not in the cache and MMGEN_OFFLINE=1 forbids downloading",
                hint=f"on a connected machine, {drive.by_hand(entry.weights.drive, name)}",
            )
        raise ModelNotFound(
            f"{name}: weights are not in the cache ({cache.folder(name)}) and MMGEN_OFFLINE=1 forbids downloading",
            hint=f"fetch {urls[0]} on a connected machine, then run `mmgen models import FILE --name {name}`",
        )
    check_cache_writable(cache.root)
    held = False
    try:
        with cache.lock(name):
            held = True
            if _intact(cache, name, entry, repair):  # another process finished it while we waited
                return Pulled(cache.weights_file(name), fetched=False)
            if urls:
                _from_urls(cache, name, entry, quiet)
            else:
                _from_drive(cache, name, entry, quiet)
    except KeyboardInterrupt:
        if held:
            raise
        raise StoppedWaiting from None
    return Pulled(cache.weights_path(name), fetched=True)


def _intact(cache: ModelCache, name: str, entry: ModelEntry, repair: bool) -> bool:
    """Cached, and its weights file still holds the recorded bytes; a damaged one raises, or with `repair`
    counts as not cached (it is fetched again)."""
    record = cached_record(cache, name, entry)
    if record is None:
        return False
    try:
        cache.checked(name, record, repair_hint(name, entry))
    except ChecksumMismatch:
        if not repair:
            raise
        return False
    return True


def _install(cache: ModelCache, name: str, part: Path, entry: ModelEntry, source: str, source_sha256: str) -> None:
    """Convert a checked download and cache it (mmgen.weights.convert, which imports torch: loaded by a pull only,
    never by `models list`)."""
    from mmgen.weights.architecture import Target
    from mmgen.weights.convert import install

    target = Target(entry.arch, entry.config, entry.weights.parameters) if entry.config is not None else None
    install(cache, name, part, target, source=source, source_sha256=source_sha256)


def _from_urls(cache: ModelCache, name: str, entry: ModelEntry, quiet: bool) -> None:
    sha256 = entry.weights.sha256
    part = download(entry.weights.urls, cache.part_path(name, sha256), sha256, label=name, size=entry.weights.size,
                    quiet=quiet)
    with _refused_deleted(part, f"{name} ({entry.weights.urls[0]})"), kept_together():
        # a stop keeps the model (the download gone) or the download (nothing cached)
        _install(cache, name, part, entry, source=entry.weights.urls[0], source_sha256=sha256)
        retire(part)


def _from_drive(cache: ModelCache, name: str, entry: ModelEntry, quiet: bool) -> None:
    """Download the Drive file, then check it — trusted sha256 and size if one was recorded, `weights_only`
    loading, the architecture — before anything is cached. A file that fails any check is deleted."""
    source = entry.weights.drive
    part = cache.folder(name) / f"{source.file}.part"
    if not part.is_file():
        known = trust.trusted(cache.root, name)  # the first file's size: a file that sends more is not it
        drive.fetch(source, part, name=name, quiet=quiet, size=known.size if known is not None else None)
    with _refused_deleted(part, f"{name} ({source.file} from Google Drive)"):
        sha256, size = sha256_file(part), part.stat().st_size
        trust.check_trusted(cache.root, name, sha256, size, f"the {source.file} Google Drive serves now")
        with kept_together():  # a stop keeps the model and its trust (the download gone), or the download alone
            _install(cache, name, part, entry, source=source.folder_url, source_sha256=sha256)
            trust.trust(cache.root, name, source.file, sha256, size, source.folder_url)
            retire(part)


@contextmanager
def _refused_deleted(part: Path, shown: str) -> Iterator[None]:
    """Checking and installing a whole download: a file refused (UsageError: not a checkpoint, not the
    architecture, not the file first trusted) is deleted — a `.part` is kept only for resuming a dropped
    connection, and this one is complete — and the refusal names `shown`, what was asked for, not the `.part`.
    A failure that is not the file's (a full disk, exit 1) keeps it for the next pull."""
    try:
        yield
    except UsageError as e:
        part.unlink(missing_ok=True)
        e.message = e.message.replace(str(part), shown)
        e.args = (e.message,)
        raise


def _mirrored(cache: ModelCache, name: str, entry: ModelEntry, url: str, sha256: str | None) -> ModelEntry:
    """The entry with its weights at `url`: checked against `sha256`, else the registry's, else the sha256 trusted
    on first use."""
    try:
        check_url(url)
    except ValueError as e:
        raise UsageError(f"{in_callers_words('--url', 'url')}: {e}") from None
    if entry.weights.bundled:
        raise UsageError(f"{name!r} is bundled with mmgen; {in_callers_words('--url', 'url')} does not apply")
    known = trust.trusted(cache.root, name)
    sha256 = sha256 or entry.weights.sha256 or (known.sha256 if known else None)
    if sha256 is None:
        raise UsageError(
            f"{in_callers_words('--url', 'url')} needs {in_callers_words('--sha256', 'sha256')} for {name!r}: "
            "no sha256 is registered or was recorded on first use",
            hint="ask whoever hosts the mirror for the file's sha256",
        )
    sha256 = sha256.lower()
    # The registry's size is its file's, the trusted size the first file's: with either, no more is taken.
    size = entry.weights.size if sha256 == entry.weights.sha256 else None
    if size is None and known is not None and known.sha256 == sha256:
        size = known.size
    try:
        weights = dataclasses.replace(entry.weights, urls=(url,), sha256=sha256, size=size, drive=None)
    except ValueError as e:
        raise UsageError(f"{in_callers_words('--sha256', 'sha256')}: {e}") from None
    return dataclasses.replace(entry, weights=weights)


def stored_files(*names: str | None) -> list[Path]:
    """The files these model names are read from while they are here — a bundled weights file, or a cached model's
    weights and record as last kept (even half imported; while a replacement is in flight or was killed, the pair it
    kept aside: ModelCache.kept_files). Nothing is fetched or checked; a name that is not here (or None) adds
    nothing."""
    registry, cache, found = load_registry(), ModelCache(), []
    for name in filter(None, names):
        if is_name(name):
            entry = registry.entries.get(name)
            if entry is not None and entry.weights.bundled:
                found.append(entry.weights.bundled_path)
            else:
                kept = cache.kept_files(name)
                found += [kept[1], kept[0]] if kept is not None else [cache.weights_path(name)]
    return [path for path in found if path.is_file()]
