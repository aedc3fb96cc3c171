"""The Python API: generate, soundtrack, animate and retake as plain functions over typed settings (the `mmgen` command
is a thin shell over them). Each validates cheaply first, then loads the model, samples, and writes atomically.

    from mmgen.pipelines import SoundtrackSettings, soundtrack
    soundtrack("clip.mp4", "scored.mp4", SoundtrackSettings(seed=7, mix=0.3))
"""

import lazy_loader

# Attributes load on first use (lazy_loader): `mmgen --help` or a mistyped flag should not wait seconds for
# torch, PyAV and scipy to import.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "animate": ["animate"],
        "arguments": ["InvalidArgument"],
        "batch": ["plan_batch", "run_batch"],
        "clips": ["Clip", "Provenance", "Result"],
        "events": ["ProgressEvent", "ProgressFn"],
        "generate": ["generate", "generate_files"],
        "retake": ["retake"],
        "settings": [
            "AnimateSettings", "GenerateSettings", "InvalidSetting", "MatchingSettings", "RetakeSettings", "RunSettings",
            "SoundtrackSettings",
        ],
        "soundtrack": ["soundtrack"],
    },
)
