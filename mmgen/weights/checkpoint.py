"""Reading and writing weight files: official torch checkpoints (only ever through
`torch.load(weights_only=True)`) and mmgen safetensors, whose metadata carries the architecture and config
so a file is self-describing."""

from __future__ import annotations

import io
import json
import mmap
import pickle
import pickletools
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmgen import __version__
from mmgen.config import to_dict
from mmgen.disk_failures import read_failure, reading
from mmgen.errors import MmgenError, UsageError, WeightsMismatch
from mmgen.files import atomic_path, sha256_file
from mmgen.input_files import why_not_a_file
from mmgen.weights.architecture import FORMAT_TAG, first_bytes, is_safetensors
from mmgen.weights.safetensors_file import read_tensors, save_safetensors

# How every file torch.save writes begins: its zip archive, or its legacy format, pickles of which the first is its
# magic number: after protocol 2's PROTO, or — pickle_protocol 0 or 1, never its default — written out as text
# (which torch.load(weights_only=True) does not read: said once torch.load has met it).
_TORCH_STARTS = (b"PK\x03\x04", b"\x80", b"L%dL\n." % torch.serialization.MAGIC_NUMBER)


def not_a_torch_checkpoint(path: Path) -> str | None:
    """Why `path` cannot be a torch.save file, told without unpickling anything — from its first bytes, and for a zip
    archive from its index (read from its end: a file cut short has none); None when it may be one (a damaged
    pickle is then for torch.load to find)."""
    head = first_bytes(path, max(map(len, _TORCH_STARTS)))
    if head.startswith(_TORCH_STARTS[0]):
        return _not_torch_zip(path)
    if head.startswith(_TORCH_STARTS):
        return None
    return "it is empty" if not head else f"it begins with {head[:8]!r}: neither a zip archive nor a pickle"


def _not_torch_zip(path: Path) -> str | None:
    """Told from the archive's index alone. torch.save stores its entries as they are, never compressed, so that
    their bytes hold no more than the file does: an entry compressed, or sizes adding up to more than the file (a
    "zip bomb": 19 MB that torch.load inflated to 4 GiB before anything refused it), is no torch.save file."""
    try:
        with reading(path), zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError):
        return "a zip archive cut short or damaged: its index is missing or unreadable"
    if not any(entry.filename.endswith("/data.pkl") and entry.filename.count("/") == 1 for entry in entries):
        return "a zip archive without the data.pkl that torch.save writes"
    if compressed := [entry.filename for entry in entries if entry.compress_type != zipfile.ZIP_STORED]:
        return f"its entry {compressed[0]} is compressed, which torch.save never does"
    if (claimed := sum(entry.file_size for entry in entries)) > (size := path.stat().st_size):
        return f"a zip archive whose entries claim {claimed:,} bytes, more than its {size:,}"
    return None


def damaged_torch_checkpoint(path: Path, why: str) -> UsageError:
    return UsageError(f"{path}: damaged, or not a PyTorch checkpoint ({why})", hint="get the file again")


def torch_load_reason(error: Exception) -> str:
    """torch.load's error in a few words. torch's own messages run over several lines of advice (weights_only's)
    or carry an "[enforce fail at inline_container.cc:…]" prefix (and the check that failed, as code) and a
    paragraph on miniz; the first sentence of the part that says what was found is kept."""
    text = str(error)
    if "WeightsUnpickler error:" in text:  # weights_only's unpickler: what it met comes after its advice
        text = text.split("WeightsUnpickler error:", 1)[1]
    text = re.sub(r"^\s*\[enforce fail at [^\]]*\]\s*\.?", "", text).strip()
    text = re.sub(r"^[\w\s.()]*(?:==|!=|<=|>=)[^.]*\.\s*", "", text)  # the failed check's code ("err == 0.")
    reason = re.split(r"\.(?:\s|$)", text.splitlines()[0] if text else "", maxsplit=1)[0].strip()
    reason = "".join(c if c.isprintable() else repr(c)[1:-1] for c in reason)[:160]
    return reason or ("it ends too early" if isinstance(error, EOFError) else error.__class__.__name__)


