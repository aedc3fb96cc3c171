"""Opening a safetensors file, without torch: the library's errors for a damaged file (cut short, or a header whose
shapes, lengths or offsets do not fit the data) name neither the file nor what is wrong with it; `open_safetensors`
makes them one UsageError that does, for every weights and adapter file mmgen opens (mmgen.weights.safetensors_file
reads and writes the tensors)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import safetensors

from mmgen.disk_failures import reading
from mmgen.errors import UsageError
from mmgen.input_files import why_not_a_file


def safe_open(path: Path, framework: str = "pt") -> Any:
    """`safetensors.safe_open` on the CPU, where a file that cannot be opened raises the OS's own error: the library
    says "No such file or directory" of any (a FileNotFoundError with no errno), of one this user may not read too;
    a folder or a device is a UsageError saying what it is. `framework` "pt" imports torch (seconds), as the file is
    opened; "numpy" does not, for a file's metadata alone."""
    try:
        return safetensors.safe_open(str(path), framework=framework, device="cpu")
    except FileNotFoundError as e:
        if e.errno is None:
            with open(path, "rb"):  # PermissionError, IsADirectoryError, ... (or it opens now: the library's error)
                pass
        raise
    except OSError:  # a folder put at its name since it was checked: "No such device (os error 19)" (its map's)
        if why := why_not_a_file(path, missing=""):
            raise UsageError(f"{path}: {why}") from None
        raise


@contextmanager
def open_safetensors(path: Path, framework: str = "pt") -> Iterator[Any]:
    """`safe_open`; a library error while it is open (reading the header, or a tensor) becomes a UsageError naming
    the file as damaged, and a failure to open it at all the machine's trouble where it is (disk_failures.reading)."""
    try:
        with reading(path):
            opened = safe_open(path, framework)
        with opened as f:
            yield f
    except safetensors.SafetensorError as e:
        reason = str(e).removeprefix("Error while deserializing header: ")
        raise UsageError(f"{path}: damaged, or not a safetensors file ({reason})",
                         hint="get the file again") from None
