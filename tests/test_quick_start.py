"""`mmgen --help` and a mistyped flag answer at once: torch, scipy and PyAV (3–5 s of imports on a laptop) load only
when a command does work that needs them. The packages' names still all resolve when asked for."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import types

import pytest
from mmgen_cli import mmgen_env

from mmgen.train.run_folder import RunFolderLock

HEAVY = ("torch", "scipy", "av")
PACKAGES = ["mmgen.adapters", "mmgen.diffusion", "mmgen.media", "mmgen.models", "mmgen.pipelines",
            "mmgen.pipelines.batch", "mmgen.runtime", "mmgen.train", "mmgen.weights"]


def heavy_modules_after(argv: list[str], tmp_path) -> tuple[int, list[str]]:
    """Run the command line in a fresh interpreter; its exit code and which heavy libraries it imported."""
    script = ("import sys; from mmgen.cli import run; code = run(sys.argv[1:]); "
              f"print([m for m in {HEAVY!r} if m in sys.modules]); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, *argv], env=mmgen_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    return done.returncode, eval(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv, code", [
    (["--help"], 0),
    (["--version"], 0),
    (["generate", "--help"], 0),
    (["finetune", "--help"], 0),
    (["generate", "--steps", "0"], 2),
    (["soundtrack"], 2),  # no input given
], ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_help_and_usage_errors_do_not_load_torch(argv, code, tmp_path):
    assert heavy_modules_after(argv, tmp_path) == (code, [])


def test_a_refused_finetune_resume_does_not_load_torch(tmp_path):
    """`finetune DATA -o RUN --resume` refused for what RUN is — missing, no run's config.yaml, a run training in it —
    answers at once: it loaded torch (seconds) before it looked."""
    data, empty, held = tmp_path / "clips", tmp_path / "empty", tmp_path / "held"
    for folder in (data, empty, held):
        folder.mkdir()
    (held / "config.yaml").write_text("steps: 10\n")
    lock = RunFolderLock(held)
    lock.take()
    try:
        for run_dir in (tmp_path / "missing", empty, held):
            assert heavy_modules_after(["finetune", str(data), "-o", str(run_dir), "--resume"], tmp_path) == (2, [])
    finally:
        lock.release()


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_a_package_offers_is_what_it_names(package):
    """Even once its submodules are loaded: `mmgen.pipelines.animate` stays the function, not its module."""
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        importlib.import_module(f"{package}.{info.name}")
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None and not isinstance(value, types.ModuleType), f"{package}.{name}"
