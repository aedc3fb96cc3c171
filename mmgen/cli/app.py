"""The Typer application every subcommand module registers on, and the global --debug switch."""

from __future__ import annotations

import os

import typer

app = typer.Typer(
    name="mmgen",
    help="Generate video with matching sound, give your clips a soundtrack, and fine-tune MM-Diffusion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def debug_enabled() -> bool:
    return os.environ.get("MMGEN_DEBUG", "") not in ("", "0")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors (or set MMGEN_DEBUG=1)."),
) -> None:
    if debug:
        os.environ["MMGEN_DEBUG"] = "1"
