"""Is the audio-visual link being learned? A cheap probe logged during training (DESIGN §9).

On a fixed batch of clips with fixed noise, measure the audio denoising loss at a few fixed noise levels twice:
with each clip's own (equally noised) video, and with the video of another clip of the batch (rolled by one).
`av_gap@t` = mismatched − matched. A model that ignores the video scores the same either way (gap ≈ 0); the
gap grows as the audio branch learns to use what it sees — long before sampled clips show it. The raw (not
EMA) weights are probed: they are what the optimiser is changing right now.
"""

from __future__ import annotations

import torch

from mmgen.diffusion.schedule import Schedule
from mmgen.modal import Modal, each
from mmgen.runtime.device import Compute
from mmgen.train.objective import Noising, eps_mse, noisy_inputs


class AVProbe:
    def __init__(self, clips: Modal, timesteps: tuple[int, ...], seed: int, schedule: Schedule):
        """`clips`: {"video": (B, F, C, H, W), "audio": (B, 1, L)} with B ≥ 2, on CPU."""
        if clips["video"].shape[0] < 2:
            raise ValueError("the audio-visual probe needs at least 2 clips")
        self.clips = clips
        self.timesteps = timesteps
        self.seed = seed
        self.schedule = schedule
        generator = torch.Generator().manual_seed(seed)
        self.noise = each(lambda x: torch.randn(x.shape, generator=generator), clips)

    @torch.no_grad()
    def measure(self, model: torch.nn.Module, compute: Compute) -> dict[str, float]:
        """{"audio_mse@t", "audio_mse_mismatched@t", "av_gap@t"} for every probe t, and their mean "av_gap"."""
        was_training = model.training
        model.eval()
        x0 = each(lambda x: x.to(compute.device), self.clips)
        noise = each(lambda x: x.to(compute.device), self.noise)
        batch = x0["video"].shape[0]
        out: dict[str, float] = {}
        try:
            for t in self.timesteps:
                steps = torch.full((batch,), t, dtype=torch.int64, device=compute.device)
                x_t = noisy_inputs(x0, Noising({"video": steps, "audio": steps}, noise), self.schedule)
                videos = {"matched": x_t["video"], "mismatched": x_t["video"].roll(1, dims=0)}
                for name, video in videos.items():
                    # The same window shifts for both passes, so only the video differs.
                    shifts = torch.Generator(device=compute.device).manual_seed(self.seed)
                    with compute.autocast():
                        _, audio_eps = model(video, x_t["audio"], steps, generator=shifts)
                    suffix = "" if name == "matched" else "_mismatched"
                    out[f"audio_mse{suffix}@{t}"] = float(eps_mse(audio_eps, noise["audio"]).mean())
                out[f"av_gap@{t}"] = out[f"audio_mse_mismatched@{t}"] - out[f"audio_mse@{t}"]
        finally:
            model.train(was_training)
        out["av_gap"] = sum(out[f"av_gap@{t}"] for t in self.timesteps) / len(self.timesteps)
        return out
