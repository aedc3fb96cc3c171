"""What a pipeline returns: the clip's tensors plus the record of how it was made (the sidecar JSON)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmgen import __version__

if TYPE_CHECKING:
    import torch

    from mmgen.pipelines.session import Models, Run


@dataclass(frozen=True)
class Clip:
    """Video and audio spanning the same time, on the CPU in float32."""

    video: torch.Tensor  # (T, 3, H, W) in [-1, 1]
    audio: torch.Tensor  # (1, N) in [-1, 1]
    fps: float
    sample_rate: int

    @property
    def duration(self) -> float:
        """Seconds of audio (the exact length; video covers the same span rounded to whole frames)."""
        return self.audio.shape[-1] / self.sample_rate

    @classmethod
    def sampled(cls, video: torch.Tensor, audio: torch.Tensor, fps: float, sample_rate: int) -> Clip:
        """The clip the model made (generate, soundtrack, animate, retake), clamped to [-1, 1] as the official code
        clamps its samples: a sound past full scale (sampling that clips no step, as the paper's) is said to be
        clamped, once per command (media.deliver.say_if_clamped), before any delivery levels it."""
        from mmgen.media.deliver import say_if_clamped

        say_if_clamped(audio)
        return cls(video.clamp(-1, 1), audio.clamp(-1, 1), fps, sample_rate)


@dataclass(frozen=True)
class Provenance:
    """Everything needed to make the same clip again: written next to every output as its sidecar JSON."""

    model: str
    model_sha256: str | None
    sampler: str
    steps: int
    seed: int
    device: str
    precision: str
    wall_time_s: float
    # CPU runs: torch's thread count (OMP_NUM_THREADS), which splits the model's sums; the same seed remakes the
    # samples bitwise only with the same count (the demo's differ by a level in a sixth of their pixels otherwise)
    threads: int | None = None
    # generate: clips sampled together (a batch job's: 1). A batched convolution rounds otherwise, and the sound's
    # encoder can make an audible difference of that: the same seed remakes a clip exactly only at the same size
    batch_size: int | None = None
    preset: str | None = None  # --preset: the sampling preset laid over the model's own settings
    eta: float | None = None  # ddim only: 0 deterministic, > 0 fresh noise at every step
    start_timestep: int | None = None  # set when sampling starts below t = 999 (see SamplingConfig)
    zero_mean: list[str] | None = None  # set when a modality's predicted clean sample is kept at zero mean
    start_mean: dict[str, float] | None = None  # set when the start draw is shifted by the data's mean
    guidance: str | None = None  # soundtrack/animate: "replacement" | "gradient"
    guidance_scale: float | None = None
    overlap: float | None = None  # soundtrack/animate/retake: fraction of a window shared with the previous one
    windows: int | None = None
    upscaled: bool = False
    upsampler: str | None = None
    upsampler_sha256: str | None = None  # the upsampler's weights file, as model_sha256 (sidecars before 2026-12: none)
    # how the upsampler sampled (sampler, steps, …: its entry's, which a user's may change; sidecars before 2026-12:
    # none, the shipped ddim 25)
    upsampling: dict | None = None
    input: str | None = None
    mix: float | None = None
    model_source_sha256: str | None = None  # the file it was converted from, e.g. Landscape.pt as first pulled
    retake: dict | None = None  # retake: {"modality": "audio" | "video", "ranges": [[start_s, end_s], ...]}
    delivery: dict | None = None  # delivered sound: sample rate, loudness target, LUFS before/after, true peak
    adapters: list[dict] | None = None  # LoRA adapters merged into the model: file, sha256, weight (and name) each
    mmgen_version: str = __version__

    @classmethod
    def of(cls, run: Run, models: Models, seed: int, seconds: float, **fields) -> Provenance:
        """What every pipeline records: the model, the sampling settings that shape the result, the seed and the
        device, plus the pipeline's own `fields`."""
        import torch

        from mmgen.pipelines.sampling import upsampler_settings
        from mmgen.pipelines.upsampling import upsampling_record
        from mmgen.weights.names import is_path

        sampling = run.sampling
        return cls(
            model=models.base.name,
            model_sha256=models.base.sha256,
            model_source_sha256=models.base.source_sha256,
            sampler=sampling.sampler,
            steps=sampling.steps,
            preset=run.preset,
            eta=sampling.eta if sampling.sampler == "ddim" else None,
            start_timestep=sampling.start_timestep,
            zero_mean=list(sampling.zero_mean) or None,
            start_mean=dict(sampling.start_mean) or None,
            seed=seed,
            device=run.compute.describe(),
            precision=run.compute.precision,
            wall_time_s=round(seconds, 3),
            threads=torch.get_num_threads() if run.compute.device.type == "cpu" else None,
            upscaled=models.upsampler is not None,
            upsampler=models.upsampler.name if models.upsampler else None,
            upsampler_sha256=models.upsampler.sha256 if models.upsampler else None,
            upsampling=upsampling_record(upsampler_settings(models.upsampler)) if models.upsampler else None,
            adapters=[{"file": str(a.path), "sha256": a.sha256, "weight": w,
                       **({} if is_path(use.source) else {"name": use.source})}  # a registered adapter's
                      for use, (a, w) in zip(run.adapters, models.adapters, strict=True)] or None,
            **fields,
        )

    @classmethod
    def matching(cls, run: Run, models: Models, seconds: float, overlap: float, windows: int, source: Path,
                 **fields) -> Provenance:
        """What a run that makes one modality to match a user's file (soundtrack, animate, retake) records beside
        Provenance.of's: how it guided, the overlap and count of its windows, its input."""
        gradient = run.sampling.guidance == "gradient"
        return cls.of(run, models, run.seed, seconds, guidance=run.sampling.guidance,
                      guidance_scale=run.sampling.guidance_scale if gradient else None, overlap=overlap,
                      windows=windows, input=str(source), **fields)

    def to_json(self) -> dict:
        """The fields that apply; "model_sha256" and "guidance" always appear (null: a model file without a
        recorded hash, or a clip generated from noise alone), so every sidecar answers the same questions."""
        always = {"model_sha256", "guidance"}
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k in always}


@dataclass(frozen=True)
class Result:
    """One pipeline output: the clip at the model's rate and size (for soundtrack/animate: the input as the
    model saw it plus what was made for it; a sound retake's holds no frames: its picture is the input's, copied),
    how it was made, and — once written — its files and what the written mp4 holds."""

    clip: Clip
    provenance: Provenance
    files: dict[str, Path] = dataclasses.field(default_factory=dict)  # "mp4", "json", "wav", "frames_png", ...
    media: dict = dataclasses.field(default_factory=dict)  # the written mp4, as probed: duration, size, ...

    def to_json(self) -> dict:
        """The sidecar and --json object."""
        return {**{k: str(p) for k, p in self.files.items()}, **self.media, **self.provenance.to_json()}
