"""Adapter files: `adapter.safetensors` holds each adapted layer's A and B and, in its metadata, the spec
(rank, alpha, targets), the base model it was trained on (registry name, sha256 of its weights file — and of
the file that file was converted from without changing a value, when it was — architecture and config) and a digest of its own tensors — so a file damaged or edited after it was written
is refused, even when it is passed around by hand with no registry entry to check it against."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import safetensors
import safetensors.torch
import torch
from torch import nn

from mmgen import __version__
from mmgen.adapters.lora import adapter_state
from mmgen.adapters.spec import LoraSpec
from mmgen.config import parse_json, to_dict
from mmgen.disk_failures import reading
from mmgen.errors import ChecksumMismatch, ConfigError, UsageError
from mmgen.files import atomic_path, sha256_file
from mmgen.input_files import why_not_a_file
from mmgen.weights import sidecar
from mmgen.weights.safetensors_file import from_bytes, save_safetensors
from mmgen.yaml_files import MAX_NUMBER_CHARS

if TYPE_CHECKING:
    from mmgen.weights.load import LoadedModel

FORMAT = "mmgen-adapter/1"
PARTS = ("lora_A", "lora_B")  # each adapted layer's two tensors: A (rank, fan_in), B (fan_out, rank)
# The most an adapter may move one weight (alpha × max|A| × max|B| bounds it): a trained one moves them by
# hundredths; past this a float16 model overflows, and values of 3e38 gave a NaN video only after sampling.
MAX_DELTA = 1e4


@dataclass(frozen=True)
class BaseModel:
    """What an adapter was trained on, and what a model must be for the adapter to apply."""

    name: str
    sha256: str
    arch: str
    config: dict
    same_weights_as: str | None = None  # the file the base was converted from without changing a value (if so)

    @classmethod
    def of(cls, model: LoadedModel, name: str | None = None) -> BaseModel:
        """A loaded model, as an adapter trained on it records it (`name`: the name it was asked by)."""
        return cls(name or model.name, model.sha256, model.arch, to_dict(model.config), model.same_weights_as)

    def identities(self) -> set[str]:
        """The sha256 of every file holding exactly these weights that mmgen knows of."""
        return {self.sha256, self.same_weights_as} - {None}


@dataclass(frozen=True)
class Adapter:
    """An adapter read from a file and verified."""

    path: Path  # the adapter file as given (a registered one's: adapters/NAME/adapter.safetensors)
    spec: LoraSpec
    base: BaseModel
    tensors: dict[str, torch.Tensor]  # "<module>.lora_A" (rank, fan_in), "<module>.lora_B" (fan_out, rank)
    sha256: str  # of the file read
    mmgen_version: str
    read_from: Path | None = None  # the file read, where it is not `path`: what a replacement in flight kept aside
    named: str | None = None  # as the command named it (a registered adapter's name, a path as typed); None: `path`

    @property
    def shown(self) -> str:
        """The adapter as the lines about using it name it: as it was given (`my-style`, `./x.safetensors`)."""
        return self.named or str(self.path)

    def layers(self) -> list[str]:
        return sorted({key.rsplit(".", 1)[0] for key in self.tensors})

    def delta(self, layer: str) -> torch.Tensor:
        """scale · B @ A of one layer, (fan_out, fan_in)."""
        a, b = self.tensors[f"{layer}.lora_A"], self.tensors[f"{layer}.lora_B"]
        return (b.double() @ a.double()) * (self.spec.alpha / self.spec.rank)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, shapes and bytes in name order: what the file's metadata vouches for."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{key}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_adapter(
    path: str | Path, model: nn.Module, spec: LoraSpec, base: BaseModel, extra_metadata: dict | None = None
) -> str:
    """Write the adapters attached to `model` (atomically), with `extra_metadata` (e.g. how it was trained);
    returns the file's sha256."""
    tensors = adapter_state(model)
    metadata = {
        **{k: v if isinstance(v, str) else json.dumps(v) for k, v in (extra_metadata or {}).items()},
        "format": FORMAT,
        "rank": str(spec.rank),
        "alpha": repr(float(spec.alpha)),
        "targets": spec.targets,
        "base": base.name,
        "base_sha256": base.sha256,
        **({"base_same_weights_as": base.same_weights_as} if base.same_weights_as else {}),
        "arch": base.arch,
        "base_config": json.dumps(base.config, sort_keys=True),
        "tensors_sha256": tensors_digest(tensors),
        "mmgen_version": __version__,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_safetensors(tensors, tmp, metadata)
    return sha256_file(path)


def is_adapter_file(path: str | Path) -> bool:
    """Whether `path` is a safetensors file whose metadata says it is an mmgen adapter (never opened unless it is
    a regular file: opening a named pipe would wait for a writer, deaf to Ctrl-C)."""
    if why_not_a_file(path):
        return False
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format") == FORMAT
    except Exception:  # not a safetensors file at all
        return False


def read_adapter(path: str | Path, read_from: Path | None = None, named: str | None = None,
                 data: bytes | None = None) -> Adapter:
    """Read and verify the adapter file `path`: a clear UsageError when it is not one, ChecksumMismatch when its
    tensors are not the ones it was written with. It is read as last kept, as a model by path is (weights.load):
    while a LoRA run writes RUN/adapter.safetensors again with its json, or after one was killed doing so, from the
    file the json it kept aside describes (weights.sidecar.kept_files) — or from `read_from`, where the caller found
    that file itself (a registered adapter's, adapters.store). Either way the adapter is `path`: what errors and
    sidecars name, never a hidden file kept aside. `named`: how the command named it (Adapter.named), else `path`
    as given. Its refusals name it `named` too, with the file as the detail where that is another name
    (`adapter style (its registered file …/adapters/style/adapter.safetensors): damaged metadata …`), as a cached
    model's damaged file is said under the model's name. The file is read once, whole (`data`: where the caller
    read it, to check its sha256 first): its sha256 is of the bytes its tensors are loaded from, never of a file
    that replaced it between two reads."""
    named = named or str(path)
    path = Path(path)
    about = f"adapter {named}" if Path(named) == path else f"adapter {named} (its registered file {path})"
    if why := why_not_a_file(path):
        raise UsageError(f"{about}: {why}")
    file = read_from or sidecar.kept_files(path)[0]
    if data is None:
        data = read_whole(file)
    metadata, tensors = from_bytes(data, file)
    if metadata.get("format") != FORMAT:
        raise UsageError(f"{about} is not an mmgen adapter (no '{FORMAT}' in its metadata)",
                         hint="adapters are the RUN/adapter.safetensors of `mmgen finetune --lora`")
    try:
        rank, alpha = _number(metadata, "rank", int), _number(metadata, "alpha", float)
        if not (rank >= 1 and math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"rank {rank} and alpha {alpha}: a rank of at least 1 and a positive alpha expected")
        spec = LoraSpec(rank, alpha, metadata["targets"])
        base = BaseModel(metadata["base"], metadata["base_sha256"], metadata["arch"],
                         parse_json(metadata["base_config"], about, "metadata 'base_config'"),
                         metadata.get("base_same_weights_as"))
        expected = metadata["tensors_sha256"]
    except (KeyError, ValueError, UsageError) as e:
        raise ConfigError(f"{about}: damaged metadata ({e})") from None
    actual = tensors_digest(tensors)
    if actual != expected:
        raise ChecksumMismatch(
            f"{about}: its tensors do not match the digest it was written with "
            f"(expected {expected[:12]}…, got {actual[:12]}…): the file was changed or damaged",
            hint="get the adapter file again",
        )
    check_tensors(about, tensors, spec)
    return Adapter(path, spec, base, tensors, hashlib.sha256(data).hexdigest(), metadata.get("mmgen_version", "?"),
                   None if file == path else file, named)


def read_whole(file: Path) -> bytes:
    """The adapter file `file`'s bytes, read once (a failing disk: the line naming it, disk_failures.reading)."""
    with reading(file):
        return Path(file).read_bytes()


def _number(metadata: dict[str, str], key: str, kind: type[int] | type[float]) -> int | float:
    """An adapter's number `key` from its metadata: ValueError, in words for people, when it is none."""
    text = metadata[key]
    if len(text) > MAX_NUMBER_CHARS:  # int() past 4300 digits says only to call sys.set_int_max_str_digits()
        raise ValueError(f"{key}: a number too long")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{key}: {text!r} is not a number") from None


def check_tensors(about: str, tensors: dict[str, torch.Tensor], spec: LoraSpec) -> None:
    """Refuse, as the adapter is read (registered, used or merged), tensors that are no adapter's: a name that is
    no layer's lora_A or lora_B, a layer with one of the two, shapes that are not (rank, fan_in) and (fan_out,
    rank) at the metadata's rank, values that are not floating-point or not finite, or that with alpha would move
    a weight by more than MAX_DELTA. Such a file failed as a KeyError or a shape error, or as a NaN video after
    sampling; whether each layer fits the model is check_fits's, where the model is at hand. `about`: the adapter as
    its refusals name it (read_adapter)."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        layer, _, part = key.rpartition(".")
        if not layer or part not in PARTS:
            raise UsageError(f"{about}: damaged: tensor {key!r} is no layer's lora_A or lora_B",
                             hint="get the adapter file again")
        layers.setdefault(layer, {})[part] = tensor
    if not layers:
        raise UsageError(f"{about}: damaged: it holds no layers", hint="get the adapter file again")
    for layer, parts in sorted(layers.items()):
        if len(parts) != len(PARTS):
            has, lacks = (p for p in (PARTS if "lora_A" in parts else PARTS[::-1]))
            raise UsageError(f"{about}: damaged: layer {layer} has {has} but no {lacks}",
                             hint="get the adapter file again")
        a, b = parts["lora_A"], parts["lora_B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != spec.rank or b.shape[1] != spec.rank:
            raise UsageError(f"{about}: damaged: layer {layer}'s lora_A {tuple(a.shape)} and lora_B "
                             f"{tuple(b.shape)} are not (rank, fan_in) and (fan_out, rank) at its rank {spec.rank}",
                             hint="get the adapter file again")
        if not (a.is_floating_point() and b.is_floating_point()):
            raise UsageError(f"{about}: damaged: layer {layer} holds {str(a.dtype).removeprefix('torch.')} "
                             "values, where an adapter's are floating-point", hint="get the adapter file again")
        largest = [t.abs().max().item() if t.numel() else 0.0 for t in (a, b)]
        if not all(math.isfinite(x) for x in largest):
            raise UsageError(f"{about}: damaged: layer {layer} holds NaN or Inf values",
                             hint="get the adapter file again")
        if spec.alpha * largest[0] * largest[1] > MAX_DELTA:
            raise UsageError(f"{about}: layer {layer} would move a weight by up to "
                             f"{spec.alpha * largest[0] * largest[1]:.3g} (alpha {spec.alpha:g}); an adapter moves "
                             f"them by at most {MAX_DELTA:g}", hint="get the adapter file again")
