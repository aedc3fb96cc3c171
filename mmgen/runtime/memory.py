"""The machine's memory: how much there is, and the memory settings the `mmgen` command makes for itself (huge
pages, freed memory kept between sampling steps).

A forward allocates its activations afresh. Where the C library hands them back to the system when they are freed
(glibc does for blocks over its mmap threshold, and for everything at a malloc_trim), the next forward faults
every page in again: measured on the released MM-UNet's bf16 CPU forward (Zen 5 EPYC VM, 2026-12-02), 0.2–0.3 s
of kernel time per ~2.7 s forward, and worse where transparent huge pages are compacted at the fault (a 25 MB
tensor took 28 ms to fault in, 0.5 ms to refill). So the `mmgen` command keeps freed memory in the heap for the
next step (keep_freed_memory), and a sampling or training loop hands it back only when fragments have made the process grow
by a tenth past its first step (StepMemory), and once when it ends. Measured there: ~10 % faster forwards, the
peak 5 % higher after 40 steps (989 → 1,045 MiB) where trimming after every step held it at ~1,000 MiB.
Where the C library has no mallopt/malloc_trim (macOS, musl, Windows) this does nothing.
"""
from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # the C library this process already runs on
    except (OSError, AttributeError, TypeError):
        return None


def release_freed_memory() -> bool:
    """Give the C heap's free pages back to the system; whether this C library can."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def use_huge_pages() -> None:
    """Tensors of 2 MB and more in transparent huge pages, unless the user set THP_MEM_ALLOC_ENABLE ("0": off).
    PyTorch's own switch, read once, at its first CPU allocation (c10's alloc_cpu), so only a process that has
    allocated no tensor yet can turn it on. A forward allocates its activations afresh and their first touch
    page-faults, 4 KB at a time without it: measured on the released MM-UNet's bf16 CPU forward, ~3× less time
    in the kernel and a lower peak RSS (benchmarks/forward.py; README, Performance)."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEPT = 1 << 30  # blocks under 1 GiB come from the heap and stay there when freed: every activation of both U-Nets
GROWTH = 1.1  # a loop of steps hands freed memory back once the process is this much past its first step


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return None


def keep_freed_memory() -> bool:
    """Have glibc keep freed blocks under 1 GiB in its heap for reuse instead of unmapping them (its default
    for blocks over a moving threshold, at most 32 MB: a U-Net's larger activations) or trimming the heap's top:
    the next step reuses the pages without faulting them in again. Process-wide, so only the `mmgen` command
    does it for itself, as with huge pages; a user's own MALLOC_*_THRESHOLD_ or GLIBC_TUNABLES setting wins.
    Whether it was set."""
    mallopt = _mallopt()
    if mallopt is None or _user_set_malloc():
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEPT) and mallopt(_M_TRIM_THRESHOLD, _KEPT))


def _user_set_malloc() -> bool:
    return any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")) or (
        "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
    )


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux's /proc); None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class StepMemory:
    """Freed memory kept between a loop's steps (sampling or training: each step then reuses its pages), and
    handed back to the system when the heap's fragments have grown the process by GROWTH past its size after the
    first step, so a long run's peak stays bounded; and at a sampling loop's end, for whatever runs next."""

    def __init__(self) -> None:
        self.first: int | None = None

    def after_step(self) -> None:
        now = resident_bytes()
        if now is None:
            return
        if self.first is None:
            self.first = now
        elif now > GROWTH * self.first:
            release_freed_memory()

    def done(self) -> None:
        release_freed_memory()


def physical_memory() -> int | None:
    """Bytes of RAM this machine has; None where the system does not say (Windows)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
