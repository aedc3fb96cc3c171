"""What a run's weight files hold, in one place: the whole network (a fine-tune), or — with `--lora` — only the
adapters trained over a frozen base model. Checkpoints, resume and the final output all go through it, so
EMA, Ctrl-C/--resume, previews and torchrun work the same for both."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mmgen.adapters import BaseModel, LoraSpec, attach, load_adapter_state, save_adapter
from mmgen.adapters.file import Adapter
from mmgen.errors import UsageError
from mmgen.models.config import MMUNetConfig
from mmgen.train.run_folder import final_weights
from mmgen.weights import LoadedModel, save_model
from mmgen.weights.lineage import Lineage

ARCH = "mm-unet"


@dataclass(frozen=True)
class RunWeights:
    model_config: MMUNetConfig
    lora: LoraSpec | None = None
    base: BaseModel | None = None  # with `lora`: the frozen model the adapters are trained on
    lineage: Lineage = Lineage()  # the sampling settings and upsampler of the model a fine-tune starts from

    @property
    def final_name(self) -> str:
        """What the finished run is: RUN/model.safetensors, or RUN/adapter.safetensors for a LoRA run."""
        return self.final_name_of(self.lora)

    @staticmethod
    def final_name_of(lora: LoraSpec | None) -> str:
        return final_weights(lora is not None)

    def write(self, path: Path, module: torch.nn.Module, metadata: dict) -> str:
        """Write `module`'s weights (its adapters only, for a LoRA run); returns the file's sha256."""
        if self.lora:
            return save_adapter(path, module, self.lora, self.base, metadata)
        return save_model(path, module, ARCH, self.model_config, {**metadata, **self.lineage.metadata()})

    def load_into(self, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        """Put a checkpoint's weights (as read from one of its files) into `module`."""
        if self.lora:
            load_adapter_state(module, tensors)
        else:
            module.load_state_dict(tensors)


def lora_weights(base: LoadedModel, spec: LoraSpec, name: str, resumed: Adapter | LoadedModel | None
                 ) -> RunWeights:
    """Freeze `base` and attach adapters to it (restoring a resumed run's); a resumed run must find the very
    base it started from."""
    if isinstance(resumed, LoadedModel):
        raise UsageError("this run fine-tunes the whole model: resume it without --lora")
    if resumed is not None and not resumed.base.identities() & BaseModel.of(base, name).identities():
        raise UsageError(
            f"this LoRA run was trained on {resumed.base.name} (sha256 {resumed.base.sha256[:12]}…), but "
            f"{name} now has sha256 {base.sha256[:12]}…",
            hint="resume with the base model the run started from",
        )
    attach(base.model, spec)
    if resumed is not None:
        try:
            load_adapter_state(base.model, resumed.tensors)
        except UsageError as e:
            raise UsageError(f"{resumed.path}: {e.message}", hint="resume with the run's own --lora settings") from None
    return RunWeights(base.config, spec, BaseModel.of(base, name))
