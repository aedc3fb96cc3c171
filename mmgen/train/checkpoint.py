"""Training checkpoints: RUN/checkpoints/step-NNNNNNN/ holding everything a resumed run needs to continue
exactly as if it had never stopped.

    model.safetensors   raw weights  } mmgen safetensors (arch + config in the metadata): each is usable
    ema.safetensors     EMA weights  } directly as `mmgen generate -m …/ema.safetensors`
    state.pt            step, optimizer, LR scheduler, grad scaler, EMA count, every process's RNG states —
                        tensors and plain containers only, read back with torch.load(weights_only=True)

A checkpoint is built in a hidden temporary folder next to the others and renamed into place in one step,
so a step-N folder is always complete: a run killed mid-save leaves at most a stray temporary, which the
next save removes; an old checkpoint is pruned the other way round, renamed to such a temporary before it is
deleted. Every file and the folder are fsync-ed before the rename (mmgen.files), so this holds after a power
loss too. A checkpoint damaged later anyway (a truncated copy, a full disk, a file deleted) is skipped on
resume: the newest one that loads is used, and the damaged one is set aside as step-N.damaged.
"""

from __future__ import annotations

import itertools
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import safetensors
import torch

from mmgen.adapters import Adapter, LoraSpec, is_adapter_file, read_adapter
from mmgen.adapters.file import FORMAT as ADAPTER_FORMAT
from mmgen.disk_failures import read_failure, writing
from mmgen.errors import MmgenError, StorageError, UsageError
from mmgen.files import atomic_path, temporary_name
from mmgen.output_folders import check_folders
from mmgen.train.step_folders import Checkpoint, checkpoint_name, list_checkpoints, step_folders
from mmgen.weights import LoadedModel, load_model
from mmgen.weights.checkpoint import not_a_torch_checkpoint, torch_load_reason
from mmgen.weights.safetensors_open import safe_open


def load_state(checkpoint: Checkpoint) -> dict[str, Any]:
    """The training state, unpickled with weights_only=True (tensors and plain containers only), once it is known
    to be torch.save's file (not_a_torch_checkpoint: e.g. no zip archive that inflates past its size)."""
    path = checkpoint.path / "state.pt"
    if why := not_a_torch_checkpoint(path):
        raise ValueError(why)
    return torch.load(path, map_location="cpu", weights_only=True)


