"""Paths as a YAML file writes them (a batch file's inputs, output folder, models and adapters; a finetune config's),
read as their writer means them though no shell reads the file — relative ones from the file's folder, a leading
`~` or `~user` as that home folder, as MMGEN_CACHE's is (environment.py) — and, for one that names nothing, a hint
where it is written as another system writes paths, or as a shell would expand it.

`output_dir: ~/out` made a folder named `~` beside the batch file (where a later `rm -rf ~` is a disaster), and
`input: C:\\clips\\a.mp4` was `…/C:\\clips\\a.mp4 does not exist`, glued onto the batch file's folder.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path, PurePath

WINDOWS_HINT = "write paths with / ; \\ is not a folder separator here"
VARIABLES_HINT = "environment variables are not expanded in a YAML file"
TILDE_HINT = "a bare ~ is YAML's null: write '~' in quotes or ~/ for the home folder"
_DRIVE = re.compile(r"[A-Za-z]:")  # `C:`, a Windows drive
_VARIABLE = re.compile(r"\$\{[A-Za-z_]|\$([A-Za-z_]\w*)|%([A-Za-z_]\w*)%")  # ${HOME}, $HOME, %USERPROFILE%


def in_folder(folder: Path, written: str) -> Path:
    """The path `written` in a file in `folder` names: a leading `~`/`~user` is the home folder; a relative path is
    `folder`'s; `$VAR` stays as written (a file is no shell script)."""
    return folder / os.path.expanduser(written)


def glob_in_folder(written: str) -> str:
    """A glob pattern `written` in a file, with a leading `~`/`~user` as the home folder (its name escaped: a home
    folder's own name may hold glob characters); relative patterns stay relative (they match from the file's folder)."""
    head, sep, rest = written.partition("/")
    home = os.path.expanduser(head)
    return written if home == head else glob.escape(home) + sep + rest


def is_windows_path(written: str) -> bool:
    """Whether `written` holds a `\\` or starts with a drive (`C:`): a folder separator on Windows, not here."""
    return "\\" in written or _DRIVE.match(written) is not None


def drive_of(written: str) -> str | None:
    """The drive (`C:`) of `written` where it is a Windows path on a drive (`C:/x`, `C:\\x`, `C:`, or `C:x`, relative to
    drive C:'s current folder: a job's `name:` is refused as one, is_windows_path), else None. Here such a path is
    relative: `C:/x` is a folder `x` in a folder named `C:` (`12:30 take` is a name)."""
    return written[:2].upper() if _DRIVE.match(written) else None


def tilde_nulls(node, keys: tuple[str, ...]) -> dict[str, int]:
    """The `keys` of the top-level mapping `node` (yaml_files.compose_yaml's) whose value is written as a bare `~`,
    by their lines: YAML reads it as null, so `cache_dir: ~` silently meant the default, not the home folder a
    leading `~` is everywhere else in a file's paths (`null` stays null: a file may mean the default)."""
    pairs = node.value if getattr(node, "tag", "").endswith(":map") else ()
    return {key.value: key.start_mark.line + 1 for key, value in pairs
            if key.value in keys and value.tag.endswith(":null") and value.value == "~" and not value.style}


def windows_hint(written: str) -> str | None:
    """What to say of a path `written` as Windows writes it (is_windows_path), None for one that is not: a `\\`
    (WINDOWS_HINT), else its drive (`C:/a.mp4` said `write paths with /` to one who had)."""
    if "\\" in written:
        return WINDOWS_HINT
    drive = drive_of(written)
    return drive and f"{written!r} reads as drive {drive} on Windows; here it is a relative path"


def made_folder_refusal(written: str, folder: Path) -> str | None:
    """Why a folder mmgen would make where a file in `folder` says `written` (a batch file's `output_dir:`, a finetune
    config's `cache_dir:`) would not be the folder meant, as `'WRITTEN' …` to follow the key; None where it would be. A
    `\\` named a folder with the backslash in its name, a drive (drive_of) a folder named `C:`, a `$HOME` (anywhere in
    it: `outs/$USER`) a folder named `$HOME`, a `~nosuchuser` one named so: made as meant, or not at all."""
    if "\\" in written:
        return f"{written!r}: {WINDOWS_HINT}"
    if drive := drive_of(written):
        return (f"{written!r} reads as drive {drive} on Windows; here it would be a folder named {written.split('/')[0]} (write "
                "the folder as this system names it)")
    if no_home := unknown_home(written, folder):
        return f"{written!r}: {no_home} (write the home folder out, or ./{written} for a folder of that name)"
    if unmade_variable(written, folder):  # `$HOME/outs` made a folder `$HOME` (where `rm -rf $HOME` is a disaster)
        return f"{written!r}: {VARIABLES_HINT} (write the folder out, or ~ for the home folder)"
    return None


