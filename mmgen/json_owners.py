"""Whose record a json file is. mmgen names two kinds of json alike — a clip's sidecar NAME.json beside NAME.mp4,
and a model's json RUN/model.json beside RUN/model.safetensors (a finetune run's final weights) — so a clip written
as RUN/model.mp4 and the run in RUN would write one file. Each writer replaces only its own kind: a clip never a
model's json (pipelines.outputs.check_not_anothers), a run never a clip's sidecar (train.run_folder.check_final_json).
The kind is told from what the file holds: a sidecar records its clip ("mp4"), a model's json the weights it
describes ("arch" and their "sha256")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmgen.config import MAX_RECORD_BYTES, parse_json, read_small_file
from mmgen.errors import ConfigError

WEIGHTS_SUFFIX = ".safetensors"  # a model's json describes the weights file of its stem (weights.sidecar.json_of)


@dataclass(frozen=True)
class JsonRecord:
    """A json file mmgen wrote: `kind` "clip" (a clip's sidecar) or "model" (a model's json), what it holds, and
    the file it describes, beside it (`owner`: the clip's movie, or the model's weights)."""

    kind: str
    fields: dict
    owner: Path

    def __str__(self) -> str:
        return f"the sidecar of the clip {self.owner}" if self.kind == "clip" else f"the json of the model {self.owner}"


def read_record(json_file: Path) -> JsonRecord | None:
    """The record at `json_file`; None where there is none, or not one mmgen writes."""
    try:
        fields = parse_json(read_small_file(json_file, MAX_RECORD_BYTES), str(json_file), "sidecar")
    except (OSError, ConfigError):
        return None
    if not isinstance(fields, dict):
        return None
    if isinstance(fields.get("mp4"), str) and (name := Path(fields["mp4"]).name):
        return JsonRecord("clip", fields, json_file.with_name(name))
    if isinstance(fields.get("arch"), str) and isinstance(fields.get("sha256"), str):
        return JsonRecord("model", fields, json_file.with_suffix(WEIGHTS_SUFFIX))
    return None