def _torch_load_failure(path: Path, error: Exception) -> MmgenError:
    """torch.load's error for `path` as one short line: the disk failing under it (read_failure: the machine's
    trouble, exit 1); torch.save's pickle cut short or damaged (told by reading its instructions: a pickle cut
    inside a class name names a class that is not there); Python objects that weights_only refuses (never
    executed); a whole pickle whose instructions weights_only does not read (a newer pickle protocol); or else a
    damaged file."""
    if isinstance(error, OSError) and (failure := read_failure(path, error)) is not error:
        return failure
    reason = torch_load_reason(error)
    found = _read_pickle(path)
    foreign = found.foreign  # first: a pickle naming os.system is to distrust, whether torch.save's or whole or not
    if not foreign and not found.whole:  # damaged, whatever torch met: in torch.save's words where it is its own
        return damaged_torch_checkpoint(path, found.why or reason)
    if foreign or (isinstance(error, pickle.UnpicklingError) and reason.startswith("Unsupported global")):
        return UsageError(
            f"{path}: refused to load: it holds Python objects other than tensors ({foreign or reason})",
            hint="mmgen only opens checkpoints with torch.load(weights_only=True); get the file from a trusted source",
        )
    if (refused := re.fullmatch(r"Unsupported operand (\d+)", reason)) and (
        instruction := pickletools.code2op.get(chr(int(refused.group(1))))
    ):
        # Protocol 0 names each storage by a tuple written out as text (PERSID), which torch.load asserts it reads
        # back as a tuple ("saved_id must be a tuple, got str"): no torch.load reads it, weights_only or not.
        again = ("load it and save it again" if found.protocol else
                 "no torch.load reads protocol 0 back: save the weights again, from where they were made,")
        return UsageError(
            f"{path}: saved with pickle protocol {found.protocol}, whose {instruction.name} instruction "
            f"torch.load(weights_only=True) does not read (PyTorch {torch.__version__})",
            hint=f"{again} with torch.save's default pickle_protocol (2)",
        )
    return damaged_torch_checkpoint(path, reason)


_LEGACY_PICKLES = 5  # torch.save's legacy format: a magic number, its version, the system's sizes, the objects, the
# keys of their storages (whose bytes follow)


@dataclass(frozen=True)
class _Pickle:
    """What reading a pickle's instructions found: its protocol (its PROTO's, or for a pickle without one —
    protocols 0 and 1 — that of its newest instruction), whether it is whole, and if not, why in a few words when
    it is torch.save's (None: torch's own finding says it better, e.g. of bytes that are no pickle at all); and the
    first global it names that a state dict never holds (`posix.system`), if any."""

    protocol: int
    whole: bool = True
    why: str | None = None
    foreign: str | None = None


# The globals a state dict's pickle names: torch's own (its tensor and storage rebuilders, dtypes, devices),
# collections.OrderedDict (what state_dict() returns) and _codecs.encode (protocol 2's bytes). Any other — a class
# of the saver's, os.system — is a Python object, which weights_only refuses.
_STATE_DICT_GLOBALS = ("collections.OrderedDict", "_codecs.encode")
_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GETS = {"GET", "BINGET", "LONG_BINGET"}


def _is_foreign(name: str) -> bool:
    return not (name.split(".", 1)[0] == "torch" or name in _STATE_DICT_GLOBALS)


