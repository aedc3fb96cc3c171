"""The `mmgen` command keeps its large tensors in transparent huge pages (fewer page faults on every forward's
fresh activations), unless the user says THP_MEM_ALLOC_ENABLE=0; `mmgen doctor` says which. A program that
imports mmgen keeps its own environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mmgen_cli import mmgen_env, run_mmgen

needs_huge_pages = pytest.mark.skipif(
    not Path("/sys/kernel/mm/transparent_hugepage/enabled").exists(), reason="no transparent huge pages here"
)

# The `mmgen` command (its console-script entry point, run here on `--help`, which loads no torch), then a 64 MB
# tensor in the same process: the VmFlags of the mapping that holds it ("hg": advised huge pages).
PROBE = """
import sys
from mmgen.cli import main
sys.argv = ["mmgen", "--help"]
try:
    main()
except SystemExit:
    pass
import torch
t = torch.empty(64 << 20, dtype=torch.uint8)
address, flags = t.data_ptr(), None
with open("/proc/self/smaps") as smaps:
    for line in smaps:
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif head == "VmFlags:" and inside:
            flags = line.split()[1:]
print("flags:", " ".join(flags))
"""


def own_environment(tmp_path: Path) -> dict[str, str]:
    """The test environment, without whatever THP_MEM_ALLOC_ENABLE the shell running the tests has."""
    return {k: v for k, v in mmgen_env(tmp_path).items() if k != "THP_MEM_ALLOC_ENABLE"}


def vm_flags(env: dict[str, str]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return done.stdout.splitlines()[-1].removeprefix("flags:").split()


@needs_huge_pages
def test_the_mmgen_command_advises_large_tensors_into_huge_pages(tmp_path):
    assert "hg" in vm_flags(own_environment(tmp_path))


def test_importing_mmgen_leaves_the_environment_alone(tmp_path):
    """A program that imports mmgen keeps its own environment (and PyTorch's default): only the command sets it."""
    env = own_environment(tmp_path)
    probe = "import os, mmgen, mmgen.pipelines.generate; print('THP_MEM_ALLOC_ENABLE' in os.environ)"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout == "False\n"


@needs_huge_pages
def test_the_user_can_turn_huge_pages_off(tmp_path):
    env = mmgen_env(tmp_path, THP_MEM_ALLOC_ENABLE="0")
    assert "hg" not in vm_flags(env)
    report = json.loads(run_mmgen("doctor", "--json", env=env).stdout)
    assert report["devices"]["cpu"]["huge_pages"] == "off (THP_MEM_ALLOC_ENABLE=0)"


@needs_huge_pages
def test_doctor_says_huge_pages_are_on(tmp_path):
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    report = json.loads(run_mmgen("doctor", "--json", env=own_environment(tmp_path)).stdout)
    assert report["devices"]["cpu"]["huge_pages"] == ("on" if "[never]" not in mode else
                                                      "off (the kernel's transparent huge pages are set to never)")
