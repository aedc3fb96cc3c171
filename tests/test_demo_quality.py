"""benchmarks/demo_quality.py measures any model trained on the flash-and-tone world through the real pipelines.

The model here is untrained (tiny, random), so the scores themselves mean nothing; what is checked is that the
benchmark writes its own held-out clips at the model's format, runs the soundtrack and generate pipelines,
counts the model calls that really happened, and reports every score next to its chance level.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from mmgen.models import build_model
from mmgen.models.config import MMUNetConfig
from mmgen.weights.checkpoint import save_model

ROOT = Path(__file__).resolve().parent.parent


def _benchmark():
    """benchmarks/ is a folder of scripts, not a package: load the script as a module (once)."""
    if "demo_quality" not in sys.modules:
        spec = importlib.util.spec_from_file_location("demo_quality", ROOT / "benchmarks" / "demo_quality.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["demo_quality"] = module  # its dataclasses look their module up while being defined
        spec.loader.exec_module(module)
    return sys.modules["demo_quality"]


@pytest.fixture(scope="module")
def world_model(tmp_path_factory) -> Path:
    """A small random mm-unet in the demo world's format: 8 frames of 16×16 at 10 fps, 0.8 s of 8 kHz."""
    config = MMUNetConfig(
        video_size=(8, 3, 16, 16), audio_size=(1, 6400), model_channels=32, channel_mult=(1, 2),
        num_res_blocks=1, cross_attention_resolutions=(2,), cross_attention_windows=(1,),
        cross_attention_shift=False, video_attention_resolutions=(2,), num_head_channels=32,
        fps=10.0, sample_rate=8000,
    )
    torch.manual_seed(0)
    model = build_model("mm-unet", config)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)  # the zero-initialised output layers, so samples depend on the input
    path = tmp_path_factory.mktemp("model") / "world.safetensors"
    save_model(path, model, "mm-unet", config)
    return path


def test_a_user_measures_a_world_model_against_chance(world_model, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    report = _benchmark().main([
        "--model", str(world_model), "--clips", "3", "--samples", "2", "--batch-size", "2",
        "--settings", "ddim:3", "--json", str(out),
    ])

    v2a = report["video_to_audio"]["ddim:3"]
    assert v2a["n"] == 3 and v2a["sampler"] == "ddim" and v2a["steps"] == 3
    assert v2a["model_calls_per_clip"] == 3  # one 8-frame window per clip, one call per step
    for key in ("f1", "chance_f1", "pitch_accuracy", "chance_pitch_accuracy"):
        assert 0.0 <= v2a[key] <= 1.0
    uncond = report["unconditional"]["ddim:3"]
    assert uncond["n"] == 2 and uncond["model_calls_per_clip"] == 3
    for key in ("well_formed", "flash_burst_f1", "chance_flash_burst_f1", "colour_pitch"):
        assert 0.0 <= uncond[key] <= 1.0

    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    printed = capsys.readouterr().out
    assert "Video-to-audio" in printed and "| ddim:3 | 3 |" in printed


def test_the_papers_gradient_guidance_is_measured_on_a_subset(world_model, tmp_path):
    report = _benchmark().main([
        "--model", str(world_model), "--clips", "0", "--samples", "0", "--settings", "",
        "--paper-subset", "2", "--paper-steps", "4",
    ])
    paper = report["video_to_audio"]["paper (subset)"]
    assert paper["n"] == 2 and paper["sampler"] == "ddpm" and paper["guidance"] == "gradient"
    assert paper["model_calls_per_clip"] == 4


def test_a_setting_that_is_not_a_sampler_is_refused():
    with pytest.raises(SystemExit, match="SAMPLER:STEPS"):
        _benchmark().Setting.parse("ddim25")
