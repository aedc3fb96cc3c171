"""Precision and layout of the fast path: `--precision auto` on a CPU picks bf16 exactly where the CPU has it,
bf16 stays within 3 % of fp32 on the official fixtures, training works under bf16 autocast, every layer keeps
the channels-last layout, and the SR U-Net's frame chunks change nothing but memory."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import OFFICIAL
from finetune_clips import TRAIN_MODEL
from safetensors.torch import load_file
from test_mmunet import MICRO, micro_inputs, micro_model, tiny_config, tiny_model
from test_srunet import load_tiny
from tiny_model import TINY_FIELDS

from mmgen.models import attention_ops, build_model, layers
from mmgen.models.config import MMUNetConfig
from mmgen.models.layers import group_norm
from mmgen.models.storage import autocast_tensors, store_for_compute
from mmgen.runtime import device as runtime_device
from mmgen.runtime.device import memory_budget, select_compute, select_precision
from mmgen.weights import load_model
from mmgen.weights.checkpoint import save_model

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "flags, env, expected",
    [
        ({"avx512_bf16", "avx512f"}, None, torch.bfloat16),  # AVX512-BF16 (e.g. EPYC Genoa, Cooper Lake)
        ({"amx_bf16", "amx_tile"}, None, torch.bfloat16),  # AMX (Sapphire Rapids and later)
        (
            {"avx512f", "avx2"},
            None,
            torch.float32,
        ),  # no native bf16: oneDNN would emulate it, slower than fp32
        ({"amx_bf16"}, "0", torch.float32),  # MMGEN_CPU_BF16=0 keeps fp32
        ({"avx2"}, "1", torch.bfloat16),
    ],
)
def test_auto_precision_on_cpu_is_bf16_only_where_the_cpu_has_it(monkeypatch, flags, env, expected):
    monkeypatch.setattr(runtime_device, "cpu_flags", lambda: flags)
    if env is None:
        monkeypatch.delenv(runtime_device.CPU_BF16_ENV, raising=False)
    else:
        monkeypatch.setenv(runtime_device.CPU_BF16_ENV, env)
    assert select_precision(CPU, "auto") == expected
    assert select_precision(CPU, "fp32") == torch.float32  # an explicit choice always wins
    compute = select_compute("cpu", "auto")
    assert compute.describe() == f"cpu ({'bf16' if expected == torch.bfloat16 else 'fp32'})"


@pytest.mark.parametrize(("flags", "env", "line"), [
    ({"avx512_bf16"}, "0", "yes (off: MMGEN_CPU_BF16=0)"),  # a Zen 5 told to stay fp32: doctor said `no`
    ({"avx2"}, "1", "no (on: MMGEN_CPU_BF16=1)"),
    ({"avx512_bf16"}, "no", "yes (off: MMGEN_CPU_BF16=no)"),  # quoted as set: it said `=0`, never written
    ({"avx2"}, " On ", "no (on: MMGEN_CPU_BF16=On)"),
    ({"amx_bf16"}, None, "yes"),
    ({"avx2"}, "0", "no"),  # the override agrees with the hardware: nothing to add
])
def test_doctor_says_the_cpus_bf16_and_the_override_apart(monkeypatch, flags, env, line):
    """With MMGEN_CPU_BF16=0 on a CPU with AVX512-BF16, `doctor` said `native bf16: no` and --json
    `"native_bf16": false`: it asked what auto takes, override and all. `native_bf16` is the hardware's now;
    `auto_bf16` is what --precision auto takes, and the line names the override where they differ."""
    from mmgen.cli import _facts, doctor

    monkeypatch.setattr(runtime_device, "cpu_flags", lambda: flags)
    if env is None:
        monkeypatch.delenv(runtime_device.CPU_BF16_ENV, raising=False)
    else:
        monkeypatch.setenv(runtime_device.CPU_BF16_ENV, env)
    cpu = _facts._devices()["cpu"]
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert (cpu["native_bf16"], cpu["auto_bf16"]) == (native, native if env is None else env.strip() in ("1", "On"))
    assert doctor._bf16(cpu) == line


def test_this_machines_cpu_flags_are_read():
    """torch's probe and /proc/cpuinfo agree on what this CPU has (at least one of them answers)."""
    flags = runtime_device.cpu_flags()
    assert flags and ("avx2" in flags or "sse2" in flags or "neon" in flags or "asimd" in flags)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want).abs().max() / want.abs().max()).item()


