"""mmgen: MM-Diffusion for media creators — joint video+audio generation, soundtracks, fine-tuning."""

import os as _os

# Tensors of 2 MB and more in transparent huge pages: PyTorch's own switch (THP_MEM_ALLOC_ENABLE), read once
# at torch's first allocation, so it is set here, before anything of mmgen imports torch; a value the user set
# wins ("0" turns it off). A forward allocates its activations afresh and their first touch page-faults, 4 KB
# at a time without it: measured on the released MM-UNet's bf16 CPU forward, ~3× less time in the kernel and a
# lower peak RSS (benchmarks/forward.py; README, Performance).
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
