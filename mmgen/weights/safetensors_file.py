"""Reading and writing safetensors files.

Reading: a file's header is checked by the library (mmgen.weights.safetensors_open, whose one UsageError names a
damaged file and what is wrong with it); the tensors themselves are read with plain reads (`read_tensors`), not
through the library's memory map, on which a failing disk is a SIGBUS.

Writing: bytes that depend only on what the file holds. safetensors (0.8) writes the `__metadata__` map in a hash
map's random order (safetensors issue #584), so saving the same model twice gave two files with two sha256s, and
a model re-imported or re-pulled got a new identity (its sidecars and batch records no longer matched it). The
metadata keys are put in sorted order after the library has written the file; the header keeps its length (the
same entries, serialised as serde_json serialises them), so the tensor data is not moved. And the library creates
its file readable by its owner only (0600): the file gets the mode any other file of the user's gets (0666 less
the umask), as mmgen's clips and sidecars do."""

from __future__ import annotations

import functools
import json
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from mmgen.config import parse_json
from mmgen.disk_failures import reading
from mmgen.errors import UsageError
from mmgen.weights.safetensors_open import open_safetensors

_HEADER_LENGTH = struct.Struct("<Q")
_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how the library (Rust's io::Error) ends an I/O failure


# The format's dtype names (the library's own table, safetensors.torch._TYPES, is private).
_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
           "I16": "int16", "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64",
           "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2": "float8_e5m2",
           "F8_E5M2FNUZ": "float8_e5m2fnuz", "C64": "complex64"}


def read_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of the safetensors file `path`, in the file's order, each read into a tensor of its own with
    plain reads: its header read, and checked by the library (open_safetensors), then each tensor's bytes
    `readinto` the tensor that holds them. No memory map: a disk failing under the file is an OSError as it is read
    (mmgen.disk_failures.reading: "cannot read FILE", exit 1), where a mapped page that could not be read was a
    SIGBUS that killed the process without a line; and no page of the file stays mapped beside the copies. (On a
    little-endian machine, the format's byte order.)"""
    with reading(path), open(path, "rb", buffering=0) as file:  # unbuffered: each tensor's bytes read straight in
        head = file.read(_HEADER_LENGTH.size)
        (length,) = _HEADER_LENGTH.unpack(head) if len(head) == _HEADER_LENGTH.size else (0,)
        # Read plainly first (a failing disk: an OSError here), so that the library's map finds it in memory; a
        # length past the file's end is for the library to refuse.
        header = file.read(length) if length <= os.fstat(file.fileno()).st_size else b""
        with open_safetensors(path):
            pass  # the library's checks: entries, shapes and offsets that fit the file, else "damaged"
        entries = sorted(((name, entry) for name, entry in parse_json(header, str(path)).items()
                          if name != "__metadata__"), key=lambda item: item[1]["data_offsets"][0])
        start = _HEADER_LENGTH.size + length
        for name, entry in entries:
            dtype = getattr(torch, _DTYPES.get(entry["dtype"], ""), None)
            if not isinstance(dtype, torch.dtype):
                raise UsageError(f"{path}: {name} holds {entry['dtype']} values, which mmgen does not read")
            tensor = torch.empty(entry["shape"], dtype=dtype)
            if tensor.nbytes:
                file.seek(start + entry["data_offsets"][0])
                _fill(file, tensor.view(-1).view(torch.uint8).numpy(), path)
            yield name, tensor


def from_bytes(data: bytes, path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata and the tensors of the safetensors file `path`, already read whole into `data` (a small file,
    an adapter's): what its reader hashed is what is loaded, whatever replaces the file meanwhile. A damaged one is
    the UsageError `open_safetensors` makes of it."""
    try:
        tensors = safetensors.torch.load(data)  # the library's checks, as open_safetensors has them made
    except safetensors.SafetensorError as e:
        reason = str(e).removeprefix("Error while deserializing header: ")
        raise UsageError(f"{path}: damaged, or not a safetensors file ({reason})", hint="get the file again") from None
    (length,) = _HEADER_LENGTH.unpack_from(data)
    header = parse_json(data[_HEADER_LENGTH.size:_HEADER_LENGTH.size + length], str(path))
    return header.get("__metadata__") or {}, {name: tensor.clone() for name, tensor in tensors.items()}


def _fill(file: Any, buffer: Any, path: Path) -> None:
    """`buffer` filled from the file's position (readinto may return less than asked: read on where it stopped)."""
    view, done = memoryview(buffer).cast("B"), 0
    while done < len(view):
        got = file.readinto(view[done:])
        if not got:  # shorter than its header said when it was opened: changed since
            raise UsageError(f"{path}: damaged, or not a safetensors file (it ends early)", hint="get the file again")
        done += got


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """`save_file`, then the header's metadata put in canonical order, in place."""
    save_file(tensors, path, metadata)
    _sort_metadata(path)
    os.chmod(path, 0o666 & ~_umask())


def save_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """`safetensors.torch.save_file`, a failing write raised as the OSError it is (the library reports a full disk
    as a SafetensorError, "I/O error: No space left on device (os error 28)"), so that the writer's
    mmgen.disk_failures.writing names the file."""
    try:
        safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    except safetensors.SafetensorError as e:
        if found := _OS_ERROR.search(str(e)):
            code = int(found.group(1))
            raise OSError(code, os.strerror(code), str(path)) from e
        raise


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def _sort_metadata(path: Path) -> None:
    with open(path, "r+b") as f:
        (length,) = _HEADER_LENGTH.unpack(f.read(_HEADER_LENGTH.size))
        header = json.loads(f.read(length))
        if "__metadata__" not in header:
            return
        canonical = {"__metadata__": dict(sorted(header.pop("__metadata__").items())), **header}
        # serde_json's compact form: no spaces; non-ASCII kept as UTF-8; the same escapes as Python's json.
        text = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > length:  # cannot happen for the same entries; never move the data to get there
            raise AssertionError(f"{path}: canonical safetensors header is longer than the written one")
        f.seek(_HEADER_LENGTH.size)
        f.write(text.ljust(length))  # the library pads with spaces to keep the data 8-byte aligned
