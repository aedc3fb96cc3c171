"""Whether PyTorch imports here, and if not, why, in one line. mmgen does not install it (its wheel is the
user's choice: CPU, CUDA, ROCm), so an install without it, or with one whose import fails (a CUDA library it was
built for missing: `OSError: libcudnn.so.9`), is told that and the command that installs it — `doctor` as a
✗ line beside what it can still report, any other command as its one line — not a bare ModuleNotFoundError.
Imports nothing of mmgen's at its top: it is asked when an import is what failed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmgen.errors import MmgenError

INSTALL = "pip install torch==2.13.0"  # the README's first command: the torch mmgen is tested with


def torch_problem() -> str | None:
    """None where torch imports; else `is not installed` or `fails to import: OSError: …`. Imports it (seconds)
    unless it already has been."""
    if sys.modules.get("torch") is not None:
        return None
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name == "torch":
            return "is not installed"
        return f"fails to import: {e.__class__.__name__}: {e}"
    except Exception as e:  # whatever its import raised: an OSError for a missing CUDA library, a RuntimeError
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"fails to import: {e.__class__.__name__}: {first}".rstrip(": ")
    return None


def torch_failed(e: BaseException) -> MmgenError | None:
    """The one-line MmgenError for a command that failed with `e` because torch does not import (exit 1: the
    machine's install, not the user's input); None where `e` came from anything else — a usage error, mmgen's own,
    a failure after torch loaded — which is then said at once, not after seconds of importing torch to ask it."""
    from mmgen.errors import MmgenError

    if isinstance(e, MmgenError) or not _from_torch_import(e) or (problem := torch_problem()) is None:
        return None
    return torch_missing(problem)


def torch_missing(problem: str) -> MmgenError:
    """The one-line MmgenError that torch has `problem` (torch_problem's), with the command that installs it: any
    command's (torch_failed) and `doctor`'s alike."""
    from mmgen.errors import MmgenError

    return MmgenError(f"mmgen needs PyTorch, which {problem}", hint=f"install it first: {INSTALL}")


def _from_torch_import(e: BaseException) -> bool:
    """Whether `e` is an `import torch` that failed: torch not found, or raised from its own modules' code (a
    failed import leaves torch out of sys.modules)."""
    if sys.modules.get("torch") is not None:
        return False
    if isinstance(e, ModuleNotFoundError) and (e.name or "").partition(".")[0] == "torch":
        return True
    frame = e.__traceback__
    while frame is not None:
        if frame.tb_frame.f_globals.get("__name__", "").partition(".")[0] == "torch":
            return True
        frame = frame.tb_next
    return False
