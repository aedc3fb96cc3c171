"""Shared test fixtures: the official golden files and small helpers every test module may use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

OFFICIAL = Path(__file__).parent / "fixtures" / "official"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def official_dir() -> Path:
    return OFFICIAL


def official_json(name: str) -> dict:
    return json.loads((OFFICIAL / name).read_text())
