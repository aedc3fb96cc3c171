"""`mmgen models`: the group and its shared options, and list, pull, import (rm, verify and info, about one entry
by name: models_entries). Argument parsing and printing only; the work is in mmgen.weights. Human output goes to
stderr, `--json` objects (one per line) to stdout.

Examples:
    mmgen models list
    mmgen models pull landscape
    mmgen models pull --all-official
    mmgen models pull landscape --url https://mirror.example/Landscape.pt --sha256 HEX
    mmgen models import ~/Downloads/Landscape.pt --name landscape
    mmgen models import tiny.pt --name tiny --arch mm-unet --config tiny.yaml --dtype fp16
    mmgen models import runs/style/adapter.safetensors --name my-style     (an adapter: --adapter my-style)
    mmgen models import runs/style/adapter.safetensors --name styled --merge   (its base with it merged in)
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.table import Table

from mmgen.cli._results import print_json
from mmgen.cli.app import app
from mmgen.cli.options import closed_stdout, stdout_open
from mmgen.config import json_text, to_dict
from mmgen.errors import MmgenError, UsageError
from mmgen.input_files import why_not_a_file
from mmgen.terminal import (
    WIDE_TABLE,
    fits,
    hashes_text,
    markup_text,
    say,
    short_hash,
    show_table,
    size_text,
    table_console,
)
from mmgen.yaml_files import load_yaml

if TYPE_CHECKING:
    from rich.console import Console

models_app = typer.Typer(
    name="models",
    help="List, download, import, verify and remove model weights.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

JsonOption = Annotated[bool, typer.Option("--json", callback=stdout_open, help="Print one JSON object per result to stdout.")]
NameArgument = Annotated[str, typer.Argument(help="Name of the model or adapter (see `mmgen models list`).")]
AdapterFlag = Annotated[bool, typer.Option("--adapter", help="NAME is the registered adapter (a model has it too)")]
ModelFlag = Annotated[bool, typer.Option("--model", help="NAME is the model (a registered adapter has it too)")]


def emit(obj: dict[str, Any]) -> None:
    """One `--json` object, a line of stdout, written with the rest of the command's output as it ends (`list`,
    `info`, `verify`'s verdicts, all known at once); a result that comes after work (each model pulled) is
    print_json's."""
    print(json_text(obj))


@models_app.command("list")
def list_models(as_json: JsonOption = False) -> None:
    """Show every known model: architecture, size, where its weights stand, the sha256 of the weights file mmgen
    loads (and of the file it came from, labelled "source") and what `pull` would fetch."""
    from mmgen.adapters.store import listed
    from mmgen.weights.catalog import catalog

    rows, adapters = catalog(), listed()
    if as_json:
        for row in rows:
            emit(row.as_dict())
        for adapter in adapters:
            emit(adapter)
        return
    if why := closed_stdout("the table"):  # the table is the result: stdout, as doctor's report
        raise UsageError(why)
    console = table_console(stderr=False)
    table, entries = _models_table(rows, wide=True)
    wide = console.width >= WIDE_TABLE and fits(console, table)  # each URL whole, else the table without them
    if not wide:
        table, entries = _models_table(rows, wide=False)
    shown_as_table = show_table(console, table, entries)
    if not wide:
        say("each model's sha256 and what `pull` fetches: `mmgen models info NAME`"
            + (", or a wider terminal" if shown_as_table else ""))
    if adapters:
        show_adapters(console, adapters)
    for name in sorted({row.name for row in rows} & {a["name"] for a in adapters}):
        say(f"{name} is both a model and an adapter: -m {name} runs the model, --adapter {name} applies the "
            f"adapter; `mmgen models info/verify/rm {name}` take --model or --adapter")


def _models_table(rows: list, wide: bool) -> tuple[Table, list[tuple[str, ...]]]:
    """`models list`'s table of the catalog's `rows`, and its entries a line each (show_table); `wide`: with each
    model's sha256 and what `pull` fetches, never folded: copied from a folded cell, `…/folders/1Mno4A3BU` and
    `XELAdX4m650CJ1VfuMVlkz5p` were two halves of no URL."""
    table = Table(title="mmgen models", title_justify="left")
    for column in ("name", "arch", "size", "status", *(("sha256", "pull fetches") if wide else ())):
        table.add_column(column, no_wrap=True)  # short, or a URL: never broken up
    table.add_column("description", overflow="fold")
    entries = []
    for row in rows:
        cells = (row.name, row.arch, size_text(row.size, row.size_estimated), row.status)
        more = (hashes_text(row.sha256, row.source_sha256), markup_text(row.fetch or "")) if wide else ()
        table.add_row(markup_text(row.name), *cells[1:], *more, markup_text(row.description))
        entries.append((*cells, row.description))
    return table, entries


