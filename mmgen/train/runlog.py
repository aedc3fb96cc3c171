"""RUN/log.jsonl: one JSON object per line, each with an "event" (data, start, train, probe, sample, checkpoint,
diverged, done) and the step it belongs to. Lines are flushed as written, so a crashed run keeps its history. A
`start` line, at each start and resume, says the device and precision the lines after it were trained in (logs of
mmgen before 2026-12 have none). Strict JSON: a number that is not finite (NaN, ±inf) is written as null."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmgen.config import parse_json
from mmgen.disk_failures import writing
from mmgen.errors import ConfigError
from mmgen.files import write_text
from mmgen.output_folders import check_folders


class RunLog:
    def __init__(self, path: Path):
        self.path = path

    def write(self, event: str, step: int, **fields: Any) -> None:
        line = json.dumps(_finite({"event": event, "step": step, **fields}), allow_nan=False) + "\n"
        check_folders(self.path)  # appended in the run's folder as it was taken (output_folders.same_folders)
        with writing(self.path), open(self.path, "a", encoding="utf-8") as f:
            f.write(line)

    def clear(self) -> None:
        """Start the log afresh (a new run in a folder whose earlier run stopped before its first checkpoint)."""
        self.path.unlink(missing_ok=True)

    def rewind(self, step: int) -> None:
        """Drop lines logged after `step` (a run killed after its last checkpoint), so a resumed run's log
        reads as one uninterrupted history. Written to a temporary file, then swapped in."""
        if not self.path.exists():
            return
        kept = [
            line
            for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            if _step_of(line) <= step
        ]
        write_text(self.path, "".join(kept))


def _finite(value: Any) -> Any:
    """`value` with every non-finite float inside it replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _step_of(line: str) -> int:
    try:
        return int(parse_json(line, "run log").get("step", 0))
    except (ConfigError, AttributeError, TypeError, ValueError):
        return 1 << 62  # a half-written last line: drop it


def read_log(path: Path) -> list[dict[str, Any]]:
    """All events of a run's log (for tests and tools)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def first_event(path: Path, event: str) -> dict[str, Any] | None:
    """The first `event` line of a run's log (None if there is none); lines that do not read are passed over."""
    return next(_events(path, event), None)


def last_event(path: Path, event: str) -> dict[str, Any] | None:
    """The last `event` line of a run's log (None if there is none); lines that do not read are passed over."""
    found = None
    for found in _events(path, event):  # noqa: B007 (the last one is kept)
        pass
    return found


def _events(path: Path, event: str) -> Iterator[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        try:
            found = parse_json(line, str(path), "run log")
        except ConfigError:
            continue
        if isinstance(found, dict) and found.get("event") == event:
            yield found
