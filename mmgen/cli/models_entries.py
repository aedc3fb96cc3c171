"""`mmgen models rm / verify / info`: the commands about one cached or bundled entry by NAME — a model, or a
registered adapter (--model/--adapter say which where a name is both) — and `verify` of them all. Argument parsing
and printing only; the work is in mmgen.weights and mmgen.adapters.store.

Examples:
    mmgen models verify
    mmgen models info landscape
    mmgen models rm my-style --adapter
    mmgen models rm landscape --forget
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mmgen.cli.models import AdapterFlag, JsonOption, ModelFlag, NameArgument, emit, models_app
from mmgen.cli.options import closed_stdout
from mmgen.errors import ChecksumMismatch, ModelNotFound, UsageError
from mmgen.terminal import counted, path_text, say

# What `models info` says of a field whose --json value is null, where that means more than "none" (a field it
# leaves out otherwise)
UNSTATED = {"config": "(from the weights file)"}

if TYPE_CHECKING:
    from mmgen.weights.catalog import Verdict


def _bundled_file(name: str) -> Path | None:
    """The weights file a registry entry ships inside the package (the demo's), or None."""
    from mmgen.weights import load_registry

    registry = load_registry()
    return registry.get(name).weights.bundled_path if name in registry else None


def _adapter_named(name: str, adapter: bool, model: bool, command: str) -> tuple[Path, Path] | None:
    """The registered adapter NAME means — its record file and adapter file as last kept (store.registered, found
    once: passed along, not looked up again) — or None where NAME means the model: said by --adapter/--model, else
    whichever of the two exists.
    Both can: a registry entry that came after the user registered an adapter under its name (a new mmgen, a
    preset folder) — then `-m NAME` is the model and `--adapter NAME` the adapter, and a command given only
    NAME asks which rather than guess; a name of neither is refused naming the close names of both. A damaged
    models/ or adapters/ folder (a symlink) holds nothing readable: only a name that may be its kind's says so
    (weights.cache.unless_kind_damaged)."""
    from mmgen.adapters import store
    from mmgen.weights import ModelCache, load_registry
    from mmgen.weights.cache import damaged_folder, unless_kind_damaged
    from mmgen.weights.registry import unknown_model

    if adapter and model:
        raise UsageError("give --adapter or --model, not both")
    if model:
        return None
    if adapter:
        if (kept := store.registered(name)) is None:
            raise ModelNotFound(f"no adapter named {name!r} is registered", hint="see `mmgen models list`")
        return kept
    cache, registry = ModelCache(), load_registry()
    in_registry = name in registry
    if not in_registry and not unless_kind_damaged(cache.root, "models", lambda: cache.folder(name).is_dir(), False):
        if (kept := store.registered(name)) is not None:
            return kept
        if damaged_folder(cache.root, "models") is not None:
            return None  # models/ a link: the model's own lookup says so
        raise unknown_model(name, sorted({*registry.names(), *cache.names(), *store.names()}), "model or adapter")
    if unless_kind_damaged(cache.root, "adapters", lambda: store.registered_file(name), None) is None:
        return None
    where = "in the registry" if in_registry else "in the cache"
    raise UsageError(f"{name!r} names both a model ({where}) and a registered adapter",
                     hint=f"say which: mmgen models {command} {name} --model, or --adapter")


def _only_leftovers(name: str, adapter: bool, model: bool) -> bool:
    """Whether `rm NAME` means an adapter folder holding only what a killed registration left (no record: not
    registered, so not `_adapter_named`'s), NAME naming no model: removed as a registered adapter's (store.remove)."""
    from mmgen.adapters import store
    from mmgen.weights import ModelCache, load_registry
    from mmgen.weights.cache import damaged_folder

    root = ModelCache().root
    if model or any(damaged_folder(root, kind) for kind in ("models", "adapters")) or not store.folder_of(name).is_dir():
        return False
    return store.registered(name) is None and (adapter or name not in load_registry()
                                              and not ModelCache().folder(name).is_dir())


@models_app.command()
def rm(
    name: NameArgument,
    forget: Annotated[
        bool,
        typer.Option(help="Also forget the sha256 recorded on its first download, so the next pull trusts anew."),
    ] = False,
    adapter: AdapterFlag = False,
    model: ModelFlag = False,
    as_json: JsonOption = False,
) -> None:
    """Delete a model (and any partial download) or a registered adapter from the cache."""
    from mmgen.adapters import store
    from mmgen.weights import ModelCache
    from mmgen.weights.cache import remove_entry_link
    from mmgen.weights.names import check_name
    from mmgen.weights.trust import check_forgettable
    from mmgen.weights.trust import forget as forget_trust

    if forget and adapter:
        raise UsageError("--forget drops a model's recorded sha256; an adapter has none")
    cache = ModelCache()
    check_name(name, "model")
    if (link := remove_entry_link(cache.root, name)) is not None:  # a damaged entry: the link goes, never its files
        if as_json:
            emit({"name": name, "kind": link.parent.name.removesuffix("s"), "removed": True, "forgot_sha256": False})
        else:
            say(f"removed the symlink {link} (what it points to is left alone)")
        return
    only_leftovers = _only_leftovers(name, adapter, model or forget)
    is_adapter = only_leftovers or _adapter_named(name, adapter, model or forget, "rm") is not None
    if forget:  # before the model goes: a read-only cache keeps both
        check_forgettable(cache.root, name)
    removed = store.remove(name) if is_adapter else cache.remove(name)
    forgotten = forget and forget_trust(cache.root, name)
    if not removed and not forgotten:
        if not is_adapter and (bundled := _bundled_file(name)) is not None:
            raise UsageError(f"{name} is bundled with mmgen: its weights are part of the package ({bundled}), "
                             "not the cache, and cannot be removed")
        if is_adapter:
            raise ModelNotFound(f"no adapter named {name!r} is registered", hint="see `mmgen models list`")
        raise ModelNotFound(f"{name}: nothing in the cache ({cache.folder(name)})")
    if as_json:
        emit({"name": name, "kind": "adapter" if is_adapter else "model", "removed": removed,
               "forgot_sha256": forgotten})
    else:
        what = f"adapter {name}" if is_adapter else name
        say(f"removed {what} from {cache.root}" + (" and forgot its recorded sha256" if forgotten else ""))


@models_app.command()
def verify(
    name: Annotated[
        str | None,
        typer.Argument(help="Model or adapter to check; all cached and bundled models and registered adapters if "
                       "omitted."),
    ] = None,
    adapter: Annotated[bool, typer.Option("--adapter", help="NAME is the registered adapter (a model has it too); "
                                          "without NAME, check only the adapters")] = False,
    model: Annotated[bool, typer.Option("--model", help="NAME is the model (a registered adapter has it too); "
                                        "without NAME, check only the models")] = False,
    as_json: JsonOption = False,
) -> None:
    """Re-hash weights files and registered adapters and compare them with their recorded sha256.

    Without NAME, every cached and bundled model and registered adapter: only the models with --model, only the
    adapters with --adapter."""
    from mmgen.adapters import store
    from mmgen.weights.catalog import verify_models

    if name is None:  # --model/--adapter: only those
        if adapter and model:
            raise UsageError("give --adapter or --model, not both")
        results = ([] if adapter else verify_models()) + ([] if model else store.verify())
    else:
        is_adapter = _adapter_named(name, adapter, model, "verify") is not None
        results = store.verify(name) if is_adapter else verify_models(name)
    if not as_json and (why := closed_stdout("the verdicts")):
        raise UsageError(why)
    if not results and not as_json:
        say("nothing to verify: no models are cached, no bundled weights file is present and no adapter is "
             "registered")
    for result in results:
        if as_json:
            emit(result.as_dict())
        else:
            sha = f", sha256 {result.actual}" if result.ok else ""
            print(path_text(f"{result.name}: {result.verdict}{sha} ({result.path})"))  # the result: stdout
    bad = [r for r in results if not r.ok]
    if bad:
        counts = " and ".join(counted(n, kind) for kind in ("model", "adapter") if (n := sum(r.kind == kind for r in bad)))
        fail = "fails" if len(bad) == 1 else "fail"  # "1 model fails", "1 model and 1 adapter fail"
        raise ChecksumMismatch(f"{counts} {fail} verification: {', '.join(r.name for r in bad)}", hint=_mend(bad))


def _mend(bad: list[Verdict]) -> str:
    """How to mend what failed verification: each damaged one as its own verdict says (a linked models/ or adapters/
    is replaced with a folder, a linked or unreadable entry removed); the rest are pulled or imported again."""
    ways = list(dict.fromkeys(r.mend for r in bad if r.mend))
    again = [r for r in bad if not r.mend]
    if again:
        which = f"{', '.join(r.name for r in again)}: " if ways else ""
        adapter = (" (an adapter: mmgen models import FILE --name NAME --overwrite)"
                   if any(r.kind == "adapter" for r in again) else "")
        ways.append(f"{which}pull or import {'them' if len(again) > 1 else 'it'} again{adapter}")
    return "; ".join(ways)


@models_app.command()
def info(
    name: NameArgument, adapter: AdapterFlag = False, model: ModelFlag = False, as_json: JsonOption = False
) -> None:
    """Everything known about one model (registry entry, cache record, weights file) or registered adapter."""
    from mmgen.adapters import store
    from mmgen.weights.catalog import describe

    if not as_json and (why := closed_stdout("the details")):
        raise UsageError(why)
    if (kept := _adapter_named(name, adapter, model, "info")) is not None:
        if (found := store.found_record(name, kept)) is None:  # removed as it was read
            raise ModelNotFound(f"no adapter named {name!r} is registered", hint="see `mmgen models list`")
        record, file = found
        details = {**record.as_dict(file), "path": str(file)}  # status: missing where its file was removed
    else:
        details = describe(name)
    if as_json:
        emit(details)
        return
    for key, value in details.items():
        if value is None and key not in UNSTATED:  # nothing to say: no base, no upsampler
            continue
        shown = UNSTATED[key] if value is None else json.dumps(value) if isinstance(value, (dict, list)) else value
        print(path_text(f"{key:>14}: {shown}"), flush=True)  # the result: stdout
