"""`mmgen doctor`: what this machine has for mmgen — versions, codecs, devices, cache, models (pulled or not,
their sha256, what `pull` would fetch) — so a bug report or a "why is it slow?" starts from facts."""

from __future__ import annotations

import json as json_module
import os
import platform
import shutil
from pathlib import Path
from typing import Annotated, Any

import av
import numpy
import torch
import typer
from rich.console import Console
from rich.table import Table

from mmgen import __version__
from mmgen.cli.app import app
from mmgen.errors import MmgenError
from mmgen.runtime.device import cpu_native_bf16, huge_pages, select_compute
from mmgen.weights import cache_root
from mmgen.weights.catalog import catalog

# (codec, direction, what mmgen needs it for); the first two are required to write any output.
CODECS = [
    ("libx264", "w", "H.264 video out"),
    ("aac", "w", "AAC audio out"),
    ("h264", "r", "H.264 video in"),
    ("aac", "r", "AAC audio in"),
    ("png", "w", "previews"),
]
REQUIRED = {("libx264", "w"), ("aac", "w")}
ENVIRONMENT = ("MMGEN_CACHE", "MMGEN_PRESETS", "MMGEN_OFFLINE", "MMGEN_DEBUG")


def _codec(name: str, mode: str) -> bool:
    try:
        av.Codec(name, mode)
    except Exception:  # PyAV raises UnknownCodecError (a ValueError) or an FFmpeg error
        return False
    return True


def _devices() -> dict[str, Any]:
    cuda = []
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        props = torch.cuda.get_device_properties(index)
        cuda.append({"index": index, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                     "capability": f"{props.major}.{props.minor}"})
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    auto = select_compute("auto", "auto")
    return {
        "cpu": {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "native_bf16": cpu_native_bf16(),
                "huge_pages": huge_pages()},
        "cuda": cuda,
        "mps": mps,
        "auto": auto.describe(),
    }


def _free_bytes(folder: Path) -> int:
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def facts() -> dict[str, Any]:
    """Everything doctor reports, as plain JSON-able values."""
    try:
        root = cache_root()
        cache = {"path": str(root), "exists": root.is_dir(), "free_gib": round(_free_bytes(root) / 2**30, 1)}
    except MmgenError as e:  # said in the report, with everything else
        cache = {"path": os.environ.get("MMGEN_CACHE", ""), "exists": False, "free_gib": 0.0, "problem": str(e)}
    try:
        models = [row.as_dict() for row in catalog()]
        models_error = None
    except MmgenError as e:  # a broken user registry file must not hide everything else
        models, models_error = [], str(e)
    return {
        "versions": {
            "mmgen": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "av": av.__version__,
            "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
            "numpy": numpy.__version__,
            "platform": platform.platform(),
        },
        "codecs": [{"codec": n, "mode": "encode" if m == "w" else "decode", "use": use, "ok": _codec(n, m)}
                   for n, m, use in CODECS],
        "devices": _devices(),
        "cache": cache,
        "environment": {k: os.environ[k] for k in ENVIRONMENT if k in os.environ},
        "models": models,
        **({"models_error": models_error} if models_error else {}),
    }


def _show(report: dict[str, Any], console: Console) -> None:
    ok, bad = "[green]✓[/]", "[red]✗[/]"
    console.print("[bold]Versions[/]")
    for name, version in report["versions"].items():
        console.print(f"  {name:<18} {version}")
    console.print("[bold]Codecs[/]")
    for c in report["codecs"]:
        console.print(f"  {ok if c['ok'] else bad} {c['codec']:<8} {c['mode']:<7} [dim]{c['use']}[/]")
    devices = report["devices"]
    console.print("[bold]Devices[/]")
    console.print(f"  cpu    {devices['cpu']['cores']} cores, torch uses {devices['cpu']['torch_threads']} threads, native bf16: {'yes' if devices['cpu']['native_bf16'] else 'no'}, huge pages: {devices['cpu']['huge_pages']}")  # noqa: E501
    for gpu in devices["cuda"]:
        console.print(f"  cuda:{gpu['index']} {gpu['name']}, {gpu['memory_gib']} GiB, compute {gpu['capability']}")
    if not devices["cuda"]:
        console.print("  cuda   [dim]not available[/]")
    console.print(f"  mps    {'available' if devices['mps'] else '[dim]not available[/]'}")
    console.print(f"  --device auto → {devices['auto']}")
    cache = report["cache"]
    console.print("[bold]Cache[/]")
    if "problem" in cache:
        console.print(f"  {bad} {cache['problem']}", highlight=False)
    else:
        console.print(f"  {cache['path']} {'' if cache['exists'] else '[dim](not created yet)[/] '}· {cache['free_gib']} GiB free")
    for name, value in report["environment"].items():
        console.print(f"  {name}={value}")
    console.print("[bold]Models[/]")
    if "models_error" in report:
        console.print(f"  {bad} {report['models_error']}")
    table = Table(box=None, padding=(0, 2), show_edge=False)
    for column in ("name", "arch", "status", "size", "sha256", "pull fetches"):
        table.add_column(column)
    for row in report["models"]:
        size = "" if row["size"] is None else f"{'~' if row['size_estimated'] else ''}{row['size'] / 2**20:.0f} MB"
        style = "green" if row["status"] in ("bundled", "cached") else "dim"
        sha256 = f"{row['sha256'][:12]}…" if row["sha256"] else ""
        table.add_row(row["name"], row["arch"], f"[{style}]{row['status']}[/]", size, sha256, row["fetch"] or "")
    console.print(table)


@app.command()
def doctor(
    json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object on stdout.")] = False,
) -> None:
    """Check this machine: mmgen/torch/PyAV versions, codecs, devices, cache folder and the models present.

    Exits 1 if an encoder mmgen needs to write mp4 files is missing.
    """
    report = facts()
    if json:
        print(json_module.dumps(report, indent=2))
    else:
        _show(report, Console(stderr=False, highlight=False))
    missing = [f"{c['codec']} ({c['use']})" for c in report["codecs"]
               if not c["ok"] and (c["codec"], "w" if c["mode"] == "encode" else "r") in REQUIRED]
    if missing:
        raise MmgenError(f"PyAV lacks encoders mmgen needs: {', '.join(missing)}",
                         hint="install PyAV wheels from PyPI (`pip install av`), which bundle them")
