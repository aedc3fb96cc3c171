"""The words of `--device` and `--precision` (a batch file's `device:`, `precision:`), checked without torch: a run's settings refuse a word that
is no device when built, before any other check (`generate -n 100000 --device bogus` checked its 400,000 output
files first). Whether the device is there is mmgen.runtime.device's to say, once torch is imported."""

from __future__ import annotations

import re

from mmgen.errors import InvalidSetting

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?", re.ASCII)


def check_device_name(name: str) -> str:
    """`name` as the device setting reads it (stripped, lower case); InvalidSetting where it is none of DEVICES."""
    name = name.strip().lower()
    if _DEVICE.fullmatch(name) is None:
        raise InvalidSetting("device", f"{name!r} is not a device (choose from {', '.join(DEVICES)})")
    return name


PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def check_precision_name(name: str) -> str:
    """`name` as the precision setting reads it (stripped, lower case: BF16 is bf16, as CUDA is cuda), the one
    spelling records keep; InvalidSetting where it is none of PRECISIONS. Every place a precision enters calls it:
    the settings classes, FinetuneConfig, select_precision."""
    word = name.strip().lower() if isinstance(name, str) else name
    if word not in PRECISIONS:
        raise InvalidSetting("precision", f"{name!r} is not one of {', '.join(map(repr, PRECISIONS))}")
    return word
