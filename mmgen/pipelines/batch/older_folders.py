"""Output folders that mmgen before 2026-12-02 made as a batch file wrote them (`~/out` as a folder named `~`, `C:/x` as
one named `C:`, beside the batch file): where they are, and how to keep using them."""

from __future__ import annotations

import os
from pathlib import Path

from mmgen.media.notes import note
from mmgen.runtime import torchrun
from mmgen.written_paths import in_folder


def made_before(folder: Path, written: str) -> str:
    """For an `output_dir:` refused (made_folder_refusal) whose folder mmgen before 2026-12-02 made as written, beside
    the batch file (`C:/renders`: a folder named `C:`): how to keep using it."""
    if not (folder / written).is_dir():
        return ""
    return f"; {written} beside the batch file is its folder made by an older mmgen: to keep it, write output_dir: ./{written}"


def note_made_before(path: Path, line: int | None, folder: Path, written: str) -> None:
    """A `note:` where `output_dir: ~/out` (now the home folder's) is a folder named `~` beside the batch file holding this
    batch's manifest: mmgen before 2026-12-02 read `~` as a name, and its finished outputs are there."""
    from mmgen.pipelines.batch.manifest import Manifest

    literal = folder / written
    if os.path.expanduser(written) == written or not literal.is_dir() or torchrun.rank() != 0:
        return
    manifest = Manifest(literal)
    if any(manifest.ran_by(record, path) for record in manifest.history()):
        note(f"{path}:{line or 1}", f"note: output_dir: {written} is {in_folder(folder, written)} (~: your home folder); "
             f"this batch's outputs made by an older mmgen are in {literal}: to keep using them, write "
             f"output_dir: ./{written}", "an output folder named ~")
