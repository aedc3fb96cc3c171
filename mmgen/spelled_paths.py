"""A path found under another Unicode form of its name, or of a folder's on its way: NFC `café` and NFD `café` look
alike and a macOS or Windows disk holds them as one file or folder, but here they are two. A batch's output folder
copied back from a Mac comes back NFD: `output_dir: café` (or `-o café`), typed NFC, made a second folder beside it
and ran every job again there; its jobs' files so renamed were written again beside them; an input so renamed was
`… does not exist`, showing a path that looked right."""

from __future__ import annotations

import os
import unicodedata
from contextlib import suppress
from pathlib import Path


def as_found(path: Path) -> Path:
    """`path`, or where it is with its name or its folders' (those not there as spelled) in another Unicode form;
    `path` itself where nothing is there in any form (a folder still to be made). One path: SpelledPaths, for many."""
    return SpelledPaths().as_found(path)


def unicode_form(name: str) -> str:
    """The Unicode form `name` is written in: NFC, NFD, or mixed forms."""
    return next((form for form in ("NFC", "NFD") if unicodedata.is_normalized(form, name)), "mixed forms")


class SpelledPaths:
    """Finds paths under another Unicode form, listing each folder once (its names by their NFC form), so that a batch's
    100,000 outputs, plainly not there, cost a listing per folder and no system call each."""

    def __init__(self) -> None:
        self._forms: dict[str, dict[str, list[str]] | None] = {}  # by folder: its names by NFC form; None: not listed
        self._found: dict[str, str] = {}  # by folder as spelled: where it is found

    def as_found(self, path: Path, below: Path | None = None) -> Path:
        """`path`, or where it is with its name or its folders' (those not there as spelled, past `below`: a folder
        taken as spelled, which `path` is in) in another Unicode form; where it would go in its folder so found; `path`
        itself where nothing is there in any form."""
        folder, name = os.path.split(str(path))
        if not name:  # a root
            return path
        top = len(below.parts) if below is not None else 0
        found = self._folder(folder, top)
        found_name = self._name_in(found, name)
        return path if found == folder and found_name == name else Path(os.path.join(found, found_name))

    def respelled(self, path: Path, below: Path | None = None) -> Path | None:
        """`as_found(path, below)` where that is not `path` as spelled; None where it is (there so, or nowhere)."""
        found = self.as_found(path, below)
        return None if found == path else found

    def _folder(self, folder: str, top: int) -> str:
        """Where the folder `folder` is: as spelled where something is there so (or within the first `top` parts of its
        path); else with its name or its folders' in another Unicode form; as spelled where it is nowhere."""
        if folder not in self._found:
            parent, name = os.path.split(folder)
            if not name or len(Path(folder).parts) <= top or os.path.lexists(folder):
                self._found[folder] = folder
            else:
                above = self._folder(parent, top)
                self._found[folder] = os.path.join(above, self._name_in(above, name))
        return self._found[folder]

    def _name_in(self, folder: str, name: str) -> str:
        """`name` as it is in `folder`: as spelled where it is there so, or nowhere in any form; else the name listed
        in another Unicode form — unless the disk takes that spelling as the same file (macOS: one name, as spelled)."""
        forms = self._listed(folder).get(unicodedata.normalize("NFC", name), [])
        other = next((each for each in forms if each != name), None)
        if other is None or name in forms or os.path.lexists(os.path.join(folder, name)):
            return name
        return other

    def _listed(self, folder: str) -> dict[str, list[str]]:
        """The names in `folder` by their NFC form, listed once (none where it cannot be listed)."""
        if folder not in self._forms:
            self._forms[folder] = None
            with suppress(OSError):
                forms: dict[str, list[str]] = {}
                for each in sorted(os.listdir(folder or os.curdir)):
                    forms.setdefault(unicodedata.normalize("NFC", each), []).append(each)
                self._forms[folder] = forms
        return self._forms[folder] or {}
