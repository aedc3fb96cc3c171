"""Turning a weights file (an official torch checkpoint or a safetensors) into a cached mmgen model: check
every key and shape against the architecture, then write a self-describing safetensors into the cache.
This is both the end of `models pull` and the whole of `models import`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from mmgen import __version__
from mmgen.config import to_dict
from mmgen.disk_failures import reading
from mmgen.errors import ChecksumMismatch, OutputExists, UsageError, WeightsMismatch, in_callers_words
from mmgen.files import kept_together, retire, sha256_file
from mmgen.input_files import why_not_a_file
from mmgen.models import build_model, config_for
from mmgen.output_checks import same_file
from mmgen.weights import sidecar, trust
from mmgen.weights.architecture import Target, is_safetensors, read_header
from mmgen.weights.cache import CacheRecord, FileStamp, ModelCache, check_cache_writable
from mmgen.weights.checkpoint import check_weight, read_state_dict, save_model
from mmgen.weights.lineage import weights_lineage
from mmgen.weights.registry import ModelEntry, load_registry

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
_LISTED = 8  # keys named per kind of mismatch before "... and N more"


def expected_shapes(arch: str, config: Any) -> dict[str, torch.Size]:
    """Key → shape of the architecture's state dict, without allocating it (meta device)."""
    return {k: v.shape for k, v in build_model(arch, config, device="meta").state_dict().items()}


