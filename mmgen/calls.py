"""One call of mmgen's work — a pipeline function a program calls, or a command (cli.run enters the same two
blocks) — is what two promises hold over: each note is said once in it (media.notes.one_call), and every output
folder stays the one it found (output_folders.same_folders). A call made inside another is part of it: a batch's jobs, a
command's pipeline call. A pipeline call also gives its caller's thread back torch's state as it found it
(runtime.torch_state), however it ends; its caller's default device (`with torch.device`, torch.set_default_device)
and autocast are off for the call, and its fp32 matrix products are full fp32 whatever the caller's
torch.set_float32_matmul_precision (runtime.matmul_precision): a call runs in the precision its records say. A
Ctrl-C while the call loads a library for the first time (scipy, torch._dynamo) waits for it to load whole
(stop_signals.first_imports_held): half-loaded, it would fail in every later call of the process."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from mmgen.disk_failures import name_too_long
from mmgen.errors import output_argument
from mmgen.media.notes import one_call
from mmgen.output_folders import same_folders
from mmgen.runtime.matmul_precision import own_matmul_precision
from mmgen.runtime.stop_signals import first_imports_held
from mmgen.runtime.torch_state import put_back_torch_state, suspend_callers_modes, torch_state

P = ParamSpec("P")
R = TypeVar("R")


def pipeline_call(function: Callable[P, R] | None = None, *, going_on_from: Callable[..., set[str]] | None = None,
                  output: str = "output") -> Any:
    """`function`'s every call is one call of mmgen's work: a pipeline function of the Python API's (any thread).
    `going_on_from(*args, **kwargs)`: the notes an earlier call said that this one goes on from (a batch plan's,
    for the run of it). `output`: the argument that names the call's output, as the command line's -o does
    (generate_files' `out_dir`): an error's hint names it so to a Python caller (errors.output_named)."""
    if function is None:
        return functools.partial(pipeline_call, going_on_from=going_on_from, output=output)

    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        kept = torch_state()
        try:
            suspend_callers_modes()  # mmgen's device and precision are its settings', never its caller's modes
            going_on = None if going_on_from is None else going_on_from(*args, **kwargs)
            with (first_imports_held(), own_matmul_precision(), one_call(going_on), same_folders(),
                  output_argument(output)):
                return function(*args, **kwargs)
        except OSError as e:  # a path given too long for the system: said as the command line says it, exit 2
            if e.errno == errno.ENAMETOOLONG:
                raise name_too_long(e) from e
            raise
        finally:
            put_back_torch_state(kept)

    return call
