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


def training_recipes() -> list[str]:
    """The packaged fine-tuning recipes by name (`mmgen finetune --config demo-train`): the YAML files at the top of
    the presets folder, the example batch file aside."""
    return sorted(p.stem for p in preset_dir().glob("*.yaml") if p != batch_example())


def config_path(given: Path) -> Path:
    """`finetune --config`'s file: a path is read as given; a bare name (no folder, no .yaml suffix) that names no
    file here is a packaged recipe (training_recipes), so `--config demo-train` works from an installed wheel as from
    a checkout. An unknown bare name is refused, naming the recipes there are."""
    import os

    from mmgen.errors import UsageError

    if len(given.parts) != 1 or given.suffix.lower() in (".yaml", ".yml") or os.path.lexists(given):
        return given
    recipes = training_recipes()
    if given.name in recipes:
        return preset_dir() / f"{given.name}.yaml"
    raise UsageError(f"--config {given}: no such file, nor a packaged recipe", hint=f"recipes: {', '.join(recipes)}")
