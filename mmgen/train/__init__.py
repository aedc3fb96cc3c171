"""Fine-tuning (and training from scratch) of the MM-UNet on a folder of clips: `mmgen finetune`."""

from mmgen.train.config import FinetuneConfig, resolve_config, run_config
from mmgen.train.divergence import TrainingDiverged
from mmgen.train.events import TrainEvent
from mmgen.train.trainer import FinetuneResult, finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "TrainEvent", "TrainingDiverged", "finetune", "resolve_config", "run_config"]
