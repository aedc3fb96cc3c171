"""The project keeps its modules under 400 lines, each with one job: mmgen.media's probe grew to 402 when packet
lengths were read (session 26), and where a stream starts and ends moved to media.timeline."""

from __future__ import annotations

from pathlib import Path

MAX_LINES = 400
MEDIA = Path(__file__).resolve().parents[1] / "mmgen" / "media"


def test_every_media_module_stays_under_400_lines():
    lengths = {file.name: len(file.read_text(encoding="utf-8").splitlines()) for file in MEDIA.glob("*.py")}
    assert {name: n for name, n in lengths.items() if n >= MAX_LINES} == {}
