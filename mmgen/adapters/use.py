"""One `--adapter FILE[:WEIGHT]` value, parsed: what settings carry before any adapter is read (no torch here, so
parsing a command line stays quick)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from mmgen.config import NUMBER, parse_number
from mmgen.errors import InvalidSetting, UsageError
from mmgen.weights.names import check_reference, is_name, is_path

# An adapter is a small change to weights: at 1 it is what training made, past a few times that it is noise, and at
# 1e38 the merged weights overflow. Weights beyond this are refused rather than sampled into NaN.
MAX_WEIGHT = 100.0


@dataclass(frozen=True)
class AdapterUse:
    """One `--adapter` value: an adapter file (or a registered adapter's name) and its weight."""

    source: str
    weight: float = 1.0

    @classmethod
    def parse(cls, text: str) -> AdapterUse:
        """FILE[:WEIGHT]; a colon whose tail is not a number belongs to the file name (`a:b.safetensors`, a file
        as a whole), unless what comes before it is the adapter (`x.safetensors:abc`, `my-style:abc`): one that is
        there, or, where neither is, one written as a file or name is (not the whole: it ends in .safetensors). Then
        the tail is a weight that is no number."""
        source, sep, tail = text.rpartition(":")
        if not (source if sep and _number(tail) else text).strip():  # `--adapter :0.5`, `--adapter ""`
            raise InvalidSetting("adapter", "the adapter's file or name is empty", text or None,
                                 hint="FILE[:WEIGHT] or NAME[:WEIGHT], e.g. x.safetensors:0.8")
        if sep and source:
            try:
                weight = parse_number(tail, float)  # as every number flag takes it: not " 1", "1_0", "١"
            except ValueError:
                if not _found(text) and (_found(source) or (_reference(source) and not is_path(tail))):
                    raise InvalidSetting("adapter", f"weight {tail!r} is not a number", text,
                                         hint="FILE:WEIGHT or NAME:WEIGHT, e.g. x.safetensors:0.8") from None
                return cls._checked(text)
            if not (math.isfinite(weight) and abs(weight) <= MAX_WEIGHT):
                raise InvalidSetting("adapter", f"the weight must be a number from -{MAX_WEIGHT:g} to {MAX_WEIGHT:g}",
                                     text, hint="1 applies the adapter as trained; 0.5 half of it; -1 takes it away")
            return cls._checked(source, weight)
        return cls._checked(text)

    @classmethod
    def _checked(cls, source: str, weight: float = 1.0) -> AdapterUse:
        try:
            check_reference(source, "adapter")
        except UsageError as e:
            raise InvalidSetting("adapter", e.message) from None
        return cls(source, weight)

    def describe(self) -> str:
        return f"{self.source}:{self.weight:g}"


def _number(text: str) -> bool:
    return NUMBER.fullmatch(text) is not None


def _reference(source: str) -> bool:
    """Whether `source` is written as an adapter is: a path (weights.names.is_path) or a name."""
    return is_path(source) or is_name(source)


def _found(source: str) -> bool:
    """Whether `source` is an adapter to be had: a file there, or a registered adapter's name."""
    if is_path(source):
        return Path(source).is_file()
    if not is_name(source):
        return False
    from mmgen.adapters.store import registered_file

    return registered_file(source) is not None