def show_adapters(console: Console, adapters: list[dict[str, Any]], indent: str = "") -> None:
    """The registered `adapters`, as their --json objects (adapters.store.listed), as `models list`
    shows them — name, base model, rank, targets, size, sha256; a damaged one's row saying so — and doctor's Models
    section too."""
    from mmgen.weights.catalog import DAMAGED

    table = Table(title="adapters (use with --adapter NAME[:WEIGHT])", title_justify="left")
    for column in ("name", "base", "rank", "targets", "size", "sha256"):
        table.add_column(column, overflow="fold", no_wrap=column in ("rank", "size", "sha256"))
    entries = []
    for a in adapters:
        if a.get("status") == DAMAGED:  # one row saying so, as a damaged model's
            table.add_row(markup_text(a["name"]), f"{DAMAGED}: {markup_text(a['description'])}", "", "", "", "")
            entries.append((a["name"], f"{DAMAGED}: {a['description']}", ""))
            continue
        cells = (a["name"], f"{a['base']} ({short_hash(a['base_sha256'])})", str(a["rank"]), a["targets"],
                 size_text(a["size"]), short_hash(a["sha256"]))
        table.add_row(*map(markup_text, cells[:4]), *cells[4:])
        entries.append((cells[0], f"base {cells[1]}", f"rank {cells[2]}", *cells[3:]))
    show_table(console, table, entries, indent=indent)


def official_models() -> list[str]:
    """Registry entries fetched from the paper's Google Drive folder."""
    from mmgen.weights import load_registry

    registry = load_registry()
    return [name for name in registry.names() if registry.entries[name].weights.drive is not None]


