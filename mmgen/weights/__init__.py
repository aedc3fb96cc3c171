"""Model weights: the registry (presets/models/*.yaml), the download cache, import of official checkpoints,
and `load_model`, the one loader everything else calls."""

import lazy_loader

# Attributes load on first use (lazy_loader): `mmgen --help` or a mistyped flag should not wait seconds for
# torch, PyAV and scipy to import.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "cache": ["CacheRecord", "ModelCache", "cache_root"],
        "architecture": ["read_header"],
        "checkpoint": ["read_state_dict", "save_model"],
        "convert": ["check_state_dict", "import_weights"],
        "load": ["LoadedModel", "load_model", "resolve_weights"],
        "pull": ["availability", "fetch_plan", "pull"],
        "registry": ["ModelEntry", "Registry", "WeightsSource", "load_registry"],
    },
)