def made_name_refusal(name: str, output_dir: Path) -> str | None:
    """Why a batch job's `name:` (without ".mp4") as written would not name the file meant in `output_dir`, as words to
    follow it, or None. Read as `output_dir:` is, a leading `~` is a home folder, outside the output folder (`~/x`
    planned `OUT/~/x.mp4` without a word), a `~nosuchuser` folder is almost always a typo, and a `$VAR` is not expanded:
    refused, unless what it would make is there already (an older mmgen's, its outputs' names and seeds as written).
    (A name made from an input's, `{stem}`, is that file's name as it is: not read so.)"""
    head = name.split("/")[0]
    if head.startswith("~") and not _there(output_dir, Path(name).parts, 0, name=True):
        if (home := os.path.expanduser(name)) != name:
            return f" reads as {home} (~: the home folder), outside the output folder (write ./{name} for a folder named {head} in it)"
        if "/" in name:
            return f": {_no_home(head)} (write ./{name} for a folder of that name)"
    if unmade_variable(name, output_dir, name=True):
        return f": {VARIABLES_HINT} ({'{stem} takes no $' if '${stem}' in name else 'write the name out'})"
    return None


def unknown_home(written: str, folder: Path) -> str | None:
    """Why a leading `~name` of `written`, a folder mmgen would make in `folder`, is no home folder, or None: where there
    is no user `name`, a shell and in_folder leave it as written, a folder named `~nosuchuser`, almost always a typo.
    A folder of that name already there (made on purpose, or by an earlier run) is taken as written."""
    head = written.split("/")[0]
    if not head.startswith("~") or os.path.expanduser(head) != head or (folder / head).is_dir():
        return None
    return _no_home(head)


def _no_home(head: str) -> str:
    return f"there is no {f'user {head[1:]}' if head != '~' else 'home folder'} here, so {head} would be a folder named {head}"


def unmade_variable(written: str, folder: Path, *, name: bool = False) -> bool:
    """Whether `written`, a path mmgen would make from `folder`, holds a variable (`$USER`, `${USER}`, `%USERPROFILE%`:
    names_variable) in a part not there yet: no shell reads the file, so `outs/$USER` would be a folder named `$USER`. A part already
    there (made on purpose, or by an older mmgen) is taken as written. `name`: `written` is a batch job's `name:`."""
    if "$" not in written and "%" not in written:  # most paths: every job's name of a 10,000-job file is asked
        return False
    parts = Path(os.path.expanduser(written)).parts
    last = max((i for i, part in enumerate(parts) if names_variable(part)), default=None)
    return last is not None and not _there(folder, parts, last, name=name)


def names_variable(written: str) -> bool:
    """Whether `written` reads as an environment variable that a shell (or Windows' cmd) would put in its place:
    `${NAME}`; `$NAME` or `%NAME%` where NAME is written in capitals, as variables are (`$HOME`, `%USERPROFILE%`), or
    is set here. Any other `$` or `%` is the name's own — `ca$h_money`, `AT$T_ad`, `a$$b`, `50%off_and_20%more`
    were refused as variables, which they read as to no one."""
    for found in _VARIABLE.finditer(written):
        name = found.group(1) or found.group(2)
        if name is None or name.isupper() or name in os.environ:
            return True
    return False


def _there(folder: Path, parts: tuple[str, ...], index: int, *, name: bool = False) -> bool:
    """Whether the folder `parts[index]` (of a path from `folder`, cut there) is there already. `name`: the parts are a
    batch job's `name:`, whose last one starts its files' names (`take` → take_0000.mp4) and `{stem}` any input's."""
    if not name:
        return folder.joinpath(*parts[:index + 1]).is_dir()
    pattern = glob.escape(parts[index]).replace("{stem}", "*") + ("*" if index == len(parts) - 1 else "")
    return any(folder.joinpath(*parts[:index]).glob(re.sub(r"\*+", "*", pattern)))


def missing_hint(path: str | os.PathLike) -> str:
    """` (HINT)` for a `path` that names nothing, where the part of it past its last existing folder is written as
    Windows writes paths (windows_hint) or names an environment variable (VARIABLES_HINT); "" otherwise."""
    path = Path(path)
    if os.path.lexists(path):
        return ""
    there = path.parent
    while not os.path.lexists(there) and there != there.parent:
        there = there.parent
    rest = str(PurePath(*path.parts[len(there.parts):]))  # what was written past what exists
    if hint := windows_hint(rest):
        return f" ({hint})"
    return f" ({VARIABLES_HINT})" if names_variable(rest) else ""
