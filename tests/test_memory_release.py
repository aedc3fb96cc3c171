"""Between sampling steps the `mmgen` command keeps the memory torch freed, so the next step reuses its pages
instead of faulting them in again; a sampling loop hands it back to the system when the heap's fragments have
grown the process by a tenth past its first step (so a long run's peak stays bounded), and when it ends."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch
from mmgen_cli import mmgen_env

import mmgen.runtime.memory as memory
from mmgen.diffusion.loop import Step, run_steps
from mmgen.runtime.memory import release_freed_memory


def rss_mib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) // 1024


@pytest.mark.skipif(not release_freed_memory(), reason="this C library cannot hand free heap pages back")
def test_freed_heap_pages_go_back_to_the_system():
    blocks = [torch.ones(20_000) for _ in range(5_000)]  # 80 KB each: glibc serves them from its heap
    last = blocks[-1]  # still in use at the heap's top, so the heap cannot simply shrink from the end
    del blocks
    held = rss_mib()
    release_freed_memory()
    assert rss_mib() < held - 300, "the ~400 MB freed stayed with the process"
    assert last.sum() == 20_000


def sample(monkeypatch, resident_mib: list[int]) -> list[int]:
    """Run a 4-step loop whose process is `resident_mib[i]` MiB after step i; the steps after which freed memory
    went back to the system (4: at the end)."""
    released, step = [], iter(range(len(resident_mib) + 1))
    monkeypatch.setattr(memory, "resident_bytes", lambda: resident_mib[next(step)] << 20)
    monkeypatch.setattr(memory, "release_freed_memory", lambda: released.append(len(calls)))
    calls = []

    def step_fn(x, i, prev_x0):
        calls.append(i)
        return x, x

    steps = [Step(t, 0.1 * (i + 1), 0.1 * (i + 2)) for i, t in enumerate((900, 600, 300, 100))]
    run_steps(step_fn, steps, {"video": torch.zeros(1, 2), "audio": torch.zeros(1, 3)})
    return released


def test_a_sampling_loop_keeps_freed_memory_between_steps_and_hands_it_back_at_the_end(monkeypatch):
    assert sample(monkeypatch, [1000, 1040, 1080, 1090]) == [4]


def test_a_loop_whose_process_grew_a_tenth_past_its_first_step_hands_memory_back_then(monkeypatch):
    assert sample(monkeypatch, [1000, 1050, 1150, 1000]) == [3, 4]


# The `mmgen` command (its console-script entry point, on `--help`: no torch), then a 64 MB block freed and taken
# again in the same process: the page faults of touching it the second time.
REUSE = """
import ctypes, resource, sys
if sys.argv[1] == "command":
    from mmgen.cli import main
    sys.argv = ["mmgen", "--help"]
    try:
        main()
    except SystemExit:
        pass
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20
block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = libc.malloc(size); ctypes.memset(block, 2, size)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults_on_reuse(tmp_path, who: str, **env: str) -> int:
    done = subprocess.run([sys.executable, "-c", REUSE, who], env=mmgen_env(tmp_path, **env), capture_output=True,
                          text=True, check=True)  # fmt: skip
    return int(done.stdout.splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the mallopt settings are glibc's")
def test_the_mmgen_command_reuses_freed_memory_without_faulting_it_in_again(tmp_path):
    assert faults_on_reuse(tmp_path, "command") < 100
    assert faults_on_reuse(tmp_path, "plain python") > 4000, "glibc's default unmaps a freed 64 MB block"
    assert faults_on_reuse(tmp_path, "command", MALLOC_MMAP_THRESHOLD_="1048576") > 4000, "the user's own setting"