class _Globals:
    """The globals a pickle names, read from its instructions as genops yields them: GLOBAL and INST carry theirs
    ("module name"); STACK_GLOBAL (protocol 4) takes the two strings pushed before it, directly or from the memo.
    Only strings are followed — enough to name every global, with nothing built."""

    def __init__(self):
        self.pushed: list[str | None] = []  # what each instruction pushed: a string, or None for anything else
        self.memo: dict[int, str | None] = {}
        self.foreign: str | None = None

    def see(self, name: str, argument: Any) -> None:
        if name in ("GLOBAL", "INST"):
            self._named(argument.replace(" ", "."))
        elif name == "STACK_GLOBAL":
            module, attribute = self.pushed[-2:] if len(self.pushed) >= 2 else (None, None)
            self._named(f"{module}.{attribute}" if module and attribute else "a global the pickle builds")
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self.pushed[-1] if self.pushed else None
        elif name in _MEMO_PUTS:
            self.memo[argument] = self.pushed[-1] if self.pushed else None
        elif name in _MEMO_GETS:
            self.pushed.append(self.memo.get(argument))
        elif name not in ("PROTO", "FRAME", "STOP"):
            self.pushed.append(argument if name in _STRINGS and isinstance(argument, str) else None)

    def _named(self, name: str) -> None:
        self.pushed.append(None)
        if self.foreign is None and _is_foreign(name):
            self.foreign = name


def _read_pickle(path: Path) -> _Pickle:
    """The pickle torch.load reads in `path` (a zip archive's data.pkl; the legacy format's pickles before the
    tensors' bytes), read instruction by instruction (pickletools.genops), which builds and imports nothing; the
    legacy format through a memory map, not read in full."""
    with reading(path), open(path, "rb") as file:
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                name = next(n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1)
                try:
                    data = archive.read(name)
                except zipfile.BadZipFile as e:  # its bytes fail their CRC-32: changed since torch.save wrote them
                    return _Pickle(0, whole=False, why=str(e))
            return _instructions(io.BytesIO(data), len(data), 1)
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return _instructions(mapped, len(mapped), _LEGACY_PICKLES, first=torch.serialization.MAGIC_NUMBER)


def _instructions(stream: Any, size: int, pickles: int, first: int | None = None) -> _Pickle:
    """`first`: the number the first pickle must be (the legacy format's magic number); a pickle that is
    something else is no torch.save file at all (a plain pickle.dump), whatever follows it."""
    protocol = 0
    names = _Globals()
    numbers: list[int | None] | None = [] if first is not None else None  # the first pickle's values, for `first`
    try:
        for _ in range(pickles):
            for instruction, argument, _position in pickletools.genops(stream):
                protocol = max(protocol, argument if instruction.name == "PROTO" else instruction.proto)
                names.see(instruction.name, argument)
                if numbers is not None and instruction.name not in ("PROTO", "FRAME", "STOP"):
                    numbers.append(argument if instruction.name.startswith(("LONG", "INT", "BININT")) else None)
            if numbers is not None and numbers != [first]:
                return _Pickle(protocol, whole=False, why="a pickle, but not one torch.save wrote",
                               foreign=names.foreign)
            numbers = None  # the later pickles' values are the checkpoint's own: nothing to compare
    except ValueError as e:
        why = "its pickle is cut short" if stream.tell() >= size else f"its pickle is damaged ({e})"
        return _Pickle(protocol, whole=False, why=why if protocol >= 2 else None,  # torch.save writes PROTO 2 on
                       foreign=names.foreign)
    return _Pickle(protocol, foreign=names.foreign)


