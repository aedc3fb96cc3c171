"""LoRA adapters: train small on top of a frozen model (`finetune --lora`), share one file, stack several
with weights on any run (`--adapter FILE[:WEIGHT]`)."""

from mmgen.adapters.apply import AdapterUse, check_fits, merge_adapters, read_uses
from mmgen.adapters.file import Adapter, BaseModel, is_adapter_file, read_adapter, save_adapter
from mmgen.adapters.lora import (
    TARGETS,
    LoraSpec,
    adapter_parameters,
    adapter_state,
    attach,
    detach_adapters,
    load_adapter_state,
    target_modules,
)

__all__ = [
    "TARGETS",
    "Adapter",
    "AdapterUse",
    "BaseModel",
    "LoraSpec",
    "adapter_parameters",
    "adapter_state",
    "attach",
    "check_fits",
    "detach_adapters",
    "is_adapter_file",
    "load_adapter_state",
    "merge_adapters",
    "read_adapter",
    "read_uses",
    "save_adapter",
    "target_modules",
]
