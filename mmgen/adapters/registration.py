"""Registering an adapter: `mmgen models import RUN/adapter.safetensors --name my-style` verifies the file and keeps a
copy in the adapter store (adapters.store), and `--merge` caches its base with it merged in as a plain model. A name
is a model's or an adapter's, never both: `models info/rm NAME` must know which one is meant."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from mmgen.adapters.store import FILE, RECORD, AdapterRecord, folder_of, locked, registered_file
from mmgen.errors import OutputExists, UsageError, in_callers_words
from mmgen.files import atomic_path, copy_into, kept_together, retire, write_text
from mmgen.weights.cache import ModelCache, cache_root, check_cache_writable, unless_kind_damaged
from mmgen.weights.names import check_name
from mmgen.weights.registry import load_registry


def register(file: str | Path, name: str, overwrite: bool = False) -> AdapterRecord:
    """Verify `file` as an adapter and keep a copy of it under `name`."""
    check_name(name, "adapter")
    _check_not_a_model(name)
    folder = folder_of(name)
    check_cache_writable(cache_root())
    check_cache_writable(folder)  # a read-only adapters/ in a writable cache
    from mmgen.adapters.file import read_adapter

    adapter = read_adapter(file)
    _check_fits_its_base(adapter)
    with locked(name):  # as a model's: one registration (or removal) of NAME at a time
        if (folder / RECORD).is_file() and not overwrite:
            raise OutputExists(f"adapter {name!r} is already registered")
        with kept_together():  # the file and its record: all new, or all as they were (a stop cannot split them)
            retire(folder / RECORD)  # first: a kill -9 leaves no old record beside a new file
            with atomic_path(folder / FILE) as tmp:
                copy_into(adapter.read_from or adapter.path, tmp)  # the file read, as last kept
            record = AdapterRecord(
                name, adapter.base.name, adapter.base.sha256, adapter.spec.rank, adapter.spec.alpha,
                adapter.spec.targets, adapter.sha256, (folder / FILE).stat().st_size, str(Path(file).resolve()),
                datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )  # fmt: skip
            write_text(folder / RECORD, json.dumps(asdict(record), indent=1) + "\n")
    return record


def _check_fits_its_base(adapter) -> None:
    """Refuse an adapter whose layers do not fit the architecture its metadata names, checked on a model built on
    the meta device from its base's config (no memory, no weights needed), as a run checks them on the model."""
    from mmgen.adapters.apply import check_fits
    from mmgen.models import build_model
    from mmgen.models.config import config_for

    base = adapter.base
    config = config_for(base.arch, base.config, f"adapter {adapter.path}: metadata 'base_config'")
    check_fits(adapter, build_model(base.arch, config, device="meta"), base.name, base)


def _check_not_a_model(name: str) -> None:
    if name in load_registry():
        where, hint = "a model in the registry", f"register the adapter under another {_name_words()}"
    elif unless_kind_damaged(cache_root(), "models", lambda: ModelCache().record(name), None) is not None:
        where = "a cached model"
        hint = f"use another {_name_words()}, or remove the model first: mmgen models rm {name}"
    else:
        return
    raise UsageError(f"{name!r} is already the name of {where}; an adapter needs a name of its own", hint=hint)


def check_not_an_adapter(name: str, cache_dir: Path | None = None) -> None:
    """UsageError unless a model may take `name`: it is not a registered adapter's (in cache folder `cache_dir`; a
    damaged adapters/ holds none that can be read)."""
    root = cache_dir or cache_root()
    if unless_kind_damaged(root, "adapters", lambda: registered_file(name, cache_dir), None) is not None:
        raise UsageError(
            f"{name!r} is already the name of a registered adapter; a model needs a name of its own",
            hint=f"import it under another {_name_words()}, or remove the adapter first: "
            f"mmgen models rm {name} --adapter",
        )


def _name_words() -> str:
    """What names the entry an import makes, in its caller's words: `--name`, or the Python argument `name=`
    (register, import_merged, weights.import_weights)."""
    return in_callers_words("--name", "name=")


def import_merged(file: str | Path, name: str, overwrite: bool = False):
    """`models import ADAPTER --name NAME --merge`: the adapter's base with the adapter merged in, cached as
    the plain model NAME (one file, no --adapter needed)."""
    import tempfile

    from mmgen.adapters.apply import check_fits, merge_adapters
    from mmgen.adapters.file import BaseModel, read_adapter
    from mmgen.weights import import_weights, load_model, save_model
    from mmgen.weights.cache import MERGED_FROM
    from mmgen.weights.convert import check_model_name
    from mmgen.weights.lineage import own_lineage

    check_cache_writable(cache_root())
    check_model_name(name, cache_root())  # before the base loads (the paper's: seconds), as import_weights will
    adapter = read_adapter(file)
    base = load_model(adapter.base.name)
    check_fits(adapter, base.model, adapter.base.name, BaseModel.of(base))
    merge_adapters(base.model, [(adapter, 1.0)])
    cache_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_root(), prefix=".merge-") as tmp:
        merged = Path(tmp) / f"{name}.safetensors"
        metadata = {"source": "mmgen models import --merge", "base": adapter.base.name,
                    "base_sha256": adapter.base.sha256, "merged_adapter_sha256": adapter.sha256,
                    **own_lineage(adapter.base.name).metadata()}
        save_model(merged, base.model, base.arch, base.config, metadata)
        origin = f"{MERGED_FROM}{Path(file).resolve()} and its base {adapter.base.name}"
        return import_weights(merged, name, overwrite=overwrite, source=origin)
