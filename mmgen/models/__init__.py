"""Architectures by registry name: `mm-unet` (coupled video/audio U-Net) and `sr-unet` (per-frame 64→256
super-resolution)."""

import lazy_loader

# Attributes load on first use (lazy_loader): a config is read without importing torch and the model classes.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["CONFIGS", "MMUNetConfig", "SRUNetConfig", "config_for"],
        "architectures": ["ARCHITECTURES", "build_model", "model_class"],
    },
)
