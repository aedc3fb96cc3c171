"""The machine running out of memory, or of the files a process may have open, mid-command is one line saying so,
exit 1 — whatever raised it (Python, numpy, torch's allocator, a library that could not be mapped as it was
imported): not the library's own words (an empty MemoryError, numpy's page of advice). A full disk, or any of
these, after some outputs were finished says which it kept, as a Ctrl-C does."""

from __future__ import annotations

import errno
import importlib
import resource

import pytest
from cli_here import run_here
from mmgen_cli import mmgen_env

from mmgen.disk_failures import write_failure

generate_pipeline = importlib.import_module("mmgen.pipelines.generate")
HINT = "(close other programs, or ask for less at once: fewer or shorter clips, a smaller --batch-size)"
NUMPY_IMPORT = ("\n\nIMPORTANT: PLEASE READ THIS FOR ADVICE ON HOW TO SOLVE THIS ISSUE!\n\nImporting the numpy "
                "C-extensions failed. …\n\nOriginal error was: libscipy_openblas64_-32a4b2a6.so: failed to map "
                "segment from shared object\n")
FAILURES = {
    "MemoryError": (MemoryError(), f"out of memory {HINT}"),
    "numpy's MemoryError": (MemoryError("Unable to allocate 3.00 GiB for an array with shape (805306368,) and "
                                        "data type float32"), f"out of memory allocating 3.00 GiB {HINT}"),
    "ENOMEM": (OSError(errno.ENOMEM, "Cannot allocate memory"), f"out of memory {HINT}"),
    "torch's allocator": (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                                       "allocate memory: you tried to allocate 2457600 bytes. Error code 12 (Cannot "
                                       "allocate memory)"), f"out of memory allocating 2.5 MB {HINT}"),
    "torch's mmap": (RuntimeError("unable to mmap 6291456 bytes from file </m/demo.safetensors>: Cannot allocate "
                                  "memory (12)"), f"out of memory reading /m/demo.safetensors {HINT}"),
    "a library's import": (ImportError("libtorch_cpu.so: failed to map segment from shared object"),
                           f"out of memory loading libtorch_cpu.so {HINT}"),
    "numpy's import": (ImportError(NUMPY_IMPORT), f"out of memory loading libscipy_openblas64_-32a4b2a6.so {HINT}"),
    "EMFILE": (OSError(errno.EMFILE, "Too many open files", "/m/x.mp4"),
               f"cannot open /m/x.mp4: too many open files (this process may have "
               f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]} open at once) (raise the limit with `ulimit -n "
               f"4096`, and run it again)"),
    "torch's EMFILE": (RuntimeError("unable to open file </m/demo.safetensors> in read-only mode: Too many open "
                                    "files (24)"), "cannot open /m/demo.safetensors: too many open files"),
    "ENFILE": (OSError(errno.ENFILE, "Too many open files in system"),
               "too many files open on this machine (the system's limit) (close other programs, or raise the "
               "system's limit (fs.file-max), and run it again)"),
}


def _failing_at(monkeypatch, call: int, error: BaseException, step: str = "write_mp4") -> None:
    """generate's `step` raises `error` at its `call`-th call (from 0): the model's loading, an output's writing."""
    done, calls = getattr(generate_pipeline, step), []

    def failing(*args, **kwargs):
        if len(calls) == call:
            raise error
        calls.append(args)
        return done(*args, **kwargs)

    monkeypatch.setattr(generate_pipeline, step, failing)


def _generate(tiny, tmp_path, *args: str):
    return run_here("generate", "-m", tiny, "-o", tmp_path / "out", "--steps", "1", "--precision", "fp32",
                    "--no-previews", *args, env=mmgen_env(tmp_path))


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_running_out_of_memory_or_open_files_is_one_line(tiny, tmp_path, monkeypatch, failure):
    error, line = failure
    _failing_at(monkeypatch, 0, error, "load")

    done = _generate(tiny, tmp_path)

    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"mmgen: error: {line}"), done.stderr


def test_another_library_failure_keeps_its_own_words(tiny, tmp_path, monkeypatch):
    """Only the errors that say memory or open files ran out: a library's other failure (here a noexec mount's
    mapping refused) is said as it is."""
    _failing_at(monkeypatch, 0, ImportError("libx.so: failed to map segment from shared object: Operation not "
                                            "permitted"), "load")

    done = _generate(tiny, tmp_path)

    assert done.returncode == 1 and done.stderr.startswith("mmgen: error: ImportError: libx.so: failed"), done.stderr


@pytest.mark.parametrize("error, said", [
    (lambda mp4: write_failure(mp4, OSError(errno.ENOSPC, "No space left on device")),  # as the writer says it
     "cannot write {mp4}: No space left on device"),
    (lambda mp4: MemoryError(), "out of memory"),
], ids=["full disk", "no memory"])
def test_a_machine_stop_after_finished_outputs_says_which_it_kept(tiny, tmp_path, monkeypatch, error, said):
    out = tmp_path / "out"
    _failing_at(monkeypatch, 1, error(out / "clip_0001.mp4"))

    done = _generate(tiny, tmp_path, "-n", "2")

    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        f"mmgen: error: {said.format(mp4=out / 'clip_0001.mp4')}; kept the finished output: {out}/clip_0000.mp4 ("), done.stderr
    assert sorted(p.name for p in out.glob("*.mp4")) == ["clip_0000.mp4"]
