"""The Python API: generate, soundtrack and animate as plain functions (the `mmgen` command is a thin shell
over them). Each validates cheaply first, then loads the model, samples, and writes atomically."""

from mmgen.pipelines.animate import animate
from mmgen.pipelines.clips import Clip, Provenance, Result
from mmgen.pipelines.events import ProgressEvent, ProgressFn
from mmgen.pipelines.generate import generate, generate_files
from mmgen.pipelines.soundtrack import soundtrack
from mmgen.runtime.device import Compute, select_compute

__all__ = [
    "Clip",
    "Compute",
    "ProgressEvent",
    "ProgressFn",
    "Provenance",
    "Result",
    "animate",
    "generate",
    "generate_files",
    "select_compute",
    "soundtrack",
]