@pytest.mark.parametrize("chunked_attention", [False, True], ids=["sdpa", "chunked attention"])
def test_bf16_stays_within_3_percent_of_fp32_on_the_official_fixtures(official_weights, monkeypatch, chunked_attention):
    """On either attention path bf16 takes (attention_ops: SDPA with AMX, the chunks with AVX512-BF16 only)."""
    monkeypatch.setattr(attention_ops, "_cpu_without_amx", lambda: chunked_attention)
    io = load_file(OFFICIAL / "tiny_mmunet_io.safetensors")
    model = tiny_model(official_weights)
    inputs = (io["video"], io["audio"], io["timesteps"])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        video, audio = model(*inputs, shift=0)
    with torch.no_grad():
        video_ref, audio_ref = model(*inputs, shift=0)
    assert video.dtype == torch.bfloat16
    assert relative_error(video, video_ref) < 0.03 and relative_error(audio, audio_ref) < 0.03

    sr = load_tiny()
    sr_io = load_file(OFFICIAL / "tiny_sr_io.safetensors")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = sr(sr_io["x"], sr_io["timesteps"], low_res=sr_io["low_res"])
    assert relative_error(out, sr_io["out"]) < 0.03


def test_weights_kept_in_bf16_give_exactly_what_autocast_gives_with_fp32_weights(official_weights):
    """Inference keeps the conv and linear weights in the compute dtype (half the memory, no cast copies):
    autocast rounds exactly those to bf16 at every call, so the outputs are bitwise the same."""
    io = load_file(OFFICIAL / "tiny_mmunet_io.safetensors")
    inputs = (io["video"], io["audio"], io["timesteps"])
    sr_io = load_file(OFFICIAL / "tiny_sr_io.safetensors")
    for model, run in (
        (tiny_model(official_weights), lambda m: m(*inputs, shift=1)),
        (load_tiny(), lambda m: (m(sr_io["x"], sr_io["timesteps"], low_res=sr_io["low_res"]),)),
    ):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            want = run(model)
            kept = store_for_compute(model, torch.bfloat16)
            got = run(kept)
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)
        dtypes = {name: p.dtype for name, p in kept.named_parameters()}
        assert {dtypes[name] for name in autocast_tensors(kept)} == {torch.bfloat16}
        assert {d for name, d in dtypes.items() if "norm" in name.lower()} == {torch.float32}


def test_a_model_loads_its_weights_in_the_dtype_it_runs_in(tmp_path, official_weights):
    """load_model(compute=bf16) reads each tensor straight into its kept dtype; fp32 (training) keeps all."""
    path = tmp_path / "tiny.safetensors"
    save_model(path, tiny_model(official_weights), "mm-unet", tiny_config())
    for compute in (torch.float32, torch.bfloat16):
        model = load_model(path, compute=compute).model
        lowered = autocast_tensors(model)
        assert len(lowered) > 50
        for name, tensor in model.state_dict().items():
            assert tensor.dtype == (compute if name in lowered else torch.float32), name
            assert torch.equal(tensor, official_weights[name].to(tensor.dtype))


def test_training_steps_under_bf16_autocast_lower_the_loss():
    """What `finetune` does on a bf16 CPU: fp32 weights and optimizer, forward and backward under autocast."""
    model = micro_model().train()
    video, audio, t = micro_inputs()
    target_video, target_audio = torch.randn_like(video), torch.randn_like(audio)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_video, out_audio = model(video, audio, t, shift=1)
            loss = (out_video.float() - target_video).square().mean() + (
                out_audio.float() - target_audio
            ).square().mean()
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimizer.step()
        losses.append(loss.item())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses[-1] < 0.9 * losses[0]


