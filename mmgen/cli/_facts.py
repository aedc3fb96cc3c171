"""The facts `mmgen doctor` reports — versions, codecs, devices, cache, models — gathered as plain JSON-able
values (importing torch and PyAV to ask them, which the doctor command does only when it runs). Without a torch
that imports, everything but the devices is still reported, and why torch is missing ("torch_problem")."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

import av
import numpy

from mmgen import __version__, environment, temporaries
from mmgen.adapters.store import listed
from mmgen.dependency_versions import declared, unmet
from mmgen.errors import MmgenError
from mmgen.output_checks import nearest_existing
from mmgen.runtime.torch_import import torch_problem
from mmgen.terminal import counted
from mmgen.weights.cache import cache_root, check_cache_writable
from mmgen.weights.catalog import DAMAGED, catalog

# (codec, direction, what mmgen needs it for); the first two are required to write any output.
CODECS = [
    ("libx264", "w", "H.264 video out"),
    ("aac", "w", "AAC audio out"),
    ("h264", "r", "H.264 video in"),
    ("aac", "r", "AAC audio in"),
    ("png", "w", "previews"),
]
REQUIRED = {("libx264", "w"), ("aac", "w")}
ENVIRONMENT = (environment.CACHE, environment.PRESETS, environment.OFFLINE, environment.DEBUG, environment.MAX_MEMORY,
               environment.CPU_BF16)


def _codec(name: str, mode: str) -> bool:
    try:
        av.Codec(name, mode)
    except Exception:  # PyAV raises UnknownCodecError (a ValueError) or an FFmpeg error
        return False
    return True


def _devices() -> dict[str, Any]:
    import torch

    from mmgen.runtime.device import cpu_auto_bf16, cpu_native_bf16, huge_pages, select_compute

    cuda = []
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        props = torch.cuda.get_device_properties(index)
        cuda.append({"index": index, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                     "memory_bytes": props.total_memory, "capability": f"{props.major}.{props.minor}"})
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    auto = select_compute("auto", "auto")
    return {
        "cpu": {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "native_bf16": cpu_native_bf16(),
                "auto_bf16": cpu_auto_bf16(),  # what --precision auto takes here: native_bf16 unless MMGEN_CPU_BF16 says
                "huge_pages": huge_pages()},
        "cuda": cuda,
        "mps": mps,
        "auto": auto.describe(),
    }


def _thread_warnings(threads: int) -> dict[str, str]:
    """OMP_NUM_THREADS set to what OpenMP cannot take (`0`, `abc`, `-3`, empty): it says `Invalid value` as torch
    loads and runs on anyway, with torch's own choice of threads (`threads`). Not refused — it is not mmgen's
    variable, and every command still runs — but said, with what torch uses instead."""
    value = os.environ.get("OMP_NUM_THREADS")
    if value is None or all(part.strip().isdigit() and int(part) > 0 for part in value.split(",")):
        return {}  # OpenMP's own form: a whole number of threads, 1 or more (a list of them, one per nesting level)
    return {"OMP_NUM_THREADS": f"OMP_NUM_THREADS={value!r}: takes a whole number of threads, 1 or more; OpenMP "
                               f"ignores it (its `Invalid value` lines), and torch uses {counted(threads, 'thread')}"}


def _folder_bytes(folder: Path) -> int:
    """The bytes of the files under `folder` (links not followed); 0 for one not there. What cannot be read counts
    nothing: a size is a fact to show, never a reason to fail."""
    total, folders = 0, [folder]
    while folders:
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            folders.append(Path(entry.path))
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _leftovers(root: Path) -> list[Path]:
    """The temporaries in the cache's entries (models/NAME, adapters/NAME) that no mmgen here is writing
    (temporaries.not_running): a killed one's, counted in the entries' bytes, or one in another container or host
    writing now."""
    found = []
    for part in ("models", "adapters"):
        with suppress(OSError), os.scandir(root / part) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_dir(follow_symlinks=False):
                    found += temporaries.not_running(Path(entry.path))
    return found


def _file_bytes(path: Path) -> int:
    """The size of the file `path`; 0 for one gone as it was looked at."""
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(nearest_existing(folder)).free


def facts() -> dict[str, Any]:
    """Everything doctor reports, as plain JSON-able values. An mmgen variable whose value means nothing is listed
    under "environment_problems" (what every other command is refused with), and the rest is read as if it were
    unset."""
    problems = {name: str(e) for name, e in environment.problems().items()}
    with environment.as_unset():
        return {**_facts(), **({"environment_problems": problems} if problems else {})}


def _facts() -> dict[str, Any]:
    root = None
    try:
        root = cache_root()
        check_cache_writable(root)
        free = _free_bytes(root)
        cache = {"path": str(root), "exists": root.is_dir(), "free_gib": round(free / 2**30, 1), "free_bytes": free,
                 # what it holds: the models, the adapters, and the clip cache (finetune's decoded clips: a speed-up)
                 **{f"{part}_bytes": _folder_bytes(root / part) for part in ("models", "adapters", "clips")}}
        leftovers = _leftovers(root)
        if leftovers:
            cache.update(leftovers=[str(path) for path in leftovers], leftovers_bytes=sum(map(_file_bytes, leftovers)))
    except MmgenError as e:  # said in the report, with everything else
        cache = {"path": str(environment.folder(environment.CACHE) or ""), "exists": False, "free_gib": 0.0,
                 "free_bytes": 0, "problem": str(e)}
    try:  # a cache folder that cannot be one (a file on its way): said above, once; the registry's models listed
        models = [row.as_dict() for row in catalog(without_cache=root is None)]  # (one read-only is read as ever)
        models_error = None
    except MmgenError as e:  # said, not the end of doctor
        models, models_error = [], str(e)
    try:  # the registered adapters, as `models list --json` gives them
        adapters = listed()
    except MmgenError:  # the cache folder's own trouble: said under "cache"
        adapters = []
    damaged_adapters = [a for a in adapters if a.get("status") == DAMAGED]
    torch = None if (problem := torch_problem()) else sys.modules["torch"]  # imported by torch_problem
    outdated = [{"package": name, "installed": installed, "needed": needed}
                for name, installed, needed in unmet(declared())
                if not (problem and name == "torch")]  # a torch that does not import: said once, with why
    return {
        "versions": {
            "mmgen": __version__,
            "python": platform.python_version(),
            "torch": torch and torch.__version__,
            "av": av.__version__,
            "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
            "numpy": numpy.__version__,
            "platform": platform.platform(),
        },
        "codecs": [{"codec": n, "mode": "encode" if m == "w" else "decode", "use": use, "ok": _codec(n, m)}
                   for n, m, use in CODECS],
        **({"torch_problem": problem} if problem else {}),
        **({"outdated": outdated} if outdated else {}),
        "devices": _devices() if torch else None,
        "cache": cache,
        "environment": {k: os.environ[k] for k in ENVIRONMENT if k in os.environ},
        **({"environment_warnings": warnings} if torch and (warnings := _thread_warnings(torch.get_num_threads())) else {}),
        "models": models,
        **({"models_error": models_error} if models_error else {}),
        "adapters": adapters,
        **({"damaged_adapters": damaged_adapters} if damaged_adapters else {}),
    }
