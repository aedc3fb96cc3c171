"""Sampling settings as a frozen dataclass, and the named presets in presets/sampling/*.yaml."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mmgen.config import from_dict, to_dict
from mmgen.errors import ConfigError, InvalidSetting
from mmgen.modal import MODALITIES, Modal
from mmgen.presets import preset_dir
from mmgen.yaml_files import load_yaml

if TYPE_CHECKING:
    from mmgen.diffusion.guidance import Condition

# The released conditional scripts use λ = 3 in fp16, where the loss is scaled by 2**20 and never
# unscaled (see guidance.Guide.step), so their effective scale on our plain loss is 3·2**20.
PAPER_GUIDANCE_SCALE = 3.0 * 2**20
# λ's upper bound: about 300× the paper's. Far above it (1e30) a step only overflows, found out as NaN after sampling.
MAX_GUIDANCE_SCALE = 1e9


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample: which sampler, how many model calls, and how to condition on a known modality."""

    sampler: Literal["ddpm", "ddim", "dpm++", "paper"] = "dpm++"
    steps: int = 25
    eta: float = 0.0  # ddim only: 0 deterministic, 1 DDPM-like noise
    guidance: Literal["replacement", "gradient"] = "replacement"
    guidance_scale: float = PAPER_GUIDANCE_SCALE  # λ of gradient guidance
    clip_denoised: bool = True  # clamp each predicted clean sample to [-1, 1]
    # The noisiest training timestep to start from (ddpm, ddim, dpm++; the paper's solver keeps its own grid).
    # None = 999, as trained. See samplers.schedule_for for when starting lower is right.
    start_timestep: int | None = None
    # Modalities whose predicted clean sample is kept at zero mean over time (e.g. [audio]: no DC offset);
    # see denoisers.zero_mean. Empty for the official models, which are reproduced as released.
    zero_mean: tuple[str, ...] = ()
    # The mean of the training data per modality (e.g. {video: -0.8} for a dark background): the start draw is
    # shifted by √ᾱ_start times it, the mean the forward process leaves at the start timestep; see
    # samplers.start_noise. Empty (zero mean) for the official models.
    start_mean: dict[str, float] = field(default_factory=dict)
    conditional: SamplingConfig | None = None  # used instead for conditional jobs (soundtrack, animate)

    def __post_init__(self):
        if not 1 <= self.steps <= 1000:
            raise ValueError(f"steps must be between 1 and 1000, got {self.steps}")
        if self.start_timestep is not None and not self.steps <= self.start_timestep <= 999:
            raise ValueError(f"start_timestep must be between steps ({self.steps}) and 999, got {self.start_timestep}")
        unknown = sorted({*self.zero_mean, *self.start_mean} - set(MODALITIES))
        if unknown:
            raise ValueError(f"unknown modality {', '.join(map(repr, unknown))} (known: {', '.join(MODALITIES)})")
        if not 0 <= self.eta <= 1:  # above 1 DDIM's noise outgrows the step: √ of a negative number
            raise ValueError(f"eta must be between 0 and 1, got {self.eta}")
        if not 0 <= self.guidance_scale <= MAX_GUIDANCE_SCALE:
            raise ValueError(f"guidance_scale must be between 0 and {MAX_GUIDANCE_SCALE:g}, got {self.guidance_scale}")
        if self.conditional is not None and self.conditional.conditional is not None:
            raise ValueError("conditional settings cannot nest another 'conditional'")

    @property
    def most_steps(self) -> int:
        """The most steps these settings can take: a run starting at timestep t (start_timestep) takes at most t."""
        return 1000 if self.start_timestep is None else self.start_timestep

    def check_steps(self, steps: int | None, field: str, model: str) -> None:
        """InvalidSetting naming `field` (steps, a preview's sample_steps) where `steps` is more than `model`, sampled
        with these settings, can take, in the user's words: not the start_timestep the config would refuse."""
        if steps is not None and steps > self.most_steps:
            raise InvalidSetting(field, f"model {model} takes at most {self.most_steps} steps (it samples from timestep "
                                        f"{self.most_steps} down: start_timestep in its sampling settings)", steps)

    def for_conditional(self) -> SamplingConfig:
        """The settings for a job with a known modality."""
        return self.conditional or self

    def condition(self, known: Modal, mask: Modal | None = None, noise: Modal | None = None) -> Condition:
        """A Condition on `known` with this config's guidance mode and scale."""
        from mmgen.diffusion.guidance import Condition  # imports torch, which reading a config does not need

        return Condition(known=known, mask=mask, mode=self.guidance, scale=self.guidance_scale, noise=noise)


DEFAULT_PRESET = "balanced"  # for a model with no sampling settings of its own (a model file, a new import)


def sampling_presets() -> list[str]:
    """Names of the shipped sampling presets."""
    return sorted(p.stem for p in (preset_dir() / "sampling").glob("*.yaml"))


def preset_file(name: str) -> Path:
    """The file of the shipped sampling preset `name`; ConfigError naming the known ones where there is none (read
    before any model loads: pipelines.preflight)."""
    path = preset_dir() / "sampling" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown sampling preset {name!r} (known: {', '.join(sampling_presets())})")
    return path


def load_sampling_preset(name: str, over: SamplingConfig | None = None) -> SamplingConfig:
    """The shipped preset `name` (fast, balanced, paper), from the source tree or the installed wheel.

    With `over` (a model's own settings) the preset changes only the fields it names, so what the model needs
    whatever the sampler stays: `fast` on the demo still starts at t = 650 from its data's mean, with dpm++ at
    15 steps. `paper` names every field the paper's runs use, so it is the paper's run on any model. The
    preset's `conditional` block is laid over its own top level the same way."""
    path = preset_file(name)
    data = load_yaml(path) or {}
    if over is not None:
        data = {**to_dict(dataclasses.replace(over, conditional=None)), **data}
        if data.get("conditional") is not None:
            data["conditional"] = {**{k: v for k, v in data.items() if k != "conditional"}, **data["conditional"]}
    return from_dict(SamplingConfig, data, str(path))