def load_ema(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    with safe_open(checkpoint.ema_weights) as f:  # safetensors.torch.load_file, but a file not to be read says why
        return {name: f.get_tensor(name) for name in f.keys()}


def unreadable(checkpoint: Checkpoint) -> str | None:
    """Why `checkpoint` cannot load, told without reading a tensor or unpickling anything: a file missing or empty,
    a weights file whose header does not cover it (cut short), a state.pt that is no torch.save file. None when it
    may load (load_checkpoint reads it all and finds the rest). A failing disk is no reason: its StorageError
    (read_failure) goes through, as load_checkpoint lets it."""
    if missing := checkpoint.missing():
        return missing
    for weights in (checkpoint.raw_weights, checkpoint.ema_weights):
        try:
            with safe_open(weights):
                pass
        except (OSError, safetensors.SafetensorError) as e:
            if isinstance(e, OSError) and (failure := read_failure(weights, e)) is not e:
                raise failure from None  # a failing disk is no damaged checkpoint, as load_checkpoint says it
            return f"{weights.name}: {' '.join(str(e).split()) or e.__class__.__name__}"
    why = not_a_torch_checkpoint(checkpoint.path / "state.pt")
    return f"state.pt: {why}" if why else None


def trained_lora(run_dir: Path) -> tuple[Checkpoint, LoraSpec | None] | None:
    """What a run trains, from the header of its newest checkpoint that has a readable one: LoRA adapters (their
    spec) or the whole model (None). None when there is no such checkpoint. Reads no tensors. A checkpoint whose
    header is damaged (cut short, no safetensors, an adapter's without its spec) is passed over, as resume_from
    passes over it; a disk failing under it, or a permission this user lacks, is the machine's trouble, not damage
    (read_failure: StorageError, exit 1), as load_checkpoint says it."""
    for checkpoint in reversed(list_checkpoints(run_dir / "checkpoints")):
        weights = checkpoint.raw_weights
        try:
            with safe_open(weights) as f:
                metadata = f.metadata() or {}
        except (OSError, safetensors.SafetensorError) as e:
            if isinstance(e, OSError) and (failure := read_failure(weights, e)) is not e:
                raise failure from None
            continue  # damaged, or gone since it was listed
        if metadata.get("format") != ADAPTER_FORMAT:
            return checkpoint, None
        try:
            return checkpoint, LoraSpec(int(metadata["rank"]), float(metadata["alpha"]), metadata["targets"])
        except (KeyError, ValueError, UsageError):  # no spec, or none an adapter can have
            continue
    return None


def save_checkpoint(
    folder: Path,
    step: int,
    *,
    model: torch.nn.Module,
    ema: torch.nn.Module,
    write: Callable[[Path, torch.nn.Module, dict[str, str]], object],
    state: dict[str, Any],
    keep: int,
) -> Checkpoint:
    """Write checkpoint `step` atomically and delete all but the newest `keep` (at least this one).
    A complete checkpoint of the same step already on disk is kept as it is: it holds the same state.
    `write(path, module, metadata)` writes one weights file (a whole model, or a LoRA run's adapters)."""
    check_folders(folder / checkpoint_name(step))  # the run's folder is the one it took: nothing made or removed elsewhere
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(step)
    for stray in folder.glob(".step-*.partial"):  # left by a killed run: a save's, or a pruned checkpoint's
        _remove(stray)
    if not (final.is_dir() and not Checkpoint(final, step).missing()):
        with atomic_path(final, folder=True) as tmp:  # an incomplete folder by that name is replaced
            metadata = {"step": str(step)}
            write(tmp / "model.safetensors", model, {**metadata, "weights": "raw"})
            write(tmp / "ema.safetensors", ema, {**metadata, "weights": "ema"})
            save_state(state, tmp / "state.pt")
    kept = list_checkpoints(folder)[-max(keep, 1):]
    for old in step_folders(folder):
        if kept and old.step < kept[0].step:
            _prune(old.path)
    return Checkpoint(final, step)


def _prune(path: Path) -> None:
    """Remove an old checkpoint: renamed aside first (a hidden temporary, which the next save sweeps), so a kill midway
    leaves no step folder holding some of its files — one such, an incomplete checkpoint, was never pruned again.
    Older incomplete step folders go too (save_checkpoint): one a kill left so before this pruned them whole."""
    aside = temporary_name(path)
    try:
        path.rename(aside)
    except OSError:
        return  # (as rmtree's ignored errors: the next save tries again)
    _remove(aside)


def _remove(path: Path) -> None:
    """Remove a checkpoint set aside; one that is a link, the link alone (rmtree refuses a link, and so it stayed,
    hidden, for good). Errors are ignored: the next save tries again."""
    if path.is_symlink():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def save_state(state: dict[str, Any], path: Path) -> None:
    """`torch.save`, a failing write raised as the OSError it is: torch reports a full disk as a RuntimeError
    without an errno ("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"), so the file is
    written through a Python file whose failed write is kept, and a failing disk is the one line naming `path`
    (mmgen.disk_failures.writing)."""
    with writing(path), open(path, "wb") as file:
        recorded = _FailedWrite(file)
        try:
            torch.save(state, recorded)
        except RuntimeError:
            if recorded.failure is None:
                raise
            raise recorded.failure from None


class _FailedWrite:
    """A binary file for torch.save that keeps the OSError of a write that failed."""

    def __init__(self, file: BinaryIO):
        self.file, self.failure = file, None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.failure = self.failure or e
            raise

    def flush(self) -> None:
        self.file.flush()


@dataclass(frozen=True)
class Resumable:
    """A checkpoint read back whole: raw weights (with their architecture and config), EMA weights, state."""

    checkpoint: Checkpoint
    raw: LoadedModel | Adapter  # an Adapter for a LoRA run (its base is loaded from the run's --from)
    ema: dict[str, torch.Tensor]
    state: dict[str, Any]


class DamagedCheckpoint(Exception):
    """A checkpoint folder whose files do not load (missing, truncated, zero bytes, not what they claim)."""


# What loading a damaged file raises: safetensors' header errors, torch.load's zip reader (RuntimeError),
# a cut-off pickle, or our own "not an mmgen model" errors.
_LOAD_ERRORS = (
    OSError, RuntimeError, ValueError, EOFError, KeyError, pickle.UnpicklingError,
    safetensors.SafetensorError, MmgenError,
)  # fmt: skip


def load_checkpoint(checkpoint: Checkpoint) -> Resumable:
    """Read every file of `checkpoint` into memory (CPU); DamagedCheckpoint naming the file that does not load
    or is missing (a step folder copied or pruned by hand)."""
    if missing := checkpoint.missing():  # as unreadable() says it
        raise DamagedCheckpoint(missing)
    parts: dict[str, Any] = {}
    for name, read in (
        ("model.safetensors", lambda: _read_raw(checkpoint.raw_weights)),
        ("ema.safetensors", lambda: load_ema(checkpoint)),
        ("state.pt", lambda: load_state(checkpoint)),
    ):
        try:
            parts[name] = read()
        except StorageError:  # the disk failed under it (disk_failures.reading): the checkpoint may well be whole
            raise
        except _LOAD_ERRORS as e:
            if isinstance(e, OSError) and (failure := read_failure(checkpoint.path / name, e)) is not e:
                raise failure from None  # likewise: a failing disk is no damaged checkpoint, never set aside
            if name == "state.pt":  # torch.load's message runs over a paragraph of advice: what it found, in brief
                reason = torch_load_reason(e)
            else:
                reason = (" ".join(str(e).split()) or e.__class__.__name__)[:200]
            raise DamagedCheckpoint(f"{name}: {reason}") from None
    return Resumable(checkpoint, parts["model.safetensors"], parts["ema.safetensors"], parts["state.pt"])


def _read_raw(path: Path) -> LoadedModel | Adapter:
    return read_adapter(path) if is_adapter_file(path) else load_model(path)


def resume_from(run_dir: Path) -> tuple[Resumable | None, list[tuple[Checkpoint, str]]]:
    """The newest checkpoint of a run that loads (None when none does), and the newer step folders that do not
    (a file damaged or missing), each with the reason."""
    damaged: list[tuple[Checkpoint, str]] = []
    for checkpoint in reversed(step_folders(run_dir / "checkpoints")):
        try:
            return load_checkpoint(checkpoint), damaged
        except DamagedCheckpoint as e:
            damaged.append((checkpoint, str(e)))
    return None, damaged


def set_aside(checkpoint: Checkpoint) -> Path:
    """Rename a damaged checkpoint out of the way (step-N.damaged), so the resumed run can save step N again. One
    set aside before keeps its name: the second is step-N.damaged-2, and so on (they are evidence, never deleted)."""
    target = checkpoint.path.with_name(checkpoint.path.name + ".damaged")
    for n in itertools.count(2):
        try:
            checkpoint.path.rename(target)  # an existing non-empty folder refuses the rename
            return target
        except OSError as e:
            if not target.exists():
                raise UsageError(f"cannot set the damaged checkpoint {checkpoint.path} aside: {e.strerror}") from None
            target = checkpoint.path.with_name(f"{checkpoint.path.name}.damaged-{n}")
