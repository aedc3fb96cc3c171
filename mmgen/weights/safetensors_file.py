"""Reading and writing safetensors files.

Reading: the library's errors for a damaged file (cut short, or a header whose shapes, lengths or offsets do not
fit the data) name neither the file nor what is wrong with it; `open_safetensors` makes them one UsageError that
does, for every weights and adapter file mmgen opens.

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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from mmgen.errors import UsageError

_HEADER_LENGTH = struct.Struct("<Q")
_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how the library (Rust's io::Error) ends an I/O failure


@contextmanager
def open_safetensors(path: Path) -> Iterator[Any]:
    """`safetensors.safe_open` on the CPU; a library error while it is open (reading the header, or a tensor)
    becomes a UsageError naming the file as damaged."""
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
            yield f
    except safetensors.SafetensorError as e:
        reason = str(e).removeprefix("Error while deserializing header: ")
        raise UsageError(f"{path}: damaged, or not a safetensors file ({reason})",
                         hint="get the file again") from None


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
