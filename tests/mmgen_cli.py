"""Run the real `mmgen` command in a subprocess, isolated from the user's cache, config and presets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def mmgen_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a subprocess: the checkout importable, cache/config/presets under `tmp_path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMGEN_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        MMGEN_CACHE=str(tmp_path / "cache"),
        MMGEN_PRESETS=str(tmp_path / "presets"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        MMGEN_DOWNLOAD_BACKOFF="0.05",
    )
    env.update(extra)
    return env


def mmgen_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmgen", *map(str, args)]


# Generous: a few seconds of work on an idle machine can take minutes on a busy shared CI runner.
TIMEOUT_S = 900


def run_mmgen(
    *args: str, env: dict[str, str], timeout: float = TIMEOUT_S, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(mmgen_command(*args), env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
