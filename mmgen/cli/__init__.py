"""The `mmgen` command. Subcommands live one per module; this file registers them and maps errors to
exit codes in one place: 0 ok, 2 bad usage or input (one line, no traceback), 1 anything else."""

from __future__ import annotations

import sys
import traceback

import typer

from mmgen.cli.app import app, debug_enabled
from mmgen.errors import MmgenError


def _register() -> None:
    """Import every subcommand module (one per command or group) so it registers itself on `app`."""
    import importlib
    import pkgutil

    import mmgen.cli as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name not in ("app", "options"):
            importlib.import_module(f"mmgen.cli.{info.name}")


def _error(message: str) -> None:
    print(f"mmgen: error: {message}", file=sys.stderr)


def run(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code (for tests and embedding)."""
    _register()
    try:
        app(args=argv, prog_name="mmgen", standalone_mode=False)
    except MmgenError as e:
        if debug_enabled():
            traceback.print_exc()
        _error(str(e))
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        _error("aborted")
        return 130
    except typer.TyperException as e:  # typer ≥0.28 vendors click: its usage errors
        # (BadParameter, NoSuchOption, ...) derive from TyperException; bad usage exits 2 per DESIGN §8
        if debug_enabled():
            traceback.print_exc()
        _error(e.format_message().replace("\n", " "))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as e:  # anything unexpected: exit 1, still one line unless --debug
        if debug_enabled():
            traceback.print_exc()
        _error(f"{e.__class__.__name__}: {e} (run with --debug for the traceback)")
        return 1
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
