"""The Python API: generate, soundtrack and animate as plain functions over typed settings (the `mmgen` command
is a thin shell over them). Each validates cheaply first, then loads the model, samples, and writes atomically.

    from mmgen.pipelines import SoundtrackSettings, soundtrack
    soundtrack("clip.mp4", "scored.mp4", SoundtrackSettings(seed=7, mix=0.3))
"""

from mmgen.pipelines.animate import animate
from mmgen.pipelines.clips import Clip, Provenance, Result
from mmgen.pipelines.events import ProgressEvent, ProgressFn
from mmgen.pipelines.generate import generate, generate_files
from mmgen.pipelines.settings import (
    AnimateSettings,
    GenerateSettings,
    InvalidSetting,
    MatchingSettings,
    RunSettings,
    SoundtrackSettings,
)
from mmgen.pipelines.soundtrack import soundtrack
from mmgen.runtime.device import Compute, select_compute

__all__ = [
    "AnimateSettings",
    "Clip",
    "Compute",
    "GenerateSettings",
    "InvalidSetting",
    "MatchingSettings",
    "ProgressEvent",
    "ProgressFn",
    "Provenance",
    "Result",
    "RunSettings",
    "SoundtrackSettings",
    "animate",
    "generate",
    "generate_files",
    "select_compute",
    "soundtrack",
]
