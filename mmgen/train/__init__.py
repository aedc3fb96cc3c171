"""Fine-tuning (and training from scratch) of the MM-UNet on a folder of clips: `mmgen finetune`."""

from mmgen.train.config import FinetuneConfig, resolve_config
from mmgen.train.trainer import FinetuneResult, TrainEvent, finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "TrainEvent", "finetune", "resolve_config"]
