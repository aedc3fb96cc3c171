"""Run `mmgen ARGS` in the test's own process, through the command line's entry (mmgen.cli.run): for tests where
what the command does and says is the point, but a new process is not (each `python -m mmgen` costs ~3 s:
importing torch, and loading its model afresh). A test that needs a real process — signals, exit codes set at
interpreter shutdown, torchrun — uses mmgen_cli.run_mmgen instead."""

from __future__ import annotations

import io
import os
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from typing import TextIO

import pytest
from finetune_clips import one_thread

from mmgen.cli import run


def run_here(*args, env: dict[str, str], stdout: TextIO | None = None,
             stderr: TextIO | None = None) -> subprocess.CompletedProcess:
    """`mmgen ARGS` with the environment `env` only while it runs (mmgen_cli.mmgen_env: cache, config and presets
    under the test's folder), on one torch thread as the subprocesses run (OMP_NUM_THREADS=1: bitwise
    reproducible); its exit code, stdout and stderr as run_mmgen returns them. `stdout`, `stderr`: streams of the
    test's own to write to instead (an ASCII one, /dev/full), read by the test."""
    argv = [str(a) for a in args]
    out, err = stdout or io.StringIO(), stderr or io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch:
        for key in [k for k in os.environ if k.startswith("MMGEN_") and k not in env]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with one_thread(), redirect_stdout(out), redirect_stderr(err):
            code = run(argv)
    said = [stream.getvalue() if isinstance(stream, io.StringIO) else "" for stream in (out, err)]
    return subprocess.CompletedProcess(["mmgen", *argv], code, *said)
