"""A run's checkpoint folders as they lie on disk (RUN/checkpoints/step-NNNNNNN/), found by their names and files
alone: nothing is read, and torch is not imported, so that finetune's command line can judge a run folder before
torch loads (train.run_checks.check_run_folder). Reading and writing checkpoints is train.checkpoint's."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"step-(\d+)")
FILES = ("model.safetensors", "ema.safetensors", "state.pt")


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's step folder on disk (complete unless `missing` says otherwise)."""

    path: Path
    step: int

    @property
    def raw_weights(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def ema_weights(self) -> Path:
        return self.path / "ema.safetensors"

    def missing(self) -> str | None:
        """Which of its files are not there (a step folder copied or pruned by hand, a save killed half way), as the
        reason it cannot load, said alike by checkpoint.unreadable and load_checkpoint; None when all are."""
        gone = [f for f in FILES if not (self.path / f).is_file()]
        return f"{', '.join(gone)} {'is' if len(gone) == 1 else 'are'} missing" if gone else None


def step_folders(folder: Path) -> list[Checkpoint]:
    """Every step-N folder in `folder`, complete or not, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.fullmatch(path.name)
        if match and path.is_dir():
            found.append(Checkpoint(path, int(match.group(1))))
    return sorted(found, key=lambda c: c.step)


def list_checkpoints(folder: Path) -> list[Checkpoint]:
    """Complete checkpoints in `folder`, oldest first."""
    return [c for c in step_folders(folder) if not c.missing()]


def latest_checkpoint(folder: Path) -> Checkpoint | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None
