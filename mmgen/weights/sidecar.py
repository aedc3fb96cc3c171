"""A weights file given by path and the json beside it (RUN/model.json: the sha256 and config a finetune run wrote
for RUN/model.safetensors), as last kept. A run that writes its final weights again (a resumed run reaching its end)
retires the json first and writes it last, in one files.kept_together: while the json is gone — that replacement
in flight, or killed outright (put back by the next finetune there: train.run_folder.put_back_final) — the weights
to read are the ones the json it kept aside describes (kept_states.last_kept), never new ones it may not have finished.
The same view as a cached model's (weights.cache) and a registered adapter's (adapters.store)."""

from __future__ import annotations

from pathlib import Path

from mmgen.config import MAX_RECORD_BYTES, parse_json, read_small_file
from mmgen.errors import ConfigError
from mmgen.files import sha256_file
from mmgen.kept_states import last_kept


def json_of(weights: Path) -> Path:
    """Where the json describing a weights file is: beside it, of the same stem."""
    return weights.with_suffix(".json")


def describes(json_file: Path, weights: Path) -> bool:
    """Whether the json `json_file` describes the weights file `weights`: the sha256 it records."""
    try:
        recorded = parse_json(read_small_file(json_file, MAX_RECORD_BYTES), str(json_file), "sidecar").get("sha256")
    except (OSError, ConfigError, AttributeError):
        return False
    return isinstance(recorded, str) and sha256_file(weights) == recorded


def kept_files(weights: Path) -> tuple[Path, Path | None]:
    """The file to read for the weights file given as `weights`, and the json describing it (None: there is none):
    `weights` and its json while the json is there (or neither ever was), else the pair a replacement kept aside."""
    kept = last_kept(json_of(weights), weights, describes)
    return (weights, None) if kept is None else (kept[1], kept[0])
