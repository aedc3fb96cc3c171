"""Where the YAML presets live: `presets/` in a source checkout, `mmgen/presets/` inside an installed wheel
(pyproject force-includes the top-level folder there)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def preset_dir() -> Path:
    """The packaged presets folder (holding models/ and sampling/)."""
    installed = _PACKAGE / "presets"
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / "presets"


def batch_example() -> Path:
    """The annotated example batch file (`mmgen batch --example` prints it)."""
    return preset_dir() / "batch-example.yaml"