# Where oneDNN has no bf16 kernels (a CPU without AVX512: `--precision auto` keeps fp32 there), torch runs a
# forced bf16 through its own reference convolutions, whose 3-D one takes only contiguous weights: the layout
# promises below are oneDNN's, so their bf16 case runs where oneDNN computes bf16.
ONEDNN_LAYOUTS = [torch.float32, pytest.param(torch.bfloat16, marks=pytest.mark.skipif(
    not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="oneDNN has no bf16 kernels on this CPU"))]


@pytest.mark.parametrize("compute", ONEDNN_LAYOUTS)
def test_every_layer_of_a_model_kept_for_inference_hands_on_channels_last(compute):
    """No layer hands the next a channels-first video or audio: a copy back to that layout costs more than
    the layer (and the convolutions would reorder their input). The audio's first convolution sees one
    channel, a layout either way: its output follows its weight's, which inference keeps channels-last."""
    model = store_for_compute(micro_model(), compute)
    seen = []

    def record(module, args, output):
        for modality, x in output.items() if isinstance(output, dict) else [("video", output)]:
            if isinstance(x, torch.Tensor) and x.dim() == (5 if modality == "video" else 3):
                seen.append((type(module).__name__, modality, layers.channels_to_end(x).is_contiguous()))

    for module in model.modules():
        if module is not model and type(module).__module__.startswith("mmgen."):
            module.register_forward_hook(record)
    with torch.no_grad(), torch.autocast("cpu", dtype=compute, enabled=compute != torch.float32):
        model(*micro_inputs(), shift=1)
    assert {modality for _, modality, _ in seen} == {"video", "audio"} and len(seen) > 40
    assert [(name, modality) for name, modality, channels_last in seen if not channels_last] == []


@pytest.mark.parametrize("compute", ONEDNN_LAYOUTS)
def test_no_forward_copies_a_convolution_weight(compute):
    """Inference keeps every convolution weight in the layout the convolutions run it in: stored as the
    file has it, torch would copy each weight into that layout at every call of every step."""
    model = store_for_compute(micro_model(), compute)
    def squeezed(shape):  # a Conv1d weight runs as a (k, 1) or (1, k) Conv2d weight
        return tuple(size for size in shape if size != 1)

    convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    weight_shapes = {squeezed(m.weight.shape) for m in model.modules() if isinstance(m, convs)}
    with torch.no_grad(), torch.autocast("cpu", dtype=compute, enabled=compute != torch.float32):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
            model(*micro_inputs(), shift=1)
    copied = [e.input_shapes[0] for e in prof.events() if e.name == "aten::copy_" and e.input_shapes]
    convolved = [e for e in prof.events() if "convolution" in e.name]
    assert convolved, "the forward ran no convolution"
    assert [shape for shape in copied if squeezed(shape) in weight_shapes] == []


def test_a_built_model_and_its_weights_loaded_from_a_file_are_laid_out_alike_and_train_alike(tmp_path):
    """Every weight has the same strides, size-1 axes included, whether the model was built (a run from scratch)
    or loaded from a file (a resumed run, --from): torch reads a convolution's layout from the strides, and the
    first audio convolution's weight (one input channel) sets the layout of every audio activation after it. In
    another layout the gradients round otherwise (on an AVX2 CPU: a resumed run was not bitwise the run that
    never stopped), so the gradients must be bitwise the same too."""
    built = micro_model()
    save_model(tmp_path / "micro.safetensors", built, "mm-unet", MICRO)
    loaded = load_model(tmp_path / "micro.safetensors").model

    def strides(model):
        return {name: p.stride() for name, p in model.named_parameters()}

    assert strides(loaded) == strides(built)
    gradients = []
    for model in (built, loaded):
        video, audio = model.eval()(*micro_inputs(), shift=1)
        (video.square().sum() + audio.square().sum()).backward()
        gradients.append({name: p.grad for name, p in model.named_parameters()})
    assert [name for name, g in gradients[0].items() if not torch.equal(g, gradients[1][name])] == []


