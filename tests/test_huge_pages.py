"""An mmgen process keeps its large tensors in transparent huge pages (fewer page faults on every forward's
fresh activations), unless the user says THP_MEM_ALLOC_ENABLE=0; `mmgen doctor` says which."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mmgen_cli import mmgen_env, run_mmgen

pytestmark = pytest.mark.skipif(
    not Path("/sys/kernel/mm/transparent_hugepage/enabled").exists(), reason="no transparent huge pages here"
)

# A 64 MB tensor made after importing mmgen: the VmFlags of the mapping that holds it ("hg": advised huge pages).
PROBE = """
import mmgen, torch
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
print(" ".join(flags))
"""


def vm_flags(env: dict[str, str]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_large_tensors_are_advised_into_huge_pages(tmp_path):
    assert "hg" in vm_flags(mmgen_env(tmp_path))


def test_the_user_can_turn_huge_pages_off(tmp_path):
    env = mmgen_env(tmp_path, THP_MEM_ALLOC_ENABLE="0")
    assert "hg" not in vm_flags(env)
    report = json.loads(run_mmgen("doctor", "--json", env=env).stdout)
    assert report["devices"]["cpu"]["huge_pages"] == "off (THP_MEM_ALLOC_ENABLE=0)"


def test_doctor_says_huge_pages_are_on(tmp_path):
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    report = json.loads(run_mmgen("doctor", "--json", env=mmgen_env(tmp_path)).stdout)
    assert report["devices"]["cpu"]["huge_pages"] == ("on" if "[never]" not in mode else
                                                      "off (the kernel's transparent huge pages are set to never)")
