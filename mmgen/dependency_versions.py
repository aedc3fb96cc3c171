"""The packages installed here that are older than mmgen declares it needs (its Requires-Dist lower bounds): pip
keeps an installed package that an earlier install put there, so an old PyAV or typer can sit under mmgen and fail
it with an AttributeError — `mmgen doctor` names them instead. Standard library only: the bounds are release
numbers (`av>=18.1`), compared as such (packaging is not a dependency of mmgen's)."""

from __future__ import annotations

import re
from importlib import metadata

BOUND = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9A-Za-z.]*)\s*$")


def declared() -> list[str]:
    """The requirements installed mmgen declares (none where mmgen runs from a source tree, not installed)."""
    try:
        return metadata.requires("mmgen") or []
    except metadata.PackageNotFoundError:
        return []


def unmet(requirements: list[str]) -> list[tuple[str, str | None, str]]:
    """(package, installed version or None where it is not installed, the least version needed) for each
    requirement `name>=version` not met here. A requirement with a marker (an extra's: `; extra == "test"`) or
    of another form is skipped: only the lower bounds of what every install needs are checked."""
    found = []
    for requirement in requirements:
        bound = BOUND.match(requirement)
        if bound is None:
            continue
        name, needed = bound.groups()
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            found.append((name, None, needed))
            continue
        if _older(installed, needed):
            found.append((name, installed, needed))
    return found


def _older(installed: str, needed: str) -> bool:
    return _release(installed) < _release(needed)


def _release(version: str) -> tuple[int, ...]:
    """`2.13.0+cpu` → (2, 13, 0): the leading numbers, trailing zeros dropped (so 13.8 == 13.8.0)."""
    release = re.match(r"\d+(?:\.\d+)*", version.strip())
    numbers = [int(part) for part in release.group().split(".")] if release else []
    while numbers and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)
