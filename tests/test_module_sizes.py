"""The project keeps its modules under 400 lines, each with one job: media/probe grew to 402 when packet lengths were
read (session 26), and where a stream starts and ends moved to media/timeline; locks.py's holder lines moved out at
410."""

from __future__ import annotations

from pathlib import Path

MAX_LINES = 400
PACKAGE = Path(__file__).resolve().parents[1] / "mmgen"


def test_every_module_stays_under_400_lines():
    lengths = {str(file.relative_to(PACKAGE)): len(file.read_text(encoding="utf-8").splitlines())
               for file in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n >= MAX_LINES} == {}
