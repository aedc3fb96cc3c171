"""LoRA adapters: train small on top of a frozen model (`finetune --lora`), share one file, stack several
with weights on any run (`--adapter FILE[:WEIGHT]`)."""

import lazy_loader

# Attributes load on first use (lazy_loader): `mmgen --help` or a mistyped flag should not wait seconds for
# torch, PyAV and scipy to import.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "apply": ["check_base", "check_fits", "merge_adapters", "read_uses"],
        "use": ["AdapterUse"],
        "file": ["Adapter", "BaseModel", "is_adapter_file", "read_adapter", "save_adapter"],
        "lora": [
            "adapter_parameters", "adapter_state", "attach", "load_adapter_state", "target_modules",
        ],
        "spec": ["TARGETS", "LoraSpec"],
    },
)
