"""Model weights: the registry (presets/models/*.yaml), the download cache, import of official checkpoints,
and `load_model`, the one loader everything else calls."""

from mmgen.weights.cache import CacheRecord, ModelCache, cache_root
from mmgen.weights.checkpoint import read_header, read_state_dict, save_model, sha256_file
from mmgen.weights.convert import check_state_dict, import_weights
from mmgen.weights.load import LoadedModel, load_model, resolve_weights
from mmgen.weights.pull import availability, fetch_plan, pull
from mmgen.weights.registry import ModelEntry, Registry, WeightsSource, load_registry

__all__ = [
    "CacheRecord",
    "LoadedModel",
    "ModelCache",
    "ModelEntry",
    "Registry",
    "WeightsSource",
    "availability",
    "cache_root",
    "check_state_dict",
    "fetch_plan",
    "import_weights",
    "load_model",
    "load_registry",
    "pull",
    "read_header",
    "read_state_dict",
    "resolve_weights",
    "save_model",
    "sha256_file",
]
