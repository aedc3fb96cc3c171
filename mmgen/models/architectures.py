"""Architectures by registry name: each config dataclass (mmgen.models.config) with the model class it builds."""

from __future__ import annotations

import torch

from mmgen.errors import ConfigError
from mmgen.models.config import MMUNetConfig, SRUNetConfig, config_for
from mmgen.models.mmunet import MMUNet
from mmgen.models.srunet import SRUNet
from mmgen.models.storage import channels_last_weights
from mmgen.runtime.torch_state import on_device

# name → (config dataclass, model class)
ARCHITECTURES: dict[str, tuple[type, type[torch.nn.Module]]] = {
    "mm-unet": (MMUNetConfig, MMUNet),
    "sr-unet": (SRUNetConfig, SRUNet),
}


def model_class(arch: str) -> type[torch.nn.Module]:
    return ARCHITECTURES[arch][1]


def build_model(arch: str, config=None, device: torch.device | str | None = None) -> torch.nn.Module:
    """Instantiate `arch` with `config` (a dataclass, a field dict, or None for the released config).
    With device="meta" no memory is allocated: use it to read key names and shapes. Its convolution weights
    are laid out channels-last, as a loaded model's are (models/storage.py)."""
    if not isinstance(config, (MMUNetConfig, SRUNetConfig)):
        config = config_for(arch, config)
    try:
        with on_device(device or "cpu"):  # not torch.device: its exit pops blindly (runtime.torch_state)
            return channels_last_weights(model_class(arch)(config))
    except ValueError as e:  # a config its layers cannot be built from (e.g. heads that do not divide a width)
        raise ConfigError(f"cannot build an {arch} from this config: {e}") from None
