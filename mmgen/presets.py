"""Where the YAML presets live: `presets/` in a source checkout, `mmgen/presets/` inside an installed wheel
(pyproject force-includes the top-level folder there)."""

from __future__ import annotations

import os
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


def training_recipes() -> list[str]:
    """The packaged fine-tuning recipes by name (`mmgen finetune --config demo-train`): the YAML files at the top of
    the presets folder, the example batch file aside."""
    return sorted(p.stem for p in preset_dir().glob("*.yaml") if p != batch_example())


def config_path(given: str | os.PathLike[str]) -> Path:
    """`finetune --config`'s file: a path is read as given; a bare name (no folder, not even `./`, no .yaml suffix)
    that names no file here is a packaged recipe (training_recipes), so `--config demo-train` works from an installed
    wheel as from a checkout, and from a folder holding a run made with `-o demo-train`. An unknown bare name is
    refused, naming the recipes there are."""
    from mmgen.errors import UsageError

    text = os.fspath(given)  # the text as typed: Path("./demo-train") would read as the bare name
    path = Path(text)
    separators = {"/", os.sep, os.altsep or "/"}
    named_file = os.path.lexists(path) and not os.path.isdir(path)
    if any(s in text for s in separators) or path.suffix.lower() in (".yaml", ".yml") or named_file:
        return path
    recipes = training_recipes()
    if path.name in recipes:
        return preset_dir() / f"{path.name}.yaml"
    what = "a folder, not a file" if os.path.isdir(path) else "no such file"
    raise UsageError(f"--config {text}: {what}, nor a packaged recipe", hint=f"recipes: {', '.join(recipes)}")
