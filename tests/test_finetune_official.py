"""Fine-tuning an official checkpoint keeps the official layout: a user imports the paper's weights (here the
fixture-size stand-in for Landscape.pt: the official tiny model's constructor arguments and state dict), fine-tunes
them with `--from`, and gets back a state dict with exactly the official key names and shapes, which loads into
the official-layout model with strict=True."""

from __future__ import annotations

from dataclasses import fields

import torch
import yaml
from conftest import OFFICIAL, official_json
from finetune_clips import write_clip_folder
from mmgen_cli import mmgen_env, run_mmgen
from safetensors.torch import load_file

from mmgen.cli import run
from mmgen.models import build_model
from mmgen.models.config import MMUNetConfig

# The fixture fixes the network, not the clip timing: 8 frames and 3,200 samples are read here as 0.4 s at 20 fps
# and 8 kHz (a rate AAC stores, so the result also previews and generates).
TIMING = {"fps": 20.0, "sample_rate": 8000}


def official_fields() -> dict:
    """The official tiny model's constructor arguments that are MMUNetConfig fields, plus the clip timing."""
    kwargs = official_json("tiny_mmunet.json")["constructor_kwargs"]
    return {**{f.name: kwargs[f.name] for f in fields(MMUNetConfig) if f.name in kwargs}, **TIMING}


def test_a_fine_tuned_official_model_keeps_the_official_key_names(tmp_path, monkeypatch):
    official = load_file(OFFICIAL / "tiny_mmunet.safetensors")
    checkpoint = tmp_path / "Tiny.pt"
    torch.save(official, checkpoint)  # a plain state dict, as the released .pt files are
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(official_fields()))
    env = mmgen_env(tmp_path, OMP_NUM_THREADS="1")
    for key, value in env.items():  # the import runs in this process, into the cache the run below uses
        monkeypatch.setenv(key, value)
    imported = ["models", "import", str(checkpoint), "--name", "tiny-official", "--arch", "mm-unet"]
    assert run([*imported, "--config", str(tmp_path / "tiny.yaml")]) == 0

    data = tmp_path / "clips"
    write_clip_folder(data, good=2, seconds=1.2)
    run_dir = tmp_path / "run"
    tuned = run_mmgen(
        "finetune", data, "--from", "tiny-official", "-o", run_dir, "--steps", 2, "--batch-size", 2,
        "--lr", 1e-3, "--ema-decay", 0.5, "--sample-every", 0, env=env, timeout=300,
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    assert "fine-tuning tiny-official" in tuned.stderr

    for path in (
        run_dir / "model.safetensors",
        run_dir / "checkpoints" / "step-0000002" / "model.safetensors",
    ):
        state = load_file(path)
        assert sorted(state) == sorted(official)  # the official key list, nothing renamed, added or dropped
        assert all(state[k].shape == official[k].shape for k in official)
        official_layout = build_model("mm-unet", MMUNetConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                                for k, v in official_fields().items()}))  # fmt: skip
        official_layout.load_state_dict(state, strict=True)
        assert any(not torch.equal(state[k], official[k]) for k in official)  # it did train
