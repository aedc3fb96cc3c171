"""Where and in what precision a pipeline runs: `--device auto` picks cuda > mps > cpu, `--precision auto`
picks bf16 (else fp16) on CUDA, fp16 on MPS (fp32 with a torch before 2.5, which has no autocast there), and on the CPU bf16 where it computes bf16 natively
(AVX512-BF16 or AMX: 2-15× the fp32 conv rate), fp32 elsewhere or when MMGEN_CPU_BF16=0.
Lower precision is autocast (norms and softmax sum in fp32, the sampler stays fp32); for inference the conv and linear
weights autocast rounds are kept in its dtype from the start (models/storage.py), training keeps fp32 weights."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

import torch

from mmgen import environment
from mmgen.errors import InvalidSetting
from mmgen.media.notes import remark
from mmgen.runtime.device_names import check_device_name, check_precision_name

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CPU_BF16_ENV = environment.CPU_BF16  # "0": `--precision auto` stays fp32 on the CPU; "1": bf16 even if not native
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # the instructions that compute bf16 products natively
CPU_FP16_FLAGS = ("avx512_fp16", "amx_fp16")  # and fp16's: without them a CPU emulates fp16, slower than fp32
FP16_ON_CPU = "note: fp16 on this CPU is emulated (it has no native fp16), slower than fp32; {faster} is faster"
MAX_MEMORY_ENV = environment.MAX_MEMORY  # the activation memory budget (memory_budget), e.g. "6G"
CPU_BUDGET = 2 * 2**30


@dataclass(frozen=True)
class Compute:
    """A device and the dtype matmuls/convolutions run in there (float32 = no autocast)."""

    device: torch.device
    dtype: torch.dtype

    @property
    def precision(self) -> str:
        return next(name for name, dtype in PRECISIONS.items() if dtype == self.dtype)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the model's forward; a no-op in fp32."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def record(self) -> dict[str, str]:
        """Where a run ran, for its records (finetune's config.yaml `ran_on`, model.json, --json): "cpu", "cuda:0", "mps"
        and the precision's name."""
        return {"device": str(self.device), "precision": self.precision}

    def describe(self) -> str:
        """e.g. "cuda:0 (NVIDIA H100, bf16)" — for the sidecar and the terminal."""
        name = self.device.type
        if self.device.type == "cuda":
            index = self.device.index or 0
            name = f"cuda:{index} ({torch.cuda.get_device_name(index)}, {self.precision})"
        else:
            name = f"{name} ({self.precision})"
        return name


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def select_device(name: str = "auto") -> torch.device:
    """Parse a device setting and check the device exists here (InvalidSetting naming what is missing: each edge
    names the setting its way, `--device cuda` on the command line, `device cuda` in a batch file)."""
    name = check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise InvalidSetting("device", "Apple MPS is not available on this machine", "mps", hint="try auto")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if not torch.cuda.is_available():
        raise InvalidSetting("device", "CUDA is not available", name, hint="try auto or cpu")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise InvalidSetting("device", f"only {torch.cuda.device_count()} CUDA device(s) found", name)
    return torch.device("cuda", index)


def cpu_flags() -> set[str]:
    """The CPU's feature flags: torch's own probe, else /proc/cpuinfo (Linux), else none."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        try:
            return {name for name, present in capabilities().items() if present is True}
        except (RuntimeError, AttributeError):
            pass
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return {flag for line in cpuinfo if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return set()


def cpu_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16), the hardware fact. Without them oneDNN
    emulates bf16 and it is slower than fp32."""
    return bool(cpu_flags() & set(CPU_BF16_FLAGS))


def cpu_auto_bf16() -> bool:
    """Whether `--precision auto` takes bf16 on this CPU: where it is native, unless MMGEN_CPU_BF16=0/1 says
    otherwise (doctor shows both: the fact, and the override)."""
    if (forced := environment.flag(CPU_BF16_ENV)) is not None:
        return forced
    return cpu_native_bf16()


THP_SWITCH = "THP_MEM_ALLOC_ENABLE"  # PyTorch's; the mmgen command turns it on (mmgen.runtime.memory.use_huge_pages)
THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"  # Linux: "always [madvise] never"


def huge_pages() -> str:
    """Whether this process's large CPU tensors sit in transparent huge pages: "on", or "off (why)"."""
    value = os.environ.get(THP_SWITCH, "0").strip()
    if value != "1":  # PyTorch's one value for on
        return f"off ({THP_SWITCH}={value or 0})"
    try:
        with open(THP_MODE) as mode:
            chosen = re.search(r"\[(\w+)\]", mode.read())
    except OSError:
        return "off (no transparent huge pages on this system)"
    if chosen is None or chosen.group(1) == "never":
        return "off (the kernel's transparent huge pages are set to never)"
    return "on"


def cuda_native_bf16(device: torch.device) -> bool:
    """Whether the GPU `device` computes bf16 in hardware: compute capability 8.0 (Ampere) or later, or any ROCm
    GPU. torch.cuda.is_bf16_supported() also says yes on older GPUs (a T4, a V100), where bf16 only works
    emulated, far slower than their fp16 tensor cores; it also asks the current device, not `device`."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_properties(device).major >= 8


def select_precision(device: torch.device, name: str = "auto") -> torch.dtype:
    """Parse --precision for `device`. bf16 keeps fp32's range (no overflow in attention logits), so
    it is preferred over fp16 on CUDA wherever the GPU computes it natively, and used on CPUs with native bf16."""
    name = check_precision_name(name)
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if cuda_native_bf16(device) else torch.float16
        if device.type == "mps":
            return torch.float16 if torch.amp.autocast_mode.is_autocast_available("mps") else torch.float32
        return torch.bfloat16 if cpu_auto_bf16() else torch.float32
    if name == "fp16" and device.type == "cpu" and not cpu_flags() & set(CPU_FP16_FLAGS):
        remark(FP16_ON_CPU.format(faster="bf16, native here," if cpu_native_bf16() else "fp32 (bf16 is emulated too)"))  # the slowest choice here (a Zen 5: generate 33 s, against 24 s in fp32 and 13 s in bf16)
    if name != "fp32" and not torch.amp.autocast_mode.is_autocast_available(device.type):
        raise InvalidSetting("precision", f"torch {torch.__version__} has no autocast on {device.type} (Apple MPS "
                             "has it from torch 2.5)", name, hint="use fp32, or a newer torch")
    return PRECISIONS[name]


def memory_budget(device: torch.device) -> int:
    """Bytes a model may use for activations on `device`: MMGEN_MAX_MEMORY (e.g. "6G", "512M", bytes) if
    set, else half of the free memory on a GPU, and on the CPU half of MemAvailable but at most 2 GiB: there
    one frame's convolutions already keep every core busy, so batching more frames costs memory, not time.
    A GPU's free memory counts what torch's caching allocator holds unused (reserved, not allocated): the
    driver calls it taken, so by the driver's count alone the budget would halve after the first forward
    (whose activations the allocator keeps), and later calls would run in smaller chunks than the first."""
    if (forced := environment.memory_limit()) is not None:
        return forced
    if device.type == "cuda":
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return (torch.cuda.mem_get_info(device)[0] + cached) // 2
    try:
        with open("/proc/meminfo") as meminfo:
            available = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        available = 8 * 2**30  # no /proc (macOS, Windows): assume a modest machine
    return min(available // 2, CPU_BUDGET)


def select_compute(device: str = "auto", precision: str = "auto") -> Compute:
    """Both choices at once, validated before any model is loaded."""
    chosen = select_device(device)
    return Compute(chosen, select_precision(chosen, precision))
