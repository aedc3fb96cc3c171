"""A data file and the record describing it (a cached model and its json, a registered adapter), as last kept: a
replacement commits both in one `files.kept_together`, the old record retired first and the new one written last,
so a reader finds where the pair it should read is while a replacement is in flight or was killed outright
(`last_kept`), looks once more where a replacement came between its reads (`looked_again`), and a lock's holder puts
a killed replacement's pair back (`put_back_kept`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

from mmgen import temporaries
from mmgen.files import put_back

T = TypeVar("T")


def last_kept(record: Path, data: Path, holds: Callable[[Path, Path], bool]) -> tuple[Path, Path] | None:
    """Where the last state a commit group kept is — a `data` file and the `record` describing it, committed in one
    `kept_together`, the old record retired first and the new one written last, so that a record at its name means
    a complete state: `record` and `data` themselves while the record is there. While it is not, a replacement is
    in flight, or was killed outright (kill -9) in between: then it is the record that replacement kept aside
    (written, for a new one about to land) with the data that record describes (`holds(record, data)`: an OSError
    is False) — still at `data`, or kept aside beside it by the same process. None: nothing is kept (never
    committed, or removed). Nothing is changed: every reader sees the old state or the new one, never neither."""
    for _ in range(2):  # the second time: the replacement ended as we looked (its kept-aside files gone)
        if os.path.lexists(record):
            return record, data
        for kept, process in temporaries.named_after(record):
            for candidate in [data, *(path for path, by in temporaries.named_after(data) if by == process)]:
                with suppress(OSError):  # e.g. a kept-aside file its replacement let go of as we read it
                    if holds(kept, candidate):
                        return kept, candidate
    return None


def looked_again(look: Callable[[], T], whole: Callable[[T], bool]) -> T:
    """What `look()` finds of a record and the file it describes (each read as last kept, `last_kept`), looked at
    once more where the first look is not `whole` — the record and file not alike: a replacement committed both
    between its reads (`kept_together`, another process's), which is no damage. The second look is one state, old
    or new; what it finds then is what is said."""
    first = look()
    return first if whole(first) else look()


def put_back_kept(record: Path, data: Path, holds: Callable[[Path, Path], bool]) -> bool:
    """Put the last kept state (`last_kept`) under its names again where a process killed half way through replacing
    it (mmgen.temporaries.left_behind) left it aside; True if it did. The caller keeps other writers out (a lock),
    and removes what else the killed process left afterwards (mmgen.temporaries.remove_leftovers)."""
    found = last_kept(record, data, holds)
    if found is None or found[0] == record or not temporaries.left_behind(found[0]):
        return False
    kept, candidate = found
    if candidate != data:
        put_back(candidate, data)
    put_back(kept, record)
    return True
