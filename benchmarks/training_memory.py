"""Activation memory a whole-model training step keeps per clip, in bytes per feature value (mmgen.train.batch_memory,
whose constants come from this): for the tests' tiny model, the demo model and a wider one, in fp32 and bf16, with
and without --recompute.

Each step (forward, ε-MSE, backward; CPU) runs in a fresh process at batch 2 and at batch 10; the growth of its
peak RSS (resource.getrusage ru_maxrss) over the built model's, at 10 less at 2, divided by 8 clips, is one clip's
activations, which divided by batch_memory's count of feature values gives the bytes per value.

    OMP_NUM_THREADS=1 python benchmarks/training_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys

from mmgen.models import config_for
from mmgen.train.batch_memory import feature_values

_STEP = """
import contextlib, json, resource, sys
import torch
from mmgen.models import build_model, config_for
fields, batch, precision, recompute = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
config = config_for("mm-unet", fields)
model = build_model("mm-unet", config)
model.train()
model.gradient_checkpointing = recompute
video, audio = torch.randn(batch, *config.video_size), torch.randn(batch, *config.audio_size)
timesteps = torch.randint(0, 1000, (batch,))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
with autocast:
    predicted = model(video, audio, timesteps)
sum(((p.float() - x) ** 2).mean() for p, x in zip(predicted, (video, audio))).backward()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""

CONFIGS = {
    "tiny (tests)": {"video_size": [2, 3, 8, 8], "audio_size": [1, 1600], "channel_mult": [1, 2], "num_res_blocks": 1,
                     "cross_attention_resolutions": [2], "cross_attention_windows": [1],
                     "video_attention_resolutions": [2], "num_heads": 2, "num_head_channels": 16},
    "demo": {"video_size": [8, 3, 16, 16], "audio_size": [1, 6400], "channel_mult": [1, 2, 2], "num_res_blocks": 1,
             "cross_attention_resolutions": [2, 4], "cross_attention_windows": [1, 1], "cross_attention_shift": False,
             "video_attention_resolutions": [4], "num_heads": 4, "num_head_channels": 32},
    "wide": {"video_size": [4, 3, 32, 32], "audio_size": [1, 3200], "model_channels": 64, "channel_mult": [1, 2, 2],
             "num_res_blocks": 2, "cross_attention_resolutions": [2, 4], "cross_attention_windows": [1, 1],
             "cross_attention_shift": False, "video_attention_resolutions": [4], "num_heads": 4,
             "num_head_channels": 32},
}
COMMON = {"model_channels": 32, "audio_attention_resolutions": [-1], "sample_rate": 8000}
SMALL, LARGE = 2, 10


def grown(fields: dict, batch: int, precision: str, recompute: bool) -> int:
    """Peak-RSS growth in bytes of one training step at `batch`, in a fresh process."""
    done = subprocess.run([sys.executable, "-c", _STEP, json.dumps(fields), str(batch), precision,
                           str(int(recompute))], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def main() -> None:
    for name, own in CONFIGS.items():
        fields = {**COMMON, **own}
        values = feature_values(config_for("mm-unet", fields))
        for precision in ("fp32", "bf16"):
            for recompute in (False, True):
                per_clip = (grown(fields, LARGE, precision, recompute) - grown(fields, SMALL, precision, recompute)) \
                    / (LARGE - SMALL)
                print(f"{name:14} {precision} recompute={recompute!s:5} {per_clip / 2**20:7.1f} MiB a clip, "
                      f"{per_clip / values:5.1f} B per value ({values:,} values)", flush=True)


if __name__ == "__main__":
    main()
