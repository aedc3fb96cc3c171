"""What a `--device cuda` (or mps) run does differently, checked on a CPU-only machine: the precision `auto`
picks for a GPU, the GPU's memory budget, adapters merged into weights on another device (tests/one_device.py
stands in for the GPU's device check), and a training run resumed on another kind of device or precision.
scripts/gpu_check.sh runs the same paths on a real GPU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from finetune_clips import TRAIN_MODEL
from one_device import OneDevice
from test_lora_adapters import write_adapter
from tiny_model import TINY_SR_FIELDS, _random_model, tiny_mmunet

from mmgen.adapters import merge_adapters, read_adapter
from mmgen.errors import UsageError
from mmgen.models import build_model, config_for
from mmgen.models.config import SRUNetConfig
from mmgen.runtime.device import Compute, memory_budget, select_precision
from mmgen.runtime.processes import Processes
from mmgen.train.checkpoint import Checkpoint, Resumable
from mmgen.train.config import FinetuneConfig
from mmgen.train.run_weights import RunWeights
from mmgen.train.state import Streams, TrainingState

CUDA = torch.device("cuda", 0)
GIB = 2**30


@pytest.mark.parametrize("major, expected", [(6, torch.float16), (7, torch.float16), (8, torch.bfloat16),
                                             (9, torch.bfloat16)])  # fmt: skip
def test_auto_precision_on_cuda_is_bf16_only_where_the_gpu_computes_it(monkeypatch, major, expected):
    """A T4 or V100 (compute 7.x) runs bf16 only emulated, far slower than its fp16 tensor cores, yet
    torch.cuda.is_bf16_supported() says yes there (a bf16 tensor can be made): auto must pick fp16."""
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(major=major, minor=0))
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)  # emulated bf16 works
    assert select_precision(CUDA, "auto") == expected
    assert select_precision(CUDA, "fp32") == torch.float32  # an explicit choice always wins


def test_without_autocast_on_mps_auto_is_fp32_and_half_precision_is_refused(monkeypatch):
    """torch before 2.5 has no autocast on Apple MPS: fp16 there cannot run (its weights would be kept in fp16
    beside fp32 activations), so `auto` is fp32 and an explicit fp16/bf16 is one line naming the way out."""
    available = torch.amp.autocast_mode.is_autocast_available
    monkeypatch.setattr(torch.amp.autocast_mode, "is_autocast_available", lambda kind: kind != "mps" and available(kind))
    mps = torch.device("mps")
    assert select_precision(mps, "auto") == torch.float32
    with pytest.raises(UsageError, match=r"^precision fp16: torch .* has no autocast on mps"):
        select_precision(mps, "fp16")
    assert select_precision(mps, "fp32") == torch.float32
    monkeypatch.setattr(torch.amp.autocast_mode, "is_autocast_available", available)
    assert select_precision(mps, "auto") == torch.float16


def test_the_mm_unet_trains_and_samples_on_a_device_without_autocast_and_never_mixes_devices():
    """The norms switch autocast off to compute in fp32, but a torch without autocast for the device (Apple MPS
    before torch 2.5) refuses even a disabled torch.autocast there ("unsupported scalarType"). The meta device
    has no autocast either, and under OneDevice no tensor of the forward or backward may be left on the CPU."""
    model = build_model("mm-unet", config_for("mm-unet", TRAIN_MODEL["config"]), device="meta")
    config = model.config
    video, audio = torch.empty(2, *config.video_size, device="meta"), torch.empty(2, *config.audio_size, device="meta")
    timesteps = torch.tensor([10, 900], device="meta")
    with OneDevice():
        with torch.no_grad():
            v, a = model(video, audio, timesteps, shift=1)  # inference: in-place fast paths
        assert v.shape == video.shape and a.shape == audio.shape and v.device.type == "meta"
        model.train()
        v, a = model(video, audio, timesteps, generator=torch.Generator().manual_seed(0))  # shifts drawn on the CPU
        (v.pow(2).mean() + a.pow(2).mean()).backward()
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in model.parameters())


def test_the_sr_unet_runs_its_frame_chunks_on_a_device_without_autocast():
    model = _random_model("sr-unet", SRUNetConfig(**TINY_SR_FIELDS), 0).to("meta")
    model.frames_per_call = 2
    x, low_res = torch.empty(5, 3, 32, 32, device="meta"), torch.empty(5, 3, 16, 16, device="meta")
    with torch.no_grad(), OneDevice():
        out = model(x, torch.tensor([3], device="meta"), low_res)
    assert out.shape == (5, 6, 32, 32) and out.device.type == "meta"


def test_a_gpu_memory_budget_counts_what_the_allocator_holds_unused(monkeypatch):
    """After a first forward torch's caching allocator keeps its activations' memory, which the driver counts as
    taken: by the driver's free memory alone, every later SR call would get half the frames per chunk."""
    monkeypatch.delenv("MMGEN_MAX_MEMORY", raising=False)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * GIB, 80 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 30 * GIB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 6 * GIB)
    assert memory_budget(CUDA) == (10 + 30 - 6) * GIB // 2
    monkeypatch.setenv("MMGEN_MAX_MEMORY", "3G")
    assert memory_budget(CUDA) == 3 * GIB


