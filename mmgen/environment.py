"""mmgen's environment variables, read in one place: a value that means nothing is a UsageError (exit 2) naming
the variable and what it takes — `MMGEN_OFFLINE=maybe` was taken for on, `MMGEN_DEBUG=banana` likewise, and
`MMGEN_MAX_MEMORY=banana` was found only by the upsampler, after the whole sampling run. `check` reads them all
before a command starts; `mmgen doctor`, where a user goes to find out what is wrong, lists them all instead
(`problems`) and reads the rest of its report as if they were unset (`as_unset`)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from mmgen.errors import UsageError

OFFLINE, DEBUG, CACHE, PRESETS, MAX_MEMORY, CPU_BF16 = (
    "MMGEN_OFFLINE", "MMGEN_DEBUG", "MMGEN_CACHE", "MMGEN_PRESETS", "MMGEN_MAX_MEMORY", "MMGEN_CPU_BF16",
)  # fmt: skip
_FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", re.IGNORECASE)
_meaningless_unset: ContextVar[bool] = ContextVar("meaningless_unset", default=False)


@contextmanager
def as_unset() -> Iterator[None]:
    """Inside the block a value that means nothing reads as unset, instead of a UsageError: for what must answer
    anyway (doctor's report, the --debug switch asked while an error is reported)."""
    token = _meaningless_unset.set(True)
    try:
        yield
    finally:
        _meaningless_unset.reset(token)


def _meaningless(message: str) -> None:
    """The UsageError for a value that means nothing; None (unset) inside `as_unset`."""
    if not _meaningless_unset.get():
        raise UsageError(message)


def flag(name: str) -> bool | None:
    """The switch `name`: 1 or 0 (or true/false, yes/no, on/off, in any case); None when unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return _FLAGS[value.lower()]
    except KeyError:
        return _meaningless(f"{name}={value!r}: takes 1 or 0 (or true/false, yes/no, on/off)")


def memory_limit() -> int | None:
    """MMGEN_MAX_MEMORY in bytes ("6G", "512M", "1.5GiB", a number of bytes); None when unset or empty."""
    value = os.environ.get(MAX_MEMORY, "").strip()
    if not value:
        return None
    match = _SIZE.fullmatch(value)
    if match is None:
        return _meaningless(f"{MAX_MEMORY}={value!r}: takes a size, e.g. 6G or 512M (bytes, or K, M, G, T)")
    return int(float(match.group(1)) * 1024 ** "_KMGT".index(match.group(2).upper() or "_"))


def folder(name: str) -> Path | None:
    """The folder the variable `name` gives, as an absolute path; None when unset or empty. A leading `~` is the home
    folder (a shell leaves it as it is inside quotes, and so do .env files and service managers: `MMGEN_CACHE='~/x'`
    made a folder named `~` in the current one); a relative path is taken from the current folder, now."""
    value = os.environ.get(name, "")
    return Path(os.path.expanduser(value)).absolute() if value else None


def presets_folder() -> Path | None:
    """MMGEN_PRESETS, the folder whose models/ holds the user's registry entries; None when unset. A folder not
    made yet holds no entries (as the user config folder's models/ before the first one is written); a file where
    the folder should be is refused."""
    given = folder(PRESETS)
    if given is None:
        return None
    for path in (given, given / "models"):
        if path.exists() and not path.is_dir():
            return _meaningless(f"{PRESETS}={os.environ[PRESETS]}: {path} is a file; it takes a folder (registry "
                                "entries in its models/ folder)")
    return given


def problems() -> dict[str, UsageError]:
    """Each of mmgen's variables whose value means nothing, by name, with the UsageError it is refused with (inside
    `as_unset` too)."""
    reads = {OFFLINE: lambda: flag(OFFLINE), DEBUG: lambda: flag(DEBUG), CPU_BF16: lambda: flag(CPU_BF16),
             MAX_MEMORY: memory_limit, PRESETS: presets_folder}
    found = {}
    token = _meaningless_unset.set(False)
    try:
        for name, read in reads.items():
            try:
                read()
            except UsageError as e:
                found[name] = e
    finally:
        _meaningless_unset.reset(token)
    return found


def check() -> None:
    """UsageError for the first of mmgen's variables whose value means nothing: said before any work."""
    if found := problems():
        raise next(iter(found.values()))