@models_app.command()
def pull(
    name: Annotated[
        str | None, typer.Argument(help="Registry name of the model (see `mmgen models list`).")
    ] = None,
    all_official: Annotated[
        bool, typer.Option("--all-official", help="Pull the paper's models: landscape, aist++ and their upsamplers.")
    ] = False,
    url: Annotated[
        str | None, typer.Option(help="Fetch from this mirror instead (https, or file://).")
    ] = None,
    sha256: Annotated[
        str | None,
        typer.Option(help="sha256 of the file at --url (default: the one recorded on first download)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Download (and convert) a model's weights into the cache, resuming an interrupted download; a cached
    file that changed on disk is fetched again."""
    from mmgen.cli._interrupted import left_behind
    from mmgen.weights import ModelCache
    from mmgen.weights import pull as pull_weights
    from mmgen.weights.names import is_name
    from mmgen.weights.pull import StoppedWaiting, kept_download

    def cached_now(model: str) -> object:
        """The cache's record of `model` (None: not cached), to tell whether a stopped pull cached it."""
        with suppress(MmgenError):
            return ModelCache().record(model) if is_name(model) else None
        return None

    if (name is None) == (not all_official):
        raise UsageError("give a model NAME or --all-official (not both)")
    if all_official and url is not None:
        raise UsageError("--url names one model's file: use it with NAME, not --all-official")
    for model in official_models() if all_official else [name]:
        before = cached_now(model)
        try:
            pulled = pull_weights(model, quiet=quiet, repair=True, url=url, sha256=sha256)
        except KeyboardInterrupt as stop:
            part = kept_download(model)
            if isinstance(stop, StoppedWaiting):  # a .part there is the other process's
                left_behind(f"it was still waiting for another mmgen process pulling {model}: nothing downloaded by "
                            f"this one")
            elif (now := cached_now(model)) is not None and now != before:  # the stop came just after it was cached
                left_behind(f"{model} was downloaded to {ModelCache().weights_path(model)}")
            else:
                left_behind(f"nothing of {model} was downloaded" if part is None else
                            f"kept the partial download of {model} ({size_text(part.stat().st_size)}) in {part}: "
                            f"`mmgen models pull {model}` resumes it")
            raise
        if as_json:
            print_json({"kind": "model", "name": model, "path": str(pulled.path), "fetched": pulled.fetched})
        elif not quiet:
            say(f"{model}: {'downloaded to' if pulled.fetched else 'already available at'} {pulled.path}")


@models_app.command("import")
def import_model(
    file: Annotated[
        Path,
        typer.Argument(help="Checkpoint to import: an official .pt, a .safetensors, or a LoRA adapter "
                       "(RUN/adapter.safetensors of `mmgen finetune --lora`)."),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Name to use it by, e.g. landscape.")],
    arch: Annotated[
        Literal["mm-unet", "sr-unet"] | None,
        typer.Option(
            help="Architecture of a model the registry does not know (its entry says it otherwise)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML file of architecture fields for a non-released config (with --arch)."),
    ] = None,
    dtype: Annotated[
        Literal["fp32", "fp16"], typer.Option(help="Stored precision: fp32, or fp16 to halve the disk size.")
    ] = "fp32",
    overwrite: Annotated[
        bool, typer.Option(help="Replace a model (or adapter) of that name already in the cache.")
    ] = False,
    merge: Annotated[
        bool,
        typer.Option("--merge", help="For an adapter: cache its base model with the adapter merged in, as a plain "
                     "model NAME, instead of registering the adapter."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check a hand-downloaded checkpoint against its architecture and add it to the cache as safetensors;
    register a LoRA adapter under a name (or, with --merge, cache its base with it merged in)."""
    from mmgen.adapters import is_adapter_file
    from mmgen.adapters.registration import import_merged, register
    from mmgen.models import config_for
    from mmgen.weights import import_weights

    if why := why_not_a_file(file):  # before what the file is: `--merge is for adapters` of a file not there
        raise _weight_given(file, name, merge) or UsageError(f"{file}: {why}")
    if is_adapter_file(file):
        if arch is not None or config is not None:
            raise UsageError(f"{file} is an adapter: its base model fixes the architecture (drop --arch/--config)")
        if not merge:
            adapter = register(file, name, overwrite=overwrite)
            if as_json:
                emit(adapter.as_dict())
            else:
                say(f"registered adapter {name!r} for {adapter.base} (rank {adapter.rank}, {size_text(adapter.size)}, "
                     f"sha256 {adapter.sha256}); use it with --adapter {name}")
            return
        record = import_merged(file, name, overwrite=overwrite)
    elif merge:
        raise UsageError(f"--merge is for adapters; {file} is not one")
    else:
        arch_config = None
        if config is not None:
            if arch is None:
                raise UsageError("--config needs --arch (the architecture those fields belong to)")
            arch_config = config_for(arch, load_yaml(config), str(config))
        record = import_weights(file, name, arch=arch, config=arch_config, dtype=dtype, overwrite=overwrite)
    if as_json:
        emit({"kind": "model", **to_dict(record)})
    else:
        copy_of = f"; the weights of {record.lineage_of!r}: it samples as {record.lineage_of!r} does" \
            if record.lineage_of else ""
        say(f"imported {file} as {name!r} ({record.arch}, {_stored_as(record)}, {size_text(record.size)}, "
            f"sha256 {record.sha256}; source sha256 {record.source_sha256}){copy_of}")


def _weight_given(file: Path, name: str, merge: bool) -> UsageError | None:
    """The error for `models import FILE:WEIGHT` (as --adapter takes it) where FILE is there: an adapter's weight is
    given where it is used, and an import takes none (--merge merges it as trained, at 1); None for any other name,
    and where something is at the name (a folder: said as it is)."""
    from mmgen.adapters import is_adapter_file
    from mmgen.adapters.use import AdapterUse

    if file.is_symlink() or file.exists():
        return None
    try:
        use = AdapterUse.parse(str(file))
    except UsageError:  # a weight out of range, an empty name: no FILE:WEIGHT this explains
        return None
    source = Path(use.source)
    if use.source == str(file) or why_not_a_file(source):
        return None
    if not is_adapter_file(source):
        return UsageError(f"{file}: no such file; {source} is, and an import takes no weight", hint=f"import {source}")
    then = f"then use it with --adapter {name}:{use.weight:g}"
    hint = f"import {source} without --merge, {then}; a merged model holds the adapter at weight 1" if merge \
        else f"import {source}, {then}"
    return UsageError(f"{file}: no such file; {source} is, and an import takes no weight: an adapter's weight is "
                      "given where it is used", hint=hint)


def _stored_as(record) -> str:
    """The stored dtype, and how it came from the source's: "float32, widened from float16: the same weights"."""
    if record.source_dtypes in (None, record.dtype):
        return record.dtype
    how = "widened" if record.same_weights_as_source else "narrowed"
    same = "the same weights" if record.same_weights_as_source else "values rounded"
    return f"{record.dtype}, {how} from {record.source_dtypes}: {same}"
