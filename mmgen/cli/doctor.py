"""`mmgen doctor`: what this machine has for mmgen — versions, codecs, devices, cache, models (pulled or not,
their sha256, what `pull` would fetch) — so a bug report or a "why is it slow?" starts from facts."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mmgen.cli.app import app
from mmgen.cli.models import show_adapters
from mmgen.cli.options import closed_stdout
from mmgen.config import json_text
from mmgen.dependency_versions import NO_VERSION
from mmgen.environment import CPU_BF16
from mmgen.errors import MmgenError, UsageError
from mmgen.runtime.torch_import import torch_missing
from mmgen.terminal import counted, hashes_text, markup_text, say, show_table, size_text, table_console


def _bf16(cpu: dict[str, Any]) -> str:
    """The CPU's native bf16, and where MMGEN_CPU_BF16 overrides what auto makes of it, quoted as set:
    `yes (off: MMGEN_CPU_BF16=no)` (it said `=0` for `no`, a value the user never wrote)."""
    native, auto = cpu["native_bf16"], cpu["auto_bf16"]
    said = "yes" if native else "no"
    if auto != native:
        said += f" ({'on' if auto else 'off'}: {CPU_BF16}={os.environ.get(CPU_BF16, '').strip() or int(auto)})"
    return said


def _show(report: dict[str, Any], console: Console) -> None:
    ok, bad = "[green]✓[/]", "[red]✗[/]"
    console.print("[bold]Versions[/]")
    for name, version in report["versions"].items():
        if name == "torch" and "torch_problem" in report:
            console.print(f"  {bad} torch {markup_text(report['torch_problem'])}", highlight=False)
        else:
            console.print(f"  {name:<18} {version}")
    for package in report.get("outdated", []):  # pip keeps what is installed, however old: said, with what it needs
        console.print(f"  {bad} {_outdated(package)}", highlight=False)
    console.print("[bold]Codecs[/]")
    for c in report["codecs"]:
        # the word beside the mark: what the row says without colour or the glyph (a screen reader, an ASCII log)
        state = f"{ok} ok     " if c["ok"] else f"{bad} [red]missing[/]"
        console.print(f"  {state} {c['codec']:<8} {c['mode']:<7} [dim]{c['use']}[/]")
    devices = report["devices"]
    console.print("[bold]Devices[/]")
    if devices is None:
        console.print("  [dim]unknown: torch does not import[/]")
    else:
        _show_devices(devices, console)
    cache = report["cache"]
    console.print("[bold]Cache[/]")
    if "problem" in cache:
        console.print(f"  {bad} {markup_text(cache['problem'])}", highlight=False)
    else:
        console.print(f"  {markup_text(cache['path'])} {'' if cache['exists'] else '[dim](not created yet)[/] '}· {cache['free_gib']} GiB free")
        console.print(f"  models {size_text(cache['models_bytes'])} · adapters {size_text(cache['adapters_bytes'])} · "
                      f"clip cache {size_text(cache['clips_bytes'])} [dim](clips/: only a speed-up, safe to delete "
                      "while no finetune runs)[/]", highlight=False)
        if leftovers := cache.get("leftovers"):  # a killed mmgen's temporaries, counted in its entry's bytes
            console.print(f"  [yellow]![/] {size_text(cache['leftovers_bytes'])} in temporaries no mmgen here is "
                          "writing (left by a killed one, unless one in another container or host writes them now; "
                          f"`mmgen models rm NAME` removes a model's or an adapter's with it): {markup_text(', '.join(leftovers))}",
                          highlight=False)
    for name, value in report["environment"].items():
        console.print(f"  {name}={markup_text(value)}", highlight=False)
    for problem in report.get("environment_problems", {}).values():
        console.print(f"  {bad} {markup_text(problem)}", highlight=False)
    for warning in report.get("environment_warnings", {}).values():  # a variable not mmgen's: said, not refused
        console.print(f"  [yellow]![/] {markup_text(warning)}", highlight=False)
    console.print("[bold]Models[/]")
    if "models_error" in report:
        console.print(f"  {bad} {markup_text(report['models_error'])}")
    table = Table(box=None, padding=(0, 2), show_edge=False)
    for column in ("name", "arch", "status", "size", "sha256"):
        table.add_column(column, no_wrap=True)
    table.add_column("pull fetches", overflow="fold")
    entries = []
    for row in report["models"]:
        size = "" if row["size"] is None else size_text(row["size"], row["size_estimated"])
        style = {"bundled": "green", "cached": "green", "damaged": "red"}.get(row["status"], "dim")
        table.add_row(markup_text(row["name"]), row["arch"], f"[{style}]{row['status']}[/]", size,
                      hashes_text(row["sha256"], row["source_sha256"]), markup_text(row["fetch"] or ""))
        entries.append((row["name"], row["arch"], row["status"], size,
                        hashes_text(row["sha256"], row["source_sha256"]).replace("\n", " · "), row["fetch"] or ""))
    show_table(console, table, entries, indent="  ")  # a model a line where the terminal is too narrow for the table
    for row in report["models"]:
        if row["status"] == "damaged":
            console.print(f"  {bad} {markup_text(row['name'])}: {markup_text(row['description'])}", highlight=False)
    if report["adapters"]:  # as `models list` shows them
        show_adapters(console, report["adapters"], indent="  ")
    for adapter in report.get("damaged_adapters", []):
        console.print(f"  {bad} adapter {markup_text(adapter['name'])}: {markup_text(adapter['description'])}",
                      highlight=False)


def _show_devices(devices: dict[str, Any], console: Console) -> None:
    console.print(f"  cpu    {counted(devices['cpu']['cores'], 'core')}, torch uses {counted(devices['cpu']['torch_threads'], 'thread')}, native bf16: {_bf16(devices['cpu'])}, huge pages: {devices['cpu']['huge_pages']}")  # noqa: E501
    for gpu in devices["cuda"]:
        console.print(f"  cuda:{gpu['index']} {gpu['name']}, {gpu['memory_gib']} GiB, compute {gpu['capability']}")
    if not devices["cuda"]:
        console.print("  cuda   [dim]not available[/]")
    console.print(f"  mps    {'available' if devices['mps'] else '[dim]not available[/]'}")
    console.print(f"  --device auto → {devices['auto']}")


def _outdated(package: dict[str, Any]) -> str:
    """`av 12.0.0 is installed; mmgen needs av>=18.1`: a package older than mmgen declares it needs (or missing, or
    installed without a version: a dist-info folder without its METADATA)."""
    name, installed = package["package"], package["installed"]
    if installed == NO_VERSION:
        return f"{name}: its install has no version (broken install?); mmgen needs {name}>={package['needed']}"
    installed = "is not installed" if installed is None else f"{installed} is installed"
    return f"{name} {installed}; mmgen needs {name}>={package['needed']}"


@app.command()
def doctor(
    json: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object, on one line, to stdout.")
    ] = False,
) -> None:
    """Check this machine: mmgen/torch/PyAV versions, codecs, devices, cache folder and the models present.

    Exits 2 if an mmgen environment variable holds a value that means nothing (every other command refuses to
    start then), 1 if torch does not import, a package is older than mmgen needs, or an encoder mmgen needs to write
    mp4 files is missing.
    """
    from mmgen.cli._facts import REQUIRED, facts

    if why := closed_stdout("the report"):  # the report goes to stdout, --json or not
        raise UsageError(why)
    report = facts()
    if json:
        print(json_text(report), flush=True)  # one line, as every --json output is
    else:
        _show(report, table_console(stderr=False))
    if problems := report.get("environment_problems"):
        raise _environment_problem(problems)
    if problem := report.get("torch_problem"):
        raise torch_missing(problem)
    if outdated := report.get("outdated"):
        needed = " ".join(f"'{p['package']}>={p['needed']}'" for p in outdated)
        hint = f"upgrade: pip install -U {needed}"
        if any(p["installed"] == NO_VERSION for p in outdated):  # installed over whatever is left of it
            hint = f"reinstall: pip install --force-reinstall {needed}"
        raise MmgenError("; ".join(map(_outdated, outdated)), hint=hint)
    lacking = [c for c in report["codecs"] if not c["ok"]]
    required = [c for c in lacking if (c["codec"], "w" if c["mode"] == "encode" else "r") in REQUIRED]
    if not lacking:
        return
    others = [_codec_named(c) for c in lacking if c not in required]
    also = f"; it also lacks {', '.join(others)}, which only what uses it needs" if others and required else ""
    hint = "install PyAV wheels from PyPI (`pip install av`), which bundle them"
    if required:
        raise MmgenError(f"PyAV lacks what mmgen needs to write any mp4: {', '.join(map(_codec_named, required))}{also}", hint=hint)
    say(f"mmgen: PyAV lacks {', '.join(others)}: only what uses {'it' if len(others) == 1 else 'them'} stops "
        f"({hint})")


def _codec_named(codec: dict[str, Any]) -> str:
    """A codec row of the report as doctor's closing line names it: `png encoder (previews)`."""
    return f"{codec['codec']} {codec['mode']}r ({codec['use']})"


def _environment_problem(problems: dict[str, str]) -> UsageError:
    """doctor's closing line for the variables that stop every other command: the one's own line, or their names."""
    if len(problems) == 1:
        return UsageError(next(iter(problems.values())), hint="every other mmgen command refuses to start with it")
    return UsageError(f"{len(problems)} environment variables hold values that mean nothing: {', '.join(problems)}",
                      hint="the report above says what each takes; every other mmgen command refuses to start with them")
