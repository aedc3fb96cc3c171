"""RUN/samples/step-N.mp4: one clip sampled from the EMA weights every --sample-every steps, always from the
same seed, so successive previews show how the model changes rather than how the noise does.

A preview is sampled exactly as `mmgen generate` samples the same weights: through the one clip-sampling entry
point (mmgen.diffusion.clips), with the own sampling settings of the model the run starts from (else the
default preset) and the run's --sample-sampler/--sample-steps over them. Every weights file of the run carries
those settings (weights/lineage), so
`mmgen generate -m RUN/checkpoints/step-N/ema.safetensors --seed SEED --sampler S --steps K` makes the preview
of step N again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import torch

from mmgen.diffusion import SamplingConfig, generate_clips, load_sampling_preset
from mmgen.diffusion.sampling_config import DEFAULT_PRESET
from mmgen.errors import InvalidSetting, UsageError, in_callers_words
from mmgen.runtime.device import Compute
from mmgen.weights.lineage import own_lineage


def check_previewable(sample_rate: int) -> None:
    """Previews are mp4 files with AAC sound: refuse a sample rate AAC cannot store before training starts,
    not at the first preview, hundreds of steps in."""
    rates = av.Codec("aac", "w").audio_rates
    if sample_rate not in rates:
        raise UsageError(
            f"previews (--sample-every) are mp4 files, and AAC cannot store the model's {sample_rate} Hz audio",
            f"pass --sample-every 0, or train a model whose sample_rate is one of {sorted(rates)} Hz",
        )


def preview_sampling(init: str | None, sampler: str, steps: int) -> SamplingConfig:
    """The settings previews sample with: the settings of the model the run starts from (weights/lineage;
    the default preset when it has none), with `sampler` and `steps` laid over them."""
    own = (own_lineage(init).sampling if init is not None else None) or load_sampling_preset(DEFAULT_PRESET)
    try:
        if init is not None:
            own.check_steps(steps, "sample_steps", init)
        return dataclasses.replace(own, conditional=None, sampler=sampler, steps=steps)
    except InvalidSetting as e:  # named as its config key: finetune has no flag for it
        raise UsageError(str(e)) from None
    except ValueError as e:
        named = in_callers_words("--sample-steps", "sample_steps")
        raise UsageError(f"preview sampling settings ({named}): {e}") from None


@torch.no_grad()
def write_preview(path: Path, model: torch.nn.Module, compute: Compute, sampling: SamplingConfig, seed: int) -> None:
    """Sample one clip from `seed` with `sampling` and write it as an mp4 (H.264 + AAC), the sound at the model's own
    level: clipped at full scale where it passes it, which is said once a run (as a delivery at its own level is)."""
    from mmgen.media import write_mp4
    from mmgen.media.deliver import say_if_clipped

    clip = generate_clips(model, sampling, compute, [seed])
    config = model.config
    path.parent.mkdir(parents=True, exist_ok=True)
    say_if_clipped(clip["audio"][0], "training previews hold the model's sound at its own level")
    # A resumed run redoes the steps after its newest checkpoint, previews included: rewrite them.
    write_mp4(
        path,
        clip["video"][0].clamp(-1, 1),
        clip["audio"][0].clamp(-1, 1),
        config.fps,
        config.sample_rate,
        overwrite=True,
    )