def test_adapters_read_on_the_cpu_merge_into_weights_on_another_device(tmp_path):
    """`generate --adapter A --device cuda`: the model is loaded onto the GPU, the adapter file is read onto the
    CPU; each delta must move to its weight's device before it is added."""
    _, path = write_adapter(tmp_path, "style", seed=1)
    model, adapter = tiny_mmunet().to("meta"), read_adapter(path)
    with OneDevice():
        merge_adapters(model, [(adapter, 1.0)])
    assert all(p.device.type == "meta" for p in model.parameters())


def test_a_noise_state_from_another_kind_of_device_restarts_the_noise_stream():
    """A checkpoint written on a GPU keeps that GPU's noise generator state (16 bytes on CUDA); resumed on a
    device of another kind, whose generator refuses it ("RNG state is wrong size", as an MPS generator refuses a
    CUDA state), the noise stream starts afresh from the seed it is given, with a note. A second CPU generator
    stands in for the device's own here."""
    streams = Streams(torch.Generator().manual_seed(1), torch.Generator().manual_seed(1))
    saved = {"generator": torch.Generator().manual_seed(2).get_state(), "noise": torch.zeros(16, dtype=torch.uint8),
             "noise_device": "cuda", "torch": torch.get_rng_state(), "cuda": None}  # fmt: skip
    note = streams.restore(saved, torch.device("cpu"), seed=7)
    assert note == "resumed on cpu after training on cuda: the noise stream restarted"
    assert torch.equal(streams.noise.get_state(), torch.Generator().manual_seed(7).get_state())
    assert torch.equal(streams.generator.get_state(), saved["generator"])  # the CPU stream goes on where it was

    same = Streams(torch.Generator().manual_seed(1), torch.Generator().manual_seed(1))
    saved = {**saved, "noise": torch.Generator().manual_seed(3).get_state(), "noise_device": "cpu"}
    assert same.restore(saved, torch.device("cpu"), seed=7) is None
    assert torch.equal(same.noise.get_state(), saved["noise"])


def test_a_run_saved_without_fp16_resumes_in_fp16(tmp_path):
    """fp16 training has a loss scaler; a checkpoint saved without one (on a CPU, or a bf16 GPU) holds its empty
    state, which torch's scaler refuses ("The source state dict is empty"): resumed on a GPU without bf16 (a T4,
    a V100: auto picks fp16 there) the run must start its loss scale afresh. fp16 on the CPU stands in."""
    model_config = config_for(TRAIN_MODEL["arch"], TRAIN_MODEL["config"])
    config, files, cpu = FinetuneConfig(), RunWeights(model_config), torch.device("cpu")
    saved = TrainingState(build_model("mm-unet", model_config), files, config, Compute(cpu, torch.float32),
                          Processes())  # fmt: skip
    state = {"step": 1, "optimizer": saved.optimizer.state_dict(), "scaler": saved.scaler.state_dict(),
             "ema_n_averaged": 1, "rng": [saved.streams.state(cpu)]}  # fmt: skip
    resumable = Resumable(Checkpoint(tmp_path / "step-0000001", 1), None, saved.ema.module.state_dict(), state)
    fp16 = TrainingState(build_model("mm-unet", model_config), files, config, Compute(cpu, torch.float16),
                         Processes())  # fmt: skip
    assert fp16.scaler.is_enabled() and not state["scaler"]
    assert fp16.restore(resumable) is None
    assert fp16.step == 1 and fp16.scaler.get_scale() == torch.amp.GradScaler("cpu").get_scale()
