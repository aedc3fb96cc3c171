"""The packages installed here that are older than mmgen declares it needs (its Requires-Dist lower bounds): pip
keeps an installed package that an earlier install put there, so an old PyAV or typer can sit under mmgen and fail
it with an AttributeError — `mmgen doctor` names them instead. Standard library only: versions are compared by
PEP 440's order of epoch, release, pre-, post- and dev-release (packaging is not a dependency of mmgen's)."""

from __future__ import annotations

import math
import re
from importlib import metadata

BOUND = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9A-Za-z.]*)\s*$")
VERSION = re.compile(r"v?(?:(\d+)!)?(\d+(?:\.\d+)*)"  # epoch, release
                     r"(?:[-_.]?(a|alpha|b|beta|c|rc|pre|preview)[-_.]?(\d*))?"  # pre-release
                     r"(?:-(\d+)|[-_.]?(?:post|rev|r)[-_.]?(\d*))?"  # post-release
                     r"(?:[-_.]?(dev)[-_.]?(\d*))?", re.IGNORECASE)
NO_VERSION = ""  # the installed version of a package whose install records none (a dist-info without METADATA)
PRE = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}


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
    return _order(installed) < _order(needed)


def _order(version: str) -> tuple:
    """`1!2.0rc1.post2.dev3+cpu` → what PEP 440 orders it by: epoch, release (trailing zeros dropped, so 13.8 ==
    13.8.0), pre-release (a < b < rc < the release; a bare dev release before all), post-release, dev release."""
    parts = VERSION.match(version.strip())
    if parts is None:
        return (0, (), (3, 0), -1, math.inf)
    epoch, release, pre, pre_n, post_dash, post_n, dev, dev_n = parts.groups()
    numbers = [int(part) for part in release.split(".")]
    while numbers and numbers[-1] == 0:
        numbers.pop()
    post = post_dash if post_dash is not None else post_n
    if pre:
        pre_order = (PRE[pre.lower()], int(pre_n or 0))
    else:  # 2.0.dev1 comes before 2.0a1; 2.0.post1.dev1 after 2.0
        pre_order = (-1, 0) if dev and post is None else (3, 0)
    return (int(epoch or 0), tuple(numbers), pre_order, -1 if post is None else int(post or 0),
            math.inf if dev is None else int(dev_n or 0))
