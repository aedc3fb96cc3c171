"""Between sampling steps the memory torch freed goes back to the system, so a long run's peak does not creep
up step after step with the C heap's fragments."""

from __future__ import annotations

import pytest
import torch

import mmgen.diffusion.loop as loop
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


def test_every_sampling_step_hands_freed_memory_back(monkeypatch):
    calls = []
    monkeypatch.setattr(loop, "release_freed_memory", lambda: calls.append(len(calls)))
    steps = [Step(t, 0.1 * (i + 1), 0.1 * (i + 2)) for i, t in enumerate((900, 600, 300))]
    x = {"video": torch.zeros(1, 2), "audio": torch.zeros(1, 3)}
    run_steps(lambda x, i, prev_x0: (x, x), steps, x)
    assert len(calls) == len(steps)
