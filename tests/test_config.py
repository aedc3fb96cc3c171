"""Configs parse strictly: a typo or a wrong type names the file and the field."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from mmgen.config import from_dict, to_dict
from mmgen.errors import ConfigError


@dataclass(frozen=True)
class Weights:
    urls: tuple[str, ...] = ()
    sha256: str | None = None


@dataclass(frozen=True)
class Entry:
    arch: Literal["mm-unet", "sr-unet"]
    weights: Weights = field(default_factory=Weights)
    size: tuple[int, int] = (1, 2)
    scale: float = 1.0


def test_valid_mapping_round_trips():
    entry = from_dict(Entry, {"arch": "mm-unet", "weights": {"urls": ["a"]}, "size": [3, 4], "scale": 2})
    assert entry == Entry("mm-unet", Weights(("a",)), (3, 4), 2.0)
    assert from_dict(Entry, to_dict(entry)) == entry


@pytest.mark.parametrize(
    "data, message",
    [
        ({"arch": "x"}, "arch: 'x' is not one of"),
        ({}, "arch: required field is missing"),
        ({"arch": "mm-unet", "colour": 1}, "unknown key 'colour'"),
        ({"arch": "mm-unet", "weights": {"urls": "a"}}, "weights.urls: expected a list"),
        ({"arch": "mm-unet", "size": [1]}, "size: expected 2 items"),
        ({"arch": "mm-unet", "scale": True}, "scale: expected a number"),
        ({"arch": "mm-unet", "weights": {"sha256": 3}}, "weights.sha256:"),
    ],
)
def test_bad_fields_are_named(data, message):
    with pytest.raises(ConfigError, match="^models/x.yaml: " + message.replace("(", r"\(")):
        from_dict(Entry, data, "models/x.yaml")


def test_a_relative_from_file_is_kept_absolute_so_resume_works_from_any_folder(tmp_path, monkeypatch):
    """`finetune clips -o run --from base/model.safetensors`, later `cd elsewhere; finetune ../clips -o ../run
    --resume`: the run's config.yaml must name the base wherever the command runs (a LoRA run needs it)."""
    from mmgen.train.config import run_config

    monkeypatch.chdir(tmp_path)
    assert run_config(tmp_path / "run", flags={"init": "base/model.safetensors"}).init == str(
        tmp_path / "base" / "model.safetensors"
    )
    assert run_config(tmp_path / "run", flags={"init": "demo"}).init == "demo"  # a registry name stays a name
