"""The training objective: its video and audio parts add up to the loss the bar and the log show, and the step's
memory saver changes nothing but memory: with --gradient-checkpointing every block is run again in the backward
pass, and the gradients must be the ones computed without it — same RS-MMA window shifts (drawn once per forward
call) and same dropout masks (the global RNG is replayed)."""

from __future__ import annotations

import re

import torch
from finetune_clips import TRAIN_MODEL, one_thread

from mmgen.cli._finetune_display import loss_text
from mmgen.diffusion.schedule import Schedule
from mmgen.models import build_model, config_for
from mmgen.train.objective import diffusion_loss, draw_noising


def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
    config = config_for("mm-unet", {**TRAIN_MODEL["config"], "dropout": 0.1}, "test")
    torch.manual_seed(0)
    model = build_model("mm-unet", config).train()
    # The output convolutions start at zero, which would leave every other gradient zero: give them weights.
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    model.gradient_checkpointing = checkpointing
    data = torch.Generator().manual_seed(1)
    x0 = {
        "video": torch.rand(2, *config.video_size, generator=data) * 2 - 1,  # (B, F, C, H, W)
        "audio": torch.rand(2, *config.audio_size, generator=data) * 2 - 1,  # (B, 1, L)
    }
    generator = torch.Generator().manual_seed(2)
    noising = draw_noising(x0, generator, generator, independent=False)
    loss, _ = diffusion_loss(
        model,
        x0,
        noising,
        Schedule.respaced(""),
        weights={"video": 1.0, "audio": 2.0},
        min_snr_gamma=5.0,
        shift_generator=generator,
    )
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_gradient_checkpointing_gives_the_same_gradients():
    with one_thread():
        plain, recomputed = gradients(False), gradients(True)
    assert plain.keys() == recomputed.keys()
    assert all(g is not None and g.abs().sum() > 0 for g in plain.values())  # every parameter is trained
    different = [name for name in plain if not torch.equal(plain[name], recomputed[name])]
    assert not different, different[:5]


def test_the_video_and_audio_parts_shown_add_up_to_the_loss_shown():
    """The bar showed `loss 0.2301 (video 0.0712, audio 0.0177)`: the total Min-SNR-weighted and the audio counted
    twice (--loss-weights), the parts plain eps-MSEs; the parts are now the terms of the total, in the log too."""
    config = config_for("mm-unet", TRAIN_MODEL["config"], "test")
    with one_thread():
        torch.manual_seed(0)
        model = build_model("mm-unet", config)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.05)
            data = torch.Generator().manual_seed(1)
            x0 = {"video": torch.rand(3, *config.video_size, generator=data) * 2 - 1,  # (B, F, C, H, W)
                  "audio": torch.rand(3, *config.audio_size, generator=data) * 2 - 1}  # (B, 1, L)
            generator = torch.Generator().manual_seed(2)
            noising = draw_noising(x0, generator, generator, independent=True)
            loss, parts = diffusion_loss(model, x0, noising, Schedule.respaced(""), weights={"video": 1.0, "audio": 2.0},
                                         min_snr_gamma=5.0, x0_weight_cap=4.0, shift_generator=generator)
    values = {"loss": loss.item(), "loss_video": parts["video"].item(), "loss_audio": parts["audio"].item()}
    shown = [float(n) for n in re.findall(r"\d+\.\d+", loss_text(values))]
    assert len(shown) == 3 and abs(shown[0] - shown[1] - shown[2]) <= 1.5e-4, loss_text(values)
    assert abs(shown[1] - shown[2]) > 1e-3  # two parts, neither nothing
