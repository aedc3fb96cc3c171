"""`mmgen finetune` as a function (the Python API's `finetune`): what needs no torch is asked first — its arguments,
the folder of a run to resume (in use, then finished), the folder of clips, the run folder (in use, not empty,
nothing to resume) — so a mistake is refused before torch loads (seconds, hundreds of MB), as the command line
refuses it; then the run trains (trainer.run_training, where torch loads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmgen.calls import pipeline_call
from mmgen.data.clip_folder import check_clip_folder
from mmgen.pipelines.arguments import check_arguments
from mmgen.runtime import torchrun
from mmgen.train.config import FinetuneConfig
from mmgen.train.run_checks import check_run_folder
from mmgen.train.run_folder import RunFolderLock, final_weights, finished_at

if TYPE_CHECKING:
    from mmgen.data.clips import ScanReport
    from mmgen.train.events import EventFn


@dataclass(frozen=True)
class FinetuneResult:
    run_dir: Path
    step: int  # steps completed
    interrupted: bool  # stopped by Ctrl-C/SIGTERM after saving a checkpoint (from Python: by a handler of the program's own)
    model_path: Path | None  # RUN/model.safetensors once the run reached its last step
    data: ScanReport | None  # None when a resumed run had already finished: nothing was read
    finished_before: bool = False  # --resume of a run already finished at its --steps: nothing done, nothing written
    ran_on: dict[str, str] | None = None  # the device and precision it trained in (Compute.record); None: it trained not


@pipeline_call(output="run_dir")
def finetune(
    data_dir: str | Path,
    run_dir: str | Path,
    config: FinetuneConfig,
    *,
    resume: bool = False,
    on_event: EventFn | None = None,
    _folders_checked: bool = False,
) -> FinetuneResult:
    """Train per `config` on the clips under `data_dir`, writing the run to `run_dir`; with `resume`, continue
    from the run's newest checkpoint that loads. Under torchrun every process calls this; only rank 0 writes.
    Raises TrainingDiverged (exit 1) when the loss or the weights stop being finite. Resuming a run that has
    already finished at `config.steps` (or past it) does nothing and writes nothing: a larger `steps` trains on.
    A stop signal (Ctrl-C) once a step has finished saves that step's checkpoint, then goes on to the program's own
    handler: Python's raises KeyboardInterrupt here (the command line instead says how to resume and exits 130).
    `_folders_checked`: the command line's, whose run_config has asked of both folders what is asked here (in use,
    the clips, the run folder) before it judged the device: not asked twice."""
    check_arguments("finetune", paths={"data_dir": data_dir, "run_dir": run_dir}, instances={"config": (config, FinetuneConfig)},
                    switches={"resume": resume}, functions={} if on_event is None else {"on_event": on_event})
    if resume and not _folders_checked and torchrun.rank() == 0:  # as the command line asks (config_layers.run_config):
        RunFolderLock(Path(run_dir)).check_free()  # a run training in it is no finished run (its checkpoints change)
    final = final_weights(config.lora is not None)
    if resume and (step := finished_at(Path(run_dir), config.steps, final)) is not None:
        return FinetuneResult(Path(run_dir), step, False, Path(run_dir) / final, None, finished_before=True)
    if not _folders_checked:
        check_clip_folder(Path(data_dir))  # the run's scan asks again, as it reads the clips
        if torchrun.place()[1] == 1:  # a torchrun job's processes look at it together, rank 0 holding it (train.setup)
            check_run_folder(Path(data_dir), Path(run_dir), config, resume)  # as the command line (config_layers.run_config)
    from mmgen.train.trainer import run_training  # torch loads here

    return run_training(Path(data_dir), Path(run_dir), config, resume, on_event)
