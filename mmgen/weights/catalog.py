"""What `mmgen models list/verify/info` and `mmgen doctor` report: every model the registry or the cache knows,
its status, size, recorded sha256, what `pull` would fetch, and whether its files still hash to what was
recorded."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mmgen.config import to_dict
from mmgen.errors import MmgenError, ModelNotFound, StorageError
from mmgen.files import sha256_file
from mmgen.kept_states import looked_again
from mmgen.weights import trust
from mmgen.weights.cache import MERGED_FROM, CacheRecord, ModelCache, damaged_folder
from mmgen.weights.names import check_name
from mmgen.weights.pull import availability, fetch_plan
from mmgen.weights.registry import ModelEntry, load_registry, unknown_model


@dataclass(frozen=True)
class Row:
    name: str
    arch: str
    status: str
    size: int | None  # bytes: the local file, else the registry's size, else an fp32 estimate
    size_estimated: bool
    description: str
    upsampler: str | None
    sha256: str | None  # of the weights file mmgen loads (bundled or cached): what verify, sidecars, adapters name
    fetch: str | None  # what `pull` would download (None: nothing to download)
    source_sha256: str | None = None  # of the file it is (or would be) converted from, where that is another
    # file: imported, downloaded, registered, or trusted on first use

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "model", **asdict(self)}  # beside `models list`'s adapters (kind "adapter")


def catalog(*, without_cache: bool = False) -> list[Row]:
    """A row per model the registry or the cache knows; a model whose cache record cannot be read, or whose registry
    entry is invalid, is a row saying so (status "damaged", with what to do), not the end of the listing.
    `without_cache`: the registry's models alone, with what is known without the cache folder (doctor's, where that
    folder cannot be one — a file on its way, said once, under its Cache): none cached, the bundled ones bundled."""
    registry, cache = load_registry(), None if without_cache else ModelCache()
    rows = []
    if cache is not None and (damaged := damaged_folder(cache.root, "models")) is not None:  # models/ a link: one
        rows.append(Row("models/", "?", DAMAGED, None, False, str(damaged), None, None, None))  # row, whatever it holds
    for name in sorted({*registry.names(), *registry.broken, *(cache.names() if cache is not None else ())}):
        entry = None
        try:  # a broken registry entry (an invalid file): a row saying why, as a damaged record is
            entry = registry.entries.get(name)
            rows.append(_row(name, entry, cache))
        except MmgenError as e:
            rows.append(Row(name, entry.arch if entry is not None else "?", DAMAGED, None, False, str(e),
                            None, None, None))
    return rows


DAMAGED = "damaged"  # the status of a model whose cache record cannot be read, or whose registry entry is invalid
CACHED = "cached"  # the status of a model (or registered adapter) whose weights are in the cache
MISSING = "missing"  # verify's verdict on a file recorded in the cache but not there, and a registered adapter's status


def _row(name: str, entry: ModelEntry | None, cache: ModelCache | None) -> Row:
    """`cache`: None where there is none to look in (catalog's without_cache): `entry` is the registry's then."""
    bundled = entry is not None and entry.weights.bundled
    record = None if bundled or cache is None else cache.record(name)  # a bundled one's: never the cache's
    status = availability(name, entry, cache)
    size, estimated = None, False
    if status == "cached":
        size = record.size
    elif status == "bundled":
        size = entry.weights.bundled_path.stat().st_size
    elif entry.weights.size is not None:
        size = entry.weights.size
    elif entry.weights.parameters is not None:  # the released count (the official entries): no model to build
        size, estimated = 4 * entry.weights.parameters, True
    elif entry.config is not None:
        size, estimated = _fp32_bytes(entry.arch, entry.config), True
    trusted = trust.trusted(cache.root, name) if cache is not None else None
    sha256 = record.sha256 if status == "cached" else _bundled_sha256(entry) if status == "bundled" else None
    source = (
        (record.source_sha256 if record is not None else None)
        or (entry.weights.sha256 if entry is not None else None)
        or (trusted.sha256 if trusted is not None else None)
    )
    source = source if source != sha256 else None
    if entry is None:
        return Row(name, record.arch, status, size, estimated, _origin(record), record.upsampler, sha256, None, source)
    return Row(name, entry.arch, status, size, estimated, entry.description, entry.upsampler, sha256,
               None if status in ("bundled", "cached") else fetch_plan(entry), source)


def _bundled_sha256(entry: ModelEntry) -> str:
    return entry.weights.sha256 or sha256_file(entry.weights.bundled_path)


@functools.cache
def _fp32_bytes(arch: str, config: Any) -> int:
    """Size the weights will have as fp32 safetensors (parameters × 4; the header is negligible), counted on a model
    built on the meta device (importing torch: only for an entry that does not say its parameter count)."""
    from mmgen.models import build_model

    return 4 * sum(p.numel() for p in build_model(arch, config, device="meta").parameters())


@dataclass(frozen=True)
class Verdict:
    name: str
    path: str
    ok: bool
    verdict: str  # "ok", "ok (no sha256 registered)", "missing", or "corrupt: expected ..., got ..."
    expected: str | None
    actual: str | None
    kind: str = "model"  # or "adapter" (mmgen.adapters.store)
    mend: str | None = None  # a damaged one's: how to mend it (its error's hint); else pulled or imported again

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "mend"}  # the verdict says it too


def verify_models(name: str | None = None) -> list[Verdict]:
    """Re-hash the cached models (and bundled files) — one, or all of them."""
    registry, cache = load_registry(), ModelCache()
    bundled = {n: e.weights for n, e in registry.entries.items() if e.weights.bundled}
    if name is not None and name not in bundled:
        check_name(name, "model")
        if (linked := damaged_folder(cache.root, "models")) is not None:
            raise linked  # no name in a linked models/ is read: it says so, as `models info NAME` does
    broken = registry.broken  # an invalid registry entry (a preset file): a damaged verdict, as `models list` says
    if name is None:
        names = sorted({*cache.names(), *(n for n, w in bundled.items() if w.bundled_path.is_file()), *broken})
    elif name in bundled or name in cache.names() or name in broken:  # a damaged one too: its verdict
        names = [name]
    elif name in registry:
        raise ModelNotFound(
            f"{name}: not in the cache, nothing to verify", hint=f"run `mmgen models pull {name}`"
        )
    else:
        raise unknown_model(name, sorted({*registry.names(), *cache.names()}))
    damaged = damaged_folder(cache.root, "models") if name is None else None  # models/ a link: one verdict
    verdicts = [] if damaged is None else [damaged_verdict("models/", str(damaged), damaged.link, damaged.hint)]
    for n in names:
        if n in broken:
            error, where = broken[n], registry.files.get(n, Path(n))
            verdicts.append(damaged_verdict(n, str(error), where, error.hint or f"correct or remove {where}"))
            continue
        if n in bundled:
            verdicts.append(check_file(n, bundled[n].bundled_path, bundled[n].sha256))
            continue
        try:  # the record and file looked at together, once more where they are not alike: a replacement (models
            # import --overwrite) between the reads is no damage (kept_states.looked_again, as adapters' are)
            record, verdict = looked_again(functools.partial(_looked_at, cache, n), lambda found: found[1].ok)
        except StorageError:  # the machine's trouble (a failing disk, no permission): no verdict on the record
            raise
        except MmgenError as e:  # said as this model's verdict; the others are still checked
            where = cache.root / "models" / n / "model.json"  # a path only: its folder may be what is damaged
            verdicts.append(damaged_verdict(n, str(e), where, e.hint))
            continue
        if verdict.ok and record is not None:  # hashed just now: the next load need not hash it again (a read-only
            cache.restamped(n, record)  # cache: it will)
        verdicts.append(verdict)
    return verdicts


def _looked_at(cache: ModelCache, name: str) -> tuple[CacheRecord | None, Verdict]:
    """A cached model's record and the verdict on its file against it (no record: its weights file "missing")."""
    record = cache.record(name)
    if record is None:
        return None, check_file(name, cache.weights_path(name), None)
    return record, check_file(name, cache.weights_file(name), record.sha256)


def damaged_verdict(name: str, said: str, where: Path, mend: str | None, kind: str = "model") -> Verdict:
    """The verdict on a model or adapter whose record or folder cannot be read, `said` being that error's line
    ("PATH: damaged: what (hint)"), said once: the path it names is the verdict's path (else `where`) and the rest
    follows one `damaged: `, not the verdict's own name, path and word again."""
    path, what = str(where), said
    for colon in re.finditer(": ", said):  # the first prefix that is a path there: a path may hold ": " too
        if os.path.isabs(named := said[:colon.start()]) and os.path.lexists(named):
            path, what = named, said[colon.end():]
            break
    what = what.removeprefix(f"{DAMAGED}: ").removeprefix(f"{DAMAGED} ")
    return Verdict(name, path, False, f"{DAMAGED}: {what}", None, None, kind, mend)


def check_file(name: str, path: Path, expected: str | None, kind: str = "model", actual: str | None = None) -> Verdict:
    """Re-hash one weights file against the sha256 recorded for it (`actual`: hashed already)."""
    if actual is None and not path.is_file():
        return Verdict(name, str(path), False, MISSING, expected, None, kind)
    actual = actual or sha256_file(path)
    if expected is None:
        return Verdict(name, str(path), True, "ok (no sha256 registered)", None, actual, kind)
    if actual != expected:
        return Verdict(
            name, str(path), False, f"corrupt: expected {expected}, got {actual}", expected, actual, kind
        )
    return Verdict(name, str(path), True, "ok", expected, actual, kind)


def describe(name: str) -> dict[str, Any]:
    """Registry entry, cache record and status of one model, as plain data."""
    registry, cache = load_registry(), ModelCache()
    entry = registry.entries.get(name)
    record = None if entry is not None and entry.weights.bundled else cache.record(name)  # never the cache's
    if entry is None and record is None:
        raise unknown_model(name, sorted({*registry.names(), *cache.names()}))
    row = _row(name, entry, cache)
    details: dict[str, Any] = {"kind": "model", "name": name, "status": row.status, "sha256": row.sha256,
                               **({"source_sha256": row.source_sha256} if row.source_sha256 else {})}
    if entry is not None:
        details.update(to_dict(entry))  # config: None where the weights file's own metadata holds it
        if details["weights"].get("size") is None and row.size is not None and not row.size_estimated:
            details["weights"]["size"] = row.size  # the file's, as `models list` shows it (a bundled one's)
        details["registry_file"] = str(registry.files[name])
    if entry is not None and entry.needs_import and record is None:
        details["how_to_get"] = (
            f"by hand (no download URL or sha256 is registered): get {entry.origin}, "
            f"then run `mmgen models import FILE --name {name}`"
        )
    elif entry is not None and record is None and fetch_plan(entry):
        details["pull_fetches"] = fetch_plan(entry)
    trusted = trust.trusted(cache.root, name) if cache is not None else None
    if trusted is not None:
        details["trusted_on_first_use"] = to_dict(trusted)
    if record is not None:
        details["cached"] = to_dict(record)
        details["path"] = str(cache.weights_file(name))
    elif entry is not None and entry.weights.bundled:
        details["path"] = str(entry.weights.bundled_path)
    return details



def _origin(record: CacheRecord) -> str:
    """Where a cached model without a registry entry came from, for `models list`."""
    return record.source if record.source.startswith(MERGED_FROM) else f"imported from {record.source}"
