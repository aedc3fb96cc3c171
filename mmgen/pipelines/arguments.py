"""The arguments of the Python API's functions (generate, generate_files, soundtrack, animate, retake, plan_batch,
run_batch, run_plan, finetune), checked as each is called by this one helper, before any work: one wrong is an InvalidArgument naming the function and
the argument in one line (exit 2), not an AttributeError or a TypeError from deep inside the run. The settings
check their own fields as they are built (pipelines.settings)."""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence

from mmgen.errors import InvalidArgument
from mmgen.pipelines.events import quiet
from mmgen.pipelines.settings import KINDS, RunSettings


def check_arguments(function: str, settings: object = None, kind: type | None = None, *,
                    paths: Mapping[str, object] = {}, optional: tuple[str, ...] = ("output",), batch_size: object = 1,
                    overwrite: object = False, progress: object = quiet, instances: Mapping[str, tuple[object, type]] = {},
                    switches: Mapping[str, object] = {}, functions: Mapping[str, object] = {},
                    words: Mapping[str, object] = {}, path_lists: Mapping[str, object] = {},
                    indices: Mapping[str, object] = {}) -> int:
    """Refuse what `function` cannot take: `settings` not of its class `kind` (when it takes settings), a path of
    `paths` (name → value) that is neither a str nor a path-like (None only for the `optional` ones: the output,
    named after the input), one of `path_lists` that is no sequence of such paths (a str is one path, not a
    sequence of them), a `batch_size` that is no whole number of at least 1, an `overwrite` or one of
    `switches` that is no bool (`"no"` would replace files), a `progress` or one of `functions` that is no function
    (None too: a function's default takes no notice), one of `instances` (name → (value, class)) not of its
    class, one of `words` neither a str nor None, one of `indices` (a GPU's `local_rank`) neither None nor a whole
    number of at least 0. Returns `batch_size` as a plain int (numpy's integers too:
    provenance and sidecars hold it)."""

    def refuse(argument: str, expected: str, value: object) -> None:
        raise InvalidArgument(f"{function}(): {argument} must be {expected}, got {_said(value)}")

    if kind is not None:
        instances = {"settings": (settings, kind)} | dict(instances)
    for argument, (value, cls) in instances.items():
        if not isinstance(value, cls):
            refuse(argument, f"a {cls.__name__}", value)
    for argument, value in paths.items():
        if (value is not None or argument not in optional) and not (isinstance(value, str | os.PathLike) and isinstance(os.fspath(value), str)):
            refuse(argument, "a path (a str or a pathlib.Path)", value)
    for argument, value in path_lists.items():
        if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not all(
                isinstance(path, str | os.PathLike) and isinstance(os.fspath(path), str) for path in value):
            refuse(argument, "a sequence of paths (each a str or a pathlib.Path)", value)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        refuse("batch_size", "a whole number of at least 1", batch_size)
    for argument, value in {"overwrite": overwrite, **switches}.items():
        if not isinstance(value, bool):
            refuse(argument, "True or False", value)
    if not callable(progress):
        refuse("progress", "a function taking a ProgressEvent", progress)
    for argument, value in functions.items():
        if not callable(value):
            refuse(argument, "a function", value)
    for argument, value in words.items():
        if value is not None and not isinstance(value, str):
            refuse(argument, "a str or None", value)
    for argument, value in indices.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0):
            refuse(argument, "None or a whole number of at least 0", value)
    return int(batch_size)


def _said(value: object) -> str:
    """A value refused, as the line says it: settings by their class (another command's, named), else its repr
    cut short."""
    if isinstance(value, RunSettings):
        of = next((f" (the settings of {name})" for name, cls in KINDS.items() if type(value) is cls), "")
        return f"{type(value).__name__}{of}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
