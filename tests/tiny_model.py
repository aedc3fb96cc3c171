"""A tiny randomly initialised mm-unet saved the way mmgen saves models, so tests can run the real pipelines
and the real `mmgen` command with `-m path/to/tiny.safetensors` in seconds.

It keeps the released clip format — 16 frames at 10 fps and 1.6 s of 16 kHz audio (25,600 samples) — with
16×16 frames and a narrow network (~1.7 M parameters, ~0.4 s per forward on one CPU thread). Its output is
noise-like, but every part of the network contributes: the zero-initialised output convolutions get small
random weights, so the samples depend on the inputs, the seed and the RS-MMA shifts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from mmgen.models import build_model
from mmgen.models.config import MMUNetConfig, SRUNetConfig
from mmgen.weights.checkpoint import save_model

TINY_FIELDS = {
    "video_size": (16, 3, 16, 16),  # (F, C, H, W)
    "audio_size": (1, 25600),  # (C, L): 1.6 s at 16 kHz
    "model_channels": 32,
    "channel_mult": (1, 2, 2),  # ds 1, 2, 4: the middle block's audio self-attention sees 1,600 tokens
    "num_res_blocks": 1,
    "num_heads": 2,
    "num_head_channels": 32,
    "fps": 10.0,
    "sample_rate": 16000,
}


# A tiny 16→32 per-frame upsampler (the official SR U-Net's layout, 0.36 M parameters).
TINY_SR_FIELDS = {
    "image_size": 32,
    "small_size": 16,
    "model_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": (1, 1),
    "attention_resolutions": (2,),
}


def tiny_config() -> MMUNetConfig:
    return MMUNetConfig(**TINY_FIELDS)


def tiny_mmunet(seed: int = 0) -> torch.nn.Module:
    return _random_model("mm-unet", tiny_config(), seed)


def _random_model(arch: str, config, seed: int) -> torch.nn.Module:
    """Default init from `seed`, then small random weights where the architecture starts at zero."""
    torch.manual_seed(seed)
    model = build_model(arch, config)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    return model.eval()


def save_tiny_model(path: Path, seed: int = 0, **fields) -> Path:
    """Write the tiny model as an mmgen .safetensors (config in its metadata) and return the path; `fields` replace
    TINY_FIELDS' (e.g. another sample_rate with its audio_size)."""
    config = MMUNetConfig(**{**TINY_FIELDS, **fields})
    save_model(path, _random_model("mm-unet", config, seed), "mm-unet", config, {"source": "tests/tiny_model.py"})
    return path


def save_tiny_upsampler(path: Path, seed: int = 0) -> Path:
    """Write the tiny 16→32 upsampler as an mmgen .safetensors and return the path."""
    config = SRUNetConfig(**TINY_SR_FIELDS)
    model = _random_model("sr-unet", config, seed)
    save_model(path, model, "sr-unet", config, {"source": "tests/tiny_model.py"})
    return path


def register_tiny_with_upsampler(root: Path) -> None:
    """User presets under `root`/presets/models (mmgen_env(root)'s): `tiny`, whose entry names `upsampler:
    tiny-sr`, and `tiny-sr` — the way the paper's `landscape` names `landscape-sr` — both downloadable from local
    files, sha256-checked."""
    models = root / "presets" / "models"
    models.mkdir(parents=True, exist_ok=True)
    base, sr = save_tiny_model(root / "tiny.safetensors"), save_tiny_upsampler(root / "tiny_sr.safetensors")
    for name, arch, path, extra in [("tiny", "mm-unet", base, "upsampler: tiny-sr\n"), ("tiny-sr", "sr-unet", sr, "")]:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        models.joinpath(f"{name}.yaml").write_text(
            f"arch: {arch}\nweights: {{urls: ['{path.as_uri()}'], sha256: {digest}}}\n{extra}"
            "sampling: {sampler: ddim, steps: 2}\n"
        )
