"""Shared test fixtures: the official golden files and small helpers every test module may use."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_model import save_tiny_model

OFFICIAL = Path(__file__).parent / "fixtures" / "official"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel workers share the cores: one thread each, and for the mmgen processes they start (two 2-thread torch
    # processes side by side spin-wait each other into a ~10x slowdown).
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


# A shell starts a background job (`pytest &`, nohup) with SIGINT (SIGHUP) ignored, and a process inherits an ignored
# signal: the commands the interrupt tests start would then shrug off their Ctrl-C (as mmgen rightly does under nohup).
for _signal, _handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL),
                          (signal.SIGHUP, signal.SIG_DFL)):
    if signal.getsignal(_signal) is signal.SIG_IGN:
        signal.signal(_signal, _handler)


def pytest_collection_modifyitems(items):
    """The slow end-to-end tests run first: with xdist's work stealing (pyproject's addopts), the other worker
    takes the rest of the queue meanwhile, instead of one long test starting last and running alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def official_dir() -> Path:
    return OFFICIAL


def official_json(name: str) -> dict:
    return json.loads((OFFICIAL / name).read_text())


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """A tiny random mm-unet saved as an mmgen .safetensors (tests/tiny_model.py): the model of the end-to-end
    tests, written once per run. Tests only read it."""
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="session")
def official_weights() -> dict[str, torch.Tensor]:
    """The official tiny MM-UNet's weights (the golden fixtures' model), read once per run."""
    return load_file(OFFICIAL / "tiny_mmunet.safetensors")


@pytest.fixture
def unreadable(monkeypatch):
    """`unreadable(*paths)`: files this user may not read, as the OS and safetensors say so to anyone but root (mode 000
    does not stop root, whom the tests may run as): `open` and `os.open` raise EACCES, and safetensors says "No such file or
    directory" (a FileNotFoundError with no errno), its words for any file it cannot open."""
    import builtins

    import safetensors
    import safetensors.torch

    denied: set[Path] = set()
    safe_open = safetensors.safe_open

    def refusing(opener):
        def open_(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and Path(file) in denied:
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return opener(file, *args, **kwargs)
        return open_

    def safe_open_(file, *args, **kwargs):
        if Path(file) in denied:
            raise FileNotFoundError(f"No such file or directory: {file}")
        return safe_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing(builtins.open))
    monkeypatch.setattr(os, "open", refusing(os.open))
    for module in (safetensors, safetensors.torch):
        monkeypatch.setattr(module, "safe_open", safe_open_)
    return lambda *paths: denied.update(Path(p) for p in paths)
