"""`mmgen ARGS` run inside the test process and returned as a CompletedProcess, isolated from the user's cache,
config and presets as mmgen_cli's subprocesses are.

For the steps of a test whose promise is not the process itself — a listing, an import, a repeat pull, a file
to measure — it costs ~3 s less than a subprocess (no interpreter start, torch import or first-forward warm-up).
Where the promise is what the real command does as a process (its exit status on a signal, its stderr from
start to end, no socket opened), tests run it with mmgen_cli.run_mmgen instead.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mmgen_cli import mmgen_env


def mmgen_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path, *args,
                     **env: str) -> subprocess.CompletedProcess:
    """`mmgen ARGS` through mmgen.cli.run with mmgen_env(tmp_path, **env) set for the call alone: its exit code
    and what it printed to stdout and stderr (output captured before the call is discarded)."""
    from mmgen.cli import run

    with monkeypatch.context() as patch:
        for key, value in mmgen_env(tmp_path, **env).items():
            patch.setenv(key, value)
        capsys.readouterr()
        code = run([str(a) for a in args])
        said = capsys.readouterr()
    return subprocess.CompletedProcess(["mmgen", *map(str, args)], code, said.out, said.err)
