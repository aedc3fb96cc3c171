"""A folder found under another Unicode form of its name: NFC `café` and NFD `café` look alike and a macOS or Windows
disk holds them as one folder, but here they are two. A batch's output folder copied back from a Mac comes back NFD;
`output_dir: café` (or `-o café`), typed NFC, made a second folder beside it and ran every job again there."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path


def as_found(path: Path) -> Path:
    """`path`, or where it is with its name or its folders' (those not there as spelled) in another Unicode form;
    `path` itself where nothing is there in any form (a folder still to be made)."""
    if os.path.lexists(path) or path.parent == path:
        return path
    parent = as_found(path.parent)
    spelled = parent / path.name
    if os.path.lexists(spelled):
        return spelled
    wanted = unicodedata.normalize("NFC", path.name)
    try:
        names = sorted(os.listdir(parent))
    except OSError:  # its folder is not there either, or cannot be listed: as spelled
        return spelled
    return parent / next((name for name in names if unicodedata.normalize("NFC", name) == wanted), path.name)
