"""The packages installed here that are older than mmgen declares it needs (its Requires-Dist lower bounds): pip
keeps an installed package that an earlier install put there, so an old PyAV or typer can sit under mmgen and fail
it with an AttributeError — `mmgen doctor` names them instead. Versions are compared in PEP 440's order by
`packaging` (the PyPA's own: pre-releases, epochs, local versions), not by a parser of mmgen's."""

from __future__ import annotations

import re
from importlib import metadata

from packaging.version import InvalidVersion, Version

BOUND = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9A-Za-z.]*)\s*$")
NO_VERSION = ""  # the installed version of a package whose install records none (a dist-info without METADATA)


def declared() -> list[str]:
    """The requirements installed mmgen declares (none where mmgen runs from a source tree, not installed)."""
    try:
        return metadata.requires("mmgen") or []
    except metadata.PackageNotFoundError:
        return []


def unmet(requirements: list[str]) -> list[tuple[str, str | None, str]]:
    """(package, installed version — None where it is not installed, NO_VERSION where its install records none —,
    the least version needed) for each requirement `name>=version` not met here. A requirement with a marker (an
    extra's: `; extra == "test"`) or of another form is skipped: only the lower bounds every install needs count."""
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
        if installed is None:  # a broken install: its dist-info folder holds no version
            found.append((name, NO_VERSION, needed))
        elif _older(installed, needed):
            found.append((name, installed, needed))
    return found


def _older(installed: str, needed: str) -> bool:
    """Whether `installed` comes before `needed` (`18.1rc1` before `18.1`; `2.13.0+cpu` meets `2.13`); a version
    that is no PEP 440 version counts as older: its install cannot be vouched for."""
    try:
        return Version(installed) < Version(needed)
    except InvalidVersion:
        return True
