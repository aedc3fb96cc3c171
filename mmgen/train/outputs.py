"""What a run writes while it trains, and when: log lines, audio-visual probes, previews, checkpoints and the
final model. Only rank 0 writes; every process takes part in what gathers from all of them. Nothing is written
from weights that are no longer finite: the divergence watch is read first (divergence.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mmgen.config import json_text, to_dict
from mmgen.files import atomic_output, kept_together, retire
from mmgen.train.divergence import DivergenceWatch, TrainingDiverged
from mmgen.train.events import EventFn, TrainEvent
from mmgen.train.preview import write_preview
from mmgen.train.run_folder import check_final_json
from mmgen.train.setup import ARCH, Setup
from mmgen.train.state import parameters_digest
from mmgen.train.step_folders import latest_checkpoint


class RunOutputs:
    def __init__(self, setup: Setup, on_event: EventFn):
        self.setup, self.on_event = setup, on_event
        self.config, self.state, self.processes = setup.config, setup.state, setup.processes
        self.main = setup.processes.is_main
        resumed = latest_checkpoint(setup.run_dir / "checkpoints")
        self.last_checkpoint: Path | None = resumed.path if resumed is not None else None
        self._order = setup.order(0)

    def after_step(self, watch: DivergenceWatch, stopping: Callable[[], bool]) -> bool:
        """The outputs due after the step just taken, and its one "step" event (with the logged values on a log
        step, rank 0's); whether the run stops here: `stopping()` (a stop was requested, asked once the event is
        out) before the last step, which forces a checkpoint."""
        config, step = self.config, self.state.step
        log = step % config.log_every == 0 or step == config.steps
        probe = self.setup.probe is not None and config.probe_interval and step % config.probe_interval == 0
        preview = self.setup.preview is not None and step % config.sample_every == 0
        checked = bool(log or probe or preview)
        if checked:
            self._check(watch)
        self.on_event(TrainEvent("step", step, config.steps, values=self._log_train() if log else {}))
        stopped = stopping() and step < config.steps
        save = stopped or step == config.steps or bool(config.save_every and step % config.save_every == 0)
        if save and not checked:
            self._check(watch)
        if probe and self.main:
            values = self.setup.probe.measure(self.state.model, self.setup.compute)
            self.setup.log.write("probe", step, **values)
            self.on_event(TrainEvent("note", step, message=f"step {step}: av_gap {values['av_gap']:+.5f}"))
        if preview and self.main:
            path = self.setup.run_dir / "samples" / f"step-{step:07d}.mp4"
            write_preview(path, self.state.ema.module, self.setup.preview_compute, self.setup.preview, config.seed)
            self.setup.log.write("sample", step, path=str(path.relative_to(self.setup.run_dir)))
            self.on_event(TrainEvent("note", step, message=f"step {step}: preview {path}"))
        if save:
            self.save(watch)
        return stopped

    def save(self, watch: DivergenceWatch) -> None:
        """A checkpoint of the state, once it is known to be finite."""
        self._check(watch, weights=True)
        saved = self.state.save(self.setup.run_dir / "checkpoints")
        if saved is not None:
            self.last_checkpoint = saved.path
            self.setup.log.write("checkpoint", saved.step, path=str(saved.path.relative_to(self.setup.run_dir)))

    def finish(self, watch: DivergenceWatch) -> Path:
        """The final EMA weights as RUN/model.safetensors, or a LoRA run's as RUN/adapter.safetensors (+ a json
        describing them); check the processes agree."""
        self._check(watch, weights=True)
        setup, state = self.setup, self.state
        digests = self.processes.gather(parameters_digest(state.model))
        path = setup.run_dir / state.files.final_name
        self.processes.check_on_main(lambda: check_final_json(setup.run_dir, path.name))  # a clip written there since the start
        if self.main:
            if len(set(digests)) != 1:
                raise RuntimeError(f"processes ended with different weights: {digests}")
            training = {
                "steps": state.step,
                "init": self.config.init,
                "data": str(setup.data_dir),
                "clips": setup.report.clips,
                "processes": self.processes.world_size,
                **setup.compute.record(),  # the last stretch's: a resume may train in another precision (its start line says)
            }
            metadata = {"source": "mmgen finetune", "weights": "ema", "training": training}
            with kept_together():  # the weights and their json: all new, or as they were (a stop cannot split them)
                retire(path.with_suffix(".json"))  # first: a kill -9 leaves no old json beside new weights
                sha256 = state.files.write(path, state.weights()["ema"], metadata)
                sidecar = {"arch": ARCH, "config": to_dict(setup.model_config), "sha256": sha256, "training": training}
                if state.files.lora:
                    sidecar["lora"] = {**to_dict(state.files.lora), "base": to_dict(state.files.base)}
                with atomic_output(path.with_suffix(".json"), overwrite=True) as tmp:
                    tmp.write_text(json_text(sidecar, indent=2) + "\n", encoding="utf-8")
            setup.log.write("done", state.step, model=path.name, sha256=sha256, process_digests=digests)
        self.processes.barrier()
        return path

    def _check(self, watch: DivergenceWatch, *, weights: bool = False) -> None:
        """Stop (TrainingDiverged) before writing anything from a run that diverged; rank 0 logs why."""
        step = self.state.step
        try:
            watch.check(self.processes, step, self.last_checkpoint, weights_finite=not weights or self.state.weights_finite())
        except TrainingDiverged as e:
            if self.main:
                self.setup.log.write("diverged", step, message=e.message)
            raise

    def _log_train(self) -> dict[str, float]:
        """The step's training values, written to the log (rank 0; the others, which take part in averaging them,
        get none)."""
        values = self.state.meter.take(self.processes)
        if not self.main:
            return {}
        step = self.state.step
        values["clips_per_s"] = values.pop("steps_per_s") * self.config.batch_size
        values["epoch"] = round(self._order.epoch_at(step), 4)
        self.setup.log.write("train", step, **values)
        return values

