"""RUN/samples/step-N.mp4: one clip sampled from the EMA weights every --sample-every steps, always from the
same seed, so successive previews show how the model changes rather than how the noise does."""

from __future__ import annotations

from pathlib import Path

import av
import torch

from mmgen.diffusion import SAMPLERS, initial_noise, mmunet_denoiser, schedule_for
from mmgen.errors import UsageError
from mmgen.runtime.device import Compute


def check_previewable(sample_rate: int) -> None:
    """Previews are mp4 files with AAC sound: refuse a sample rate AAC cannot store before training starts,
    not at the first preview, hundreds of steps in."""
    rates = av.Codec("aac", "w").audio_rates
    if sample_rate not in rates:
        raise UsageError(
            f"previews (--sample-every) are mp4 files, and AAC cannot store the model's {sample_rate} Hz audio",
            f"pass --sample-every 0, or train a model whose sample_rate is one of {sorted(rates)} Hz",
        )


@torch.no_grad()
def write_preview(
    path: Path, model: torch.nn.Module, compute: Compute, *, sampler: str, steps: int, seed: int
) -> None:
    """Sample one clip with `sampler` in `steps` steps and write it as an mp4 (H.264 + AAC)."""
    from mmgen.media import write_mp4

    config = model.config
    was_training = model.training
    model.eval()
    try:
        generator = torch.Generator().manual_seed(seed)
        shapes = {"video": (1, *config.video_size), "audio": (1, *config.audio_size)}
        x_T = initial_noise(shapes, generator, device=compute.device)
        with compute.autocast():
            clip = SAMPLERS[sampler](
                mmunet_denoiser(model, generator=generator),
                x_T,
                schedule_for(sampler, steps),
                generator=generator,
            )
    finally:
        model.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A resumed run redoes the steps after its newest checkpoint, previews included: rewrite them.
    write_mp4(
        path,
        clip["video"][0].float().cpu(),
        clip["audio"][0].float().cpu(),
        config.fps,
        config.sample_rate,
        overwrite=True,
    )
