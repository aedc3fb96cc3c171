"""Fine-tuning (and training from scratch) of the MM-UNet on a folder of clips: `mmgen finetune`."""

import lazy_loader

# Attributes load on first use (lazy_loader): `mmgen --help` or a mistyped flag should not wait seconds for
# torch, PyAV and scipy to import.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["FinetuneConfig", "resolve_config"],
        "config_layers": ["run_config"],
        "divergence": ["TrainingDiverged"],
        "events": ["TrainEvent"],
        "run": ["FinetuneResult", "finetune"],
    },
)