def test_group_norm_is_the_same_in_either_layout():
    norm = torch.nn.GroupNorm(4, 8)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    video = 3 * torch.randn(2, 5, 8, 6, 7) + 1  # (B, F, C, H, W); statistics over all frames
    want = torch.nn.functional.group_norm(video.transpose(1, 2), 4, norm.weight, norm.bias).transpose(1, 2)
    channels_last = video.movedim(2, -1).contiguous().movedim(-1, 2)
    for x in (video, channels_last):
        got = group_norm(x, norm, channel_dim=2)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert group_norm(channels_last, norm, channel_dim=2).stride() == channels_last.stride()


def test_sr_frames_in_chunks_give_the_same_output(monkeypatch):
    sr = load_tiny()
    io = load_file(OFFICIAL / "tiny_sr_io.safetensors")
    x, low_res = io["x"].repeat(3, 1, 1, 1), io["low_res"].repeat(3, 1, 1, 1)  # 6 frames
    timesteps = io["timesteps"].repeat(3)
    calls = []
    sr.register_forward_pre_hook(lambda *_: None)
    sr.time_embed.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        whole = sr(x, timesteps, low_res)
        assert len(calls) == 1
        sr.frames_per_call = 4
        chunked = sr(x, timesteps, low_res)
        assert len(calls) == 3  # 4 + 2 frames
        sr.frames_per_call = None  # from the memory budget: room for 2 frames → 3 calls
        monkeypatch.setenv("MMGEN_MAX_MEMORY", str(2 * sr.frame_bytes(*x.shape[-2:])))
        budgeted = sr(x, timesteps, low_res)
        assert len(calls) == 6
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(budgeted, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(whole[:2], io["out"], atol=1e-4, rtol=1e-4)


def test_memory_budget_reads_its_override(monkeypatch):
    monkeypatch.setenv("MMGEN_MAX_MEMORY", "1.5G")
    assert memory_budget(CPU) == int(1.5 * 2**30)
    monkeypatch.setenv("MMGEN_MAX_MEMORY", "512M")
    assert memory_budget(CPU) == 512 * 2**20
    monkeypatch.delenv("MMGEN_MAX_MEMORY")
    assert 0 < memory_budget(CPU)


LOAD_PROBE = """
import sys
import torch
import mmgen.weights.load as load

def status(key):  # KiB
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))

open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
before = status("VmRSS:")
model = load.load_model(sys.argv[1], compute=torch.bfloat16).model
kept = sum(t.nbytes for t in model.state_dict().values())
print((status("VmHWM:") - before) * 1024, kept)
"""


def test_loading_holds_the_kept_weights_and_one_tensor_of_the_file_not_all_of_it(tmp_path):
    """A 100 MB float32 model loaded for bf16 keeps ~52 MB; holding the whole file (mapped, or read) while
    converting out of it would add its 100 MB on top; each tensor read and converted in turn, loading grows by the
    kept weights plus the largest tensor as the file holds it."""
    path = tmp_path / "wide.safetensors"
    config = MMUNetConfig(**{**TINY_FIELDS, "model_channels": 128})
    model = build_model("mm-unet", config)
    save_model(path, model, "mm-unet", config)
    largest = max(t.nbytes for t in model.state_dict().values())
    done = subprocess.run([sys.executable, "-c", LOAD_PROBE, str(path)], capture_output=True, text=True, check=True)
    grown, kept = map(int, done.stdout.split())
    assert path.stat().st_size > 100 << 20 and kept < 0.55 * path.stat().st_size and largest < 8 << 20
    # slack: the same load grows 65–82 MB from run to run here (the allocator's and the mapped file's pages), 40 MB
    # over kept + largest at most; holding the whole file would add its 100 MB
    assert grown <= kept + largest + (40 << 20), (grown >> 20, kept >> 20)


@pytest.mark.parametrize("shape", [(1, 16, 64, 64, 128), (1, 256, 1600)])
def test_projections_under_bf16_autocast_are_bitwise_those_of_torch_linear(shape):
    """Inference runs the 1×1 projections through oneDNN's matmul with the bias fused in; it must give exactly
    what torch's own linear gives under autocast, and training (gradients) must still flow through them."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g).to(torch.bfloat16)
    conv = torch.nn.Conv2d(shape[-1], 3 * shape[-1], 1)
    weight, bias = conv.weight.detach().to(torch.bfloat16), conv.bias.detach()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ours = layers._linear(x, weight.flatten(1), bias)
        torch_linear = F.linear(x, weight.flatten(1), bias)
    assert torch.equal(ours, torch_linear)
    trained = conv.weight.flatten(1).detach().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layers._linear(x, trained, bias).float().square().mean().backward()
    assert trained.grad is not None and trained.grad.abs().sum() > 0


def test_auto_trains_a_narrow_model_in_fp32_on_a_bf16_cpu(monkeypatch):
    """The demo (width 32) trains faster in fp32 even on a CPU with bf16; the paper's width in bf16 there."""
    from mmgen.models import config_for
    from mmgen.train.setup import training_precision

    monkeypatch.setattr(runtime_device, "cpu_flags", lambda: {"amx_bf16", "amx_tile"})
    monkeypatch.delenv(runtime_device.CPU_BF16_ENV, raising=False)
    demo, paper = load_model("demo").config, config_for("mm-unet")
    assert demo.model_channels < 128 <= paper.model_channels
    assert training_precision(CPU, "auto", demo) == torch.float32
    assert training_precision(CPU, "auto", paper) == torch.bfloat16
    assert training_precision(CPU, "bf16", demo) == torch.bfloat16  # an explicit choice always wins


@pytest.mark.parametrize(("flags", "said"), [
    ({"avx2", "avx512_bf16"}, "bf16, native here, is faster"),
    ({"avx2"}, "fp32 (bf16 is emulated too) is faster"),  # it said bf16 was faster here too: emulated, it is not
    ({"avx512_fp16", "avx512_bf16"}, None)])
def test_fp16_on_a_cpu_that_emulates_it_says_once_that_it_is_slower(monkeypatch, caplog, flags, said):
    """`--precision fp16` on a Zen 5 (no native fp16) was taken silently and was the slowest choice: generate 33 s,
    against 24 s in fp32 and 13 s in bf16. One `note:` line says so, once per call however many runs ask, and names
    what is faster on this CPU."""
    from mmgen.media.notes import one_call

    monkeypatch.setattr(runtime_device, "cpu_flags", lambda: flags)
    with caplog.at_level("WARNING", logger="mmgen"), one_call():
        for _ in range(3):  # a batch's runs, a fine-tune's training and previews: one line
            assert select_compute("cpu", "FP16").precision == "fp16"
        select_compute("cpu", "bf16")
        select_compute("cpu", "fp32")
    notes = [r.getMessage() for r in caplog.records]
    assert notes == ([f"note: fp16 on this CPU is emulated (it has no native fp16), slower than fp32; {said}"] if said
                     else [])



def test_a_bf16_training_step_on_the_cpu_gives_every_weight_the_gradient_fp32_gives_it():
    """A second finetune in one process (a Python program's, a test file's) of the 2-frame model the training
    tests fit stopped with `training diverged: the loss at step 2 is not finite` in bf16, the first never:
    torch's oneDNN kernel for a bf16 Conv3d's weight gradient over fewer frames than its kernel spans (the video
    output conv's) reads memory it never wrote — wrong in a fresh process, inf in a busy one. Each weight's bf16
    gradient is fp32's, to bf16's precision."""
    with torch.random.fork_rng():
        torch.manual_seed(2)
        model = build_model("mm-unet", MMUNetConfig(**TRAIN_MODEL["config"])).train()
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():  # the zero-initialised output convs: every branch contributes
                    p.normal_(0, 0.05)
        video, audio = torch.randn(2, 2, 3, 8, 8), torch.randn(2, 1, 1600)
    gradients = []
    for dtype in (torch.float32, torch.bfloat16):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out_video, out_audio = model(video, audio, torch.tensor([10, 600]))
        (out_video.float().square().mean() + out_audio.float().square().mean()).backward()
        gradients.append({name: p.grad for name, p in model.named_parameters()})
    fp32, bf16 = gradients
    scale = max(float(grad.abs().max()) for grad in fp32.values())  # bf16's error: ~1 % of it here
    off = {name: float((bf16[name] - grad).abs().max()) / scale for name, grad in fp32.items()}
    assert {name: error for name, error in off.items() if not error < 0.03} == {}