def check_state_dict(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size], where: str
) -> None:
    """Raise WeightsMismatch listing missing, unexpected and mis-shaped keys (a few of each, then a count)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {list(state[k].shape)} (expected {list(expected[k])})"
        for k in expected
        if k in state and state[k].shape != expected[k]
    ]
    problems = [
        _listing(label, keys)
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched))
        if keys
    ]
    if problems:
        raise WeightsMismatch(
            f"{where} does not fit the architecture: {'; '.join(problems)}",
            hint="check --arch/--config (or the registry entry's config) against the checkpoint",
        )


def _listing(label: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED])
    more = f", ... and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    return f"{len(keys)} {label}: {shown}{more}"


def install(
    cache: ModelCache,
    name: str,
    file: Path,
    target: Target | None,
    *,
    source: str,
    source_sha256: str,
    dtype: torch.dtype = torch.float32,
) -> CacheRecord:
    """Validate `file` against `target` (None: the file's own mmgen metadata) and commit it to the cache
    as `name`. The caller holds the cache lock for `name`."""
    state = read_state_dict(file)
    header = read_header(file)
    if header is not None:
        own = Target(header.arch, config_for(header.arch, header.config, f"{file}: metadata config"))
        if target is not None and (own.arch, own.config) != (target.arch, target.config):
            raise WeightsMismatch(
                f"{file} is an mmgen {own.arch} file whose config differs from the one asked for",
                hint=f"import it under a new name without {_arch_and_config()}; its metadata says what it is",
            )
        target = Target(own.arch, own.config, target.parameters if target is not None else None)
    if target is None:
        raise UsageError(f"{file}: no architecture config for {name!r}",
                         hint="pass " + in_callers_words("--arch and --config FILE.yaml", "arch= and config="))
    check_state_dict(state, expected_shapes(target.arch, target.config), str(file))
    state = {key: check_weight(file, key, tensor) for key, tensor in state.items()}
    count = sum(t.numel() for t in state.values())
    if target.parameters is not None and count != target.parameters:
        raise WeightsMismatch(
            f"{file} holds {count:,} parameters, not the {target.parameters:,} of the released {name!r}",
            hint="import it under another name with "
            + in_callers_words(f"--arch {target.arch} --config FILE.yaml", f"arch={target.arch!r} and its config="),
        )
    folder = cache.folder(name)
    folder.mkdir(parents=True, exist_ok=True)
    weights = cache.weights_path(name)
    # A file made by mmgen from another model (a fine-tune, a merge) keeps that model's settings and upsampler.
    # A registered model's weights under a new name sample as that model does.
    lineage, copy_of = weights_lineage(file, source_sha256, name)
    # The file holds what its weights are, not what they are called or where they were found (the record keeps
    # those): the same weights imported under two names, or from two paths, are one file with one sha256.
    metadata = {"source_sha256": source_sha256, **lineage.metadata()}
    with kept_together():  # the weights and their record: all new, or all as they were (a stop cannot split them)
        retire(cache.record_path(name))  # first: a kill -9 leaves no old record beside new weights
        digest = save_model(weights, state, target.arch, target.config, metadata, dtype=dtype)
        record = CacheRecord(
            name=name,
            arch=target.arch,
            config=to_dict(target.config),
            sha256=digest,
            size=weights.stat().st_size,
            dtype=str(dtype).removeprefix("torch."),
            source=source,
            source_sha256=source_sha256,
            source_format="safetensors" if is_safetensors(file) else "pt",
            imported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            mmgen_version=__version__,
            stamp=FileStamp.of(weights),
            sampling=to_dict(lineage.sampling) if lineage.sampling is not None else None,
            upsampler=lineage.upsampler,
            lineage_of=copy_of,
            source_dtypes=", ".join(sorted({str(t.dtype).removeprefix("torch.") for t in state.values()
                                            if t.is_floating_point()})),
        )
        cache.write_record(record)
    return record


def _arch_and_config() -> str:
    """The two settings that say what a file to import is, in its caller's words: `--arch/--config`, or
    import_weights' arguments `arch=/config=` (a config dataclass)."""
    return in_callers_words("--arch/--config", "arch=/config=")


def check_model_name(name: str, cache_dir: Path) -> None:
    """UsageError unless a model may be cached as `name`: a registry name is the registry's, whatever else holds it;
    any other is the user's pick and must not be a registered adapter's."""
    if name not in load_registry().entries:
        from mmgen.adapters.registration import check_not_an_adapter  # here: it imports this module

        check_not_an_adapter(name, cache_dir)


def import_weights(
    file: str | Path,
    name: str,
    *,
    arch: str | None = None,
    config: Any = None,
    dtype: str = "fp32",
    overwrite: bool = False,
    cache: ModelCache | None = None,
    source: str | None = None,
) -> CacheRecord:
    """`mmgen models import`: a hand-downloaded official checkpoint (or an mmgen/plain safetensors) becomes
    the cached model `name`. Under a registry name, the entry says what the file must be (and its sha256,
    if it names one); otherwise `arch` + `config` (a config dataclass; None: the released one) do, or else the
    file's own mmgen metadata. Any other name a registered adapter holds is refused (UsageError): `models
    info/rm NAME` must know which one is meant. `source` is what the record says the file came from (default:
    its path)."""
    file, cache = Path(file), cache or ModelCache()
    if why := why_not_a_file(file):
        raise UsageError(f"{file}: {why}")
    given, file = file, sidecar.kept_files(file)[0]  # a run's model being replaced: the weights it kept aside
    if dtype not in DTYPES:
        raise UsageError(f"{in_callers_words('--dtype', 'dtype')} must be one of {', '.join(DTYPES)}, got {dtype!r}")
    check_cache_writable(cache.root)
    check_cache_writable(cache.folder(name))  # a read-only models/ in a writable cache: said before any hashing
    if same_file(file, cache.weights_path(name)):  # an input is never an output, --overwrite or not
        raise UsageError(f"{given}: it is already the cached model {name!r}",
                         hint="import it under another name to make a converted copy")
    check_model_name(name, cache.root)
    entry = load_registry().entries.get(name)
    target = _target(name, entry, arch, config, file)
    with reading(file):
        source_sha256 = sha256_file(file)
    if entry is not None and entry.weights.sha256 and entry.weights.sha256 != source_sha256:
        raise ChecksumMismatch(
            f"{given} is not the file registered as {name!r}: expected sha256 {entry.weights.sha256}, "
            f"got {source_sha256}",
            hint="import it under another name",
        )
    on_trust = entry is not None and entry.weights.drive is not None and entry.weights.sha256 is None
    size = file.stat().st_size
    if on_trust:
        trust.check_trusted(cache.root, name, source_sha256, size, str(file))
    with cache.lock(name):
        if cache.record(name) is not None and not overwrite:
            raise OutputExists(f"{name!r} is already in the cache")
        with kept_together():  # the model and the trust it adds: a stop keeps both or neither
            record = install(
                cache,
                name,
                file,
                target,
                source=source or str(given.resolve()),
                source_sha256=source_sha256,
                dtype=DTYPES[dtype],
            )
            if on_trust:  # the file a user fetched by hand is the first one seen, as a download would be
                trust.trust(cache.root, name, entry.weights.drive.file, source_sha256, size, str(given.resolve()))
    return record


def _target(name: str, entry: ModelEntry | None, arch: str | None, config: Any, file: Path) -> Target | None:
    """What the imported file must fit; None: whatever its own mmgen metadata says."""
    if entry is not None:
        if entry.weights.bundled:
            raise UsageError(f"{name!r} is bundled with mmgen", hint="import your file under another name")
        if (arch is not None and arch != entry.arch) or config is not None:
            raise UsageError(
                f"{name!r} is a registry entry ({entry.arch}); its config is fixed by the entry",
                hint=f"drop {_arch_and_config()}, or import under another name",
            )
        if entry.config is None:
            return None
        return Target(entry.arch, entry.config, entry.weights.parameters)
    if arch is None:
        header = read_header(file)  # a damaged safetensors says so here
        if header is None and not is_safetensors(file):
            # A torch checkpoint's own trouble first — no weights at all, damaged, Python objects (refused unrun), a
            # pickle protocol torch.load does not read — which no --arch would answer.
            read_state_dict(file)
        if config is not None or header is None:
            raise UsageError(f"{in_callers_words('--arch', 'arch')} is required to import {file} as the new model "
                             f"{name!r}")
        return None
    return Target(arch, config if config is not None else config_for(arch))
