"""Where code runs: the device and precision of a run, and the process group of a torchrun job — the ground
floor that pipelines, training and batches all stand on (it imports nothing of theirs)."""

import lazy_loader

# Attributes load on first use (lazy_loader): `mmgen --help` or a mistyped flag should not wait seconds for
# torch, PyAV and scipy to import.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "device": ["PRECISIONS", "Compute", "select_compute", "select_device", "select_precision"],
        "processes": ["Processes"],
    },
)