def check_weight(path: Path, name: str, tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` (the weights file's `name`) if it is floating-point and holds no NaN or Inf. Every weight of
    mmgen's architectures is floating-point: integer or bool values (a dtype changed in a file's header) would
    only fail as torch copies them into the model, in a paragraph naming no file. And a trained model never holds
    NaN or Inf: such a file was damaged (or saved from a diverged run), and is refused as it loads rather than
    found out minutes later as a NaN video."""
    if not tensor.is_floating_point():
        raise UsageError(f"{path}: not a model's weights: {name} holds {str(tensor.dtype).removeprefix('torch.')} "
                         "values, where every weight is floating-point", hint="get the file again")
    # A finite sum proves every value finite, at a seventh of isfinite's cost (0.1 s for the paper's 134 M
    # weights on one thread); only a sum that overflowed or is NaN is looked at value by value.
    if not torch.isfinite(tensor.sum()) and not torch.isfinite(tensor).all():
        raise UsageError(f"{path}: damaged: its weights hold NaN or Inf values (first in {name})",
                         hint="get the file again")
    return tensor


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A flat name → tensor mapping from a safetensors file or a torch checkpoint. Pickles are opened with
    weights_only=True: anything but tensors and plain containers is refused, never executed. The tensors are
    as the file holds them: check_weight them once their names are known to be the architecture's (an extra
    entry, say a training step counter, is an unexpected key, not a damaged weight)."""
    path = Path(path)
    if why := why_not_a_file(path):
        raise UsageError(f"{path}: {why}")
    if is_safetensors(path):
        return dict(read_tensors(path))
    if why := not_a_torch_checkpoint(path):  # text or random bytes: torch.load said "KeyError: 101", exit 1
        raise damaged_torch_checkpoint(path, why)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, IndexError, struct.error) as e:
        raise _torch_load_failure(path, e) from None  # (the last two: weights_only's unpickler on a pickle cut short)
    return _flat_tensors(state, path)


def _flat_tensors(state: Any, path: Path) -> dict[str, torch.Tensor]:
    """Official checkpoints are plain {name: tensor} dicts (official-checkpoints.md §2); say what else we got."""
    if not isinstance(state, dict):
        raise WeightsMismatch(
            f"{path}: expected a mapping of parameter names to tensors, got {type(state).__name__}"
        )
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise WeightsMismatch(
            f"{path}: expected a flat mapping of parameter names to tensors; "
            f"{', '.join(map(repr, not_tensors[:3]))} hold{'s' if len(not_tensors) == 1 else ''} "
            f"{type(state[not_tensors[0]]).__name__} values",
            hint="unwrap the state dict (e.g. checkpoint['state_dict']) and save it alone",
        )
    return dict(state)


def save_model(
    path: str | Path,
    model: torch.nn.Module | dict[str, torch.Tensor],
    arch: str,
    config: Any,
    extra_metadata: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> str:
    """Write `model` (or a state dict) as an mmgen safetensors with arch + config in its metadata, atomically
    (mmgen.files.atomic_path). Floating tensors are cast to `dtype` if given.
    Returns the sha256 of the written file."""
    path = Path(path)
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    tensors, storages = {}, set()
    for name, tensor in state.items():
        tensors[name] = _own_storage(tensor, dtype, storages)
    metadata = {
        "format": FORMAT_TAG,
        "arch": arch,
        "config": json.dumps(to_dict(config) if not isinstance(config, dict) else config),
        "mmgen_version": __version__,
    }
    for key, value in (extra_metadata or {}).items():
        metadata[key] = value if isinstance(value, str) else json.dumps(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_safetensors(tensors, tmp, metadata)
        digest = sha256_file(tmp)
    return digest


def _own_storage(t: torch.Tensor, dtype: torch.dtype | None, storages: set[int]) -> torch.Tensor:
    """`t` on the CPU, contiguous, with a storage of its own (floating tensors cast to `dtype` when given): copied
    only when it is not so already. safetensors needs one storage per tensor, where official checkpoints hold views
    into a few big flat storages (and a model may tie two names to one tensor); a tensor read from a file
    (safetensors_file.read_tensors) or cast here is its storage's alone, and is not copied again. `storages`: those
    of the tensors kept so far."""
    cast = dtype if dtype is not None and t.is_floating_point() else t.dtype
    t = t.detach().to("cpu", cast).contiguous()
    storage = t.untyped_storage()
    if t.storage_offset() or storage.nbytes() != t.nbytes or storage.data_ptr() in storages:
        t = t.clone()
    if t.nbytes:
        storages.add(t.untyped_storage().data_ptr())
    return t
