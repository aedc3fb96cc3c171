"""Lines for the person at the terminal, on stderr."""

from __future__ import annotations

import sys


def say(line: str) -> None:
    """`line` and its newline in one write: with stderr unbuffered (PYTHONUNBUFFERED), print() writes them
    apart, and the lines of parallel processes (torchrun's workers) then mix mid-line."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
