"""The MM-UNet loads the official checkpoints as they are and computes what the official code computes."""

from __future__ import annotations

import pytest
import torch
from conftest import OFFICIAL, official_json
from oracle_attention import reference_attention
from safetensors.torch import load_file

from mmgen.models import build_model
from mmgen.models.config import MMUNetConfig
from mmgen.models.cross_attention import CrossModalAttention
from mmgen.models.layers import timestep_embedding
from mmgen.models.mm_layers import VideoConv2d1d

# Official constructor arguments that are fixed in our architecture (or, like use_checkpoint, runtime
# options).
FIXED_OFFICIAL_KWARGS = {
    "video_type": "2d+1d",
    "audio_type": "1d",
    "num_classes": None,
    "use_checkpoint": False,
    "use_fp16": False,
    "num_heads_upsample": -1,
    "resblock_updown": True,
}


def tiny_config(**overrides) -> MMUNetConfig:
    """The fixture model's official kwargs as our config."""
    kwargs = dict(official_json("tiny_mmunet.json")["constructor_kwargs"])
    for name, value in FIXED_OFFICIAL_KWARGS.items():
        assert kwargs.pop(name) == value, name
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in {**kwargs, **overrides}.items()}
    return MMUNetConfig(**fields)


@pytest.fixture(scope="module")
def io():
    return load_file(OFFICIAL / "tiny_mmunet_io.safetensors")


def tiny_model(weights, **overrides):
    model = build_model("mm-unet", tiny_config(**overrides)).eval()
    model.load_state_dict(weights, strict=True)
    return model


# A smaller model for behaviour tests: 4 frames of 8×8, 6 shifting cross-attention blocks (windows 1 and 3).
MICRO = MMUNetConfig(
    video_size=(4, 3, 8, 8),
    audio_size=(1, 256),
    model_channels=32,
    num_res_blocks=1,
    channel_mult=(1, 2),
    cross_attention_resolutions=(1, 2),
    cross_attention_windows=(1, 3),
    video_attention_resolutions=(2,),
    audio_attention_resolutions=(2,),
    num_head_channels=16,
)


def micro_inputs(batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    frames, channels, h, w = MICRO.video_size
    video = torch.randn(batch, frames, channels, h, w, generator=g)
    audio = torch.randn(batch, 1, MICRO.audio_length, generator=g)
    return video, audio, torch.tensor([10, 600][:batch])


def micro_model() -> torch.nn.Module:
    """Seeded random weights with every zero-initialised output conv re-drawn, so every branch contributes."""
    with torch.random.fork_rng():
        torch.manual_seed(2)
        model = build_model("mm-unet", MICRO)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_released_config_has_the_official_keys_shapes_and_size():
    model = build_model("mm-unet", device="meta")
    ours = [f"{k} [{','.join(map(str, v.shape))}]" for k, v in model.state_dict().items()]
    # `key [shape]` per line, in the official state_dict order (a copy of the spec's official-base-keys.txt)
    official = (OFFICIAL.parent / "mmunet_official_keys.txt").read_text().splitlines()
    assert len(official) == 1046
    assert ours == official
    assert sum(p.numel() for p in model.parameters()) == 133_675_524


def test_tiny_official_checkpoint_loads_strictly_and_reproduces_the_official_outputs(official_weights, io):
    model = tiny_model(official_weights)
    assert sum(p.numel() for p in model.parameters()) == official_json("tiny_mmunet.json")["num_parameters"]
    with torch.no_grad():
        video, audio = model(io["video"], io["audio"], io["timesteps"])
    torch.testing.assert_close(video, io["video_out"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(audio, io["audio_out"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case, shift", [("const", 3), ("seq", [5, 2, 0, 4, 7, 1])])
def test_explicit_window_shifts_reproduce_the_official_outputs(official_weights, io, case, shift):
    expected = load_file(OFFICIAL / "tiny_mmunet_io_shift.safetensors")
    model = tiny_model(official_weights, cross_attention_shift=True)
    with torch.no_grad():
        video, audio = model(io["video"], io["audio"], io["timesteps"], shift=shift)
    torch.testing.assert_close(video, expected[f"video_out_shift_{case}"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(audio, expected[f"audio_out_shift_{case}"], atol=1e-4, rtol=1e-4)


def test_time_embedding_matches_the_official(official_weights, io):
    model = tiny_model(official_weights)
    raw = timestep_embedding(io["timesteps"], model.config.model_channels)
    torch.testing.assert_close(raw, io["timestep_embedding_raw"], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(model.time_embed(raw), io["time_embed_out"], atol=1e-5, rtol=1e-5)


def test_every_block_matches_the_official_activation_trace(official_weights, io):
    model = tiny_model(official_weights)
    trace = official_json("tiny_mmunet.json")["trace_no_shift"]
    blocks = {f"input_blocks.{i}": b for i, b in enumerate(model.input_blocks)}
    blocks["middle_blocks"] = model.middle_blocks[-1]  # the middle's blocks run one by one
    blocks.update({f"output_blocks.{i}": b for i, b in enumerate(model.output_blocks)})
    assert set(blocks) == set(trace)
    seen = {}
    for name, block in blocks.items():
        block.register_forward_hook(lambda _m, _args, out, name=name: seen.__setitem__(name, out))
    with torch.no_grad():
        model(io["video"], io["audio"], io["timesteps"])
    for name, expected in trace.items():
        for modality, stats in expected.items():
            x = seen[name][modality].double()
            assert list(x.shape) == stats["shape"], (name, modality)
            got = [x.mean().item(), x.std().item(), x.abs().max().item(), *x.flatten()[:8].tolist()]
            want = [stats["mean"], stats["std"], stats["absmax"], *stats["first8"]]
            assert got == pytest.approx(want, abs=1e-4, rel=1e-4), (name, modality)


def test_reference_attention_path_gives_the_same_outputs(official_weights, io):
    model = tiny_model(official_weights, cross_attention_shift=True)
    shifts = [5, 2, 0, 4, 7, 1]
    with torch.no_grad():
        fast = model(io["video"], io["audio"], io["timesteps"], shift=shifts)
        with reference_attention(model):
            reference = model(io["video"], io["audio"], io["timesteps"], shift=shifts)
        after = model(io["video"], io["audio"], io["timesteps"], shift=shifts)
    for got, want in zip(fast, reference, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(fast, after, strict=True))  # the swap is undone


def shifts_seen(model, **forward_kwargs) -> tuple[list[int], tuple[torch.Tensor, torch.Tensor]]:
    """The window shift each cross-attention block received, in forward order, and the outputs."""
    seen = []
    hooks = [
        m.register_forward_pre_hook(lambda m, args: seen.append(args[1].shifts.get(m, 0)))
        for m in model.modules()
        if isinstance(m, CrossModalAttention)
    ]
    with torch.no_grad():
        out = model(*micro_inputs(), **forward_kwargs)
    for h in hooks:
        h.remove()
    return seen, out


def test_shifts_drawn_from_a_generator_are_reproducible_and_bounded():
    model = micro_model()
    windows = [m.window for m in model.modules() if isinstance(m, CrossModalAttention)]
    assert windows == [1, 3, 3, 3, 1, 1]

    runs = [shifts_seen(model, generator=torch.Generator().manual_seed(seed)) for seed in range(12)]
    again, out_again = shifts_seen(model, generator=torch.Generator().manual_seed(0))
    assert again == runs[0][0]
    assert all(torch.equal(a, b) for a, b in zip(out_again, runs[0][1], strict=True))
    # the output is the one of the explicit shifts that were drawn
    _, explicit = shifts_seen(model, shift=again)
    assert all(torch.equal(a, b) for a, b in zip(out_again, explicit, strict=True))

    # other seeds draw other shifts, and other shifts give other outputs
    other = next(out for shifts, out in runs if shifts != again)
    assert not torch.allclose(other[0], out_again[0])
    # each block draws from [0, F - window], both ends included
    for window in (1, 3):
        values = {shifts[i] for shifts, _ in runs for i, w in enumerate(windows) if w == window}
        assert values == set(range(MICRO.frames - window + 1)), (window, values)


def test_shift_without_a_generator_uses_torch_global_rng():
    model = micro_model()
    torch.manual_seed(123)
    first, _ = shifts_seen(model)
    torch.manual_seed(123)
    assert shifts_seen(model)[0] == first


def test_shift_sequence_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="expected 6 values"):
        micro_model()(*micro_inputs(), shift=[1, 2, 3])


def test_blocks_without_window_shift_use_shift_zero(official_weights, io):
    model = tiny_model(official_weights)  # cross_attention_shift False
    with torch.no_grad():
        drawn = model(io["video"], io["audio"], io["timesteps"], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(drawn[0], io["video_out"], atol=1e-4, rtol=1e-4)


def test_audio_timesteps_equal_to_timesteps_change_nothing():
    model = micro_model()
    video, audio, t = micro_inputs()
    with torch.no_grad():
        plain = model(video, audio, t, shift=1)
        same = model(video, audio, t, audio_timesteps=t.clone(), shift=1)
    assert all(torch.equal(a, b) for a, b in zip(plain, same, strict=True))


def test_audio_timesteps_drive_the_audio_branch_only():
    model = micro_model()
    video, audio, t = micro_inputs()
    t_audio = torch.tensor([10, 250])  # sample 0 keeps its timestep, sample 1 gets another for its audio
    with torch.no_grad():
        plain = model(video, audio, t, shift=1)
        split = model(video, audio, t, audio_timesteps=t_audio, shift=1)
        torch.testing.assert_close(split[0][0], plain[0][0], atol=1e-6, rtol=1e-6)  # sample 0 untouched
        torch.testing.assert_close(split[1][0], plain[1][0], atol=1e-6, rtol=1e-6)
        assert not torch.allclose(split[1][1], plain[1][1], atol=1e-4)  # sample 1's audio changes...
        assert not torch.allclose(split[0][1], plain[0][1], atol=1e-4)  # ...and, through RS-MMA, its video

        # Without the cross-modal bridge, each branch sees only its own timestep.
        for m in model.modules():
            if isinstance(m, CrossModalAttention):
                for p in (*m.video_proj_out.parameters(), *m.audio_proj_out.parameters()):
                    p.zero_()
        video_t, _ = model(video, audio, t, shift=1)
        _, audio_ta = model(video, audio, t_audio, shift=1)
        split_video, split_audio = model(video, audio, t, audio_timesteps=t_audio, shift=1)
    torch.testing.assert_close(split_video, video_t, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(split_audio, audio_ta, atol=1e-6, rtol=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients():
    video, audio, t = micro_inputs()

    def grads(checkpointing: bool):
        model = micro_model().train()
        model.gradient_checkpointing = checkpointing
        out_video, out_audio = model(video, audio, t, generator=torch.Generator().manual_seed(5))
        (out_video.square().mean() + out_audio.square().mean()).backward()
        return {n: p.grad for n, p in model.named_parameters()}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys()
    assert all(g is not None for g in plain.values())
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_runs_under_autocast(dtype):
    model = micro_model()
    inputs = micro_inputs()
    with torch.no_grad():
        video_ref, audio_ref = model(*inputs, shift=1)
        with torch.autocast("cpu", dtype=dtype):
            video, audio = model(*inputs, shift=1)
    assert video.shape == video_ref.shape and audio.shape == audio_ref.shape
    for got, want in ((video, video_ref), (audio, audio_ref)):
        assert torch.isfinite(got).all()
        assert (got.float() - want).abs().max() < 0.1 * want.abs().max()


@pytest.mark.parametrize("frames", [1, 2, 3, 5])
def test_the_frame_conv_equals_the_official_per_pixel_conv1d_for_any_clip_length(frames):
    """The official 2d+1d conv runs its temporal Conv1d over each pixel's sequence of frames, zero-padded at
    the clip's ends. Ours computes the same as one matmul and shifted sums; the fixture only has 8 frames,
    so the ends are checked here for clips as short as one frame, and with a 5-tap kernel too."""
    for kernel in (3, 5):
        torch.manual_seed(frames * 10 + kernel)
        conv = VideoConv2d1d(4, 6, kernel)
        x = torch.randn(2, frames, 4, 5, 7)  # (B, F, C, H, W)
        with torch.no_grad():
            ours = conv(x)
            spatial = conv.video_conv_spatial(x.flatten(0, 1)).unflatten(0, (2, frames))  # (B, F, C', H, W)
            per_pixel = spatial.permute(0, 3, 4, 2, 1).reshape(2 * 5 * 7, 6, frames)  # (B·H·W, C', F)
            official = conv.video_conv_temporal(per_pixel).reshape(2, 5, 7, 6, frames).permute(0, 4, 3, 1, 2)
        assert ours.shape == (2, frames, 6, 5, 7)
        torch.testing.assert_close(ours, official, atol=1e-5, rtol=1e-5, msg=f"kernel {kernel}")


def test_a_sample_gets_the_same_output_alone_and_in_a_batch():
    """Norm statistics and resampling are per sample: batching changes only the float rounding."""
    model = micro_model()
    video, audio, _ = micro_inputs(batch=3)
    t = torch.tensor([600, 600, 600])
    with torch.no_grad():
        together = model(video, audio, t, shift=1)
        alone = model(video[1:2], audio[1:2], t[1:2], shift=1)
    assert torch.allclose(together[0][1:2], alone[0], atol=1e-5)
    assert torch.allclose(together[1][1:2], alone[1], atol=1e-5)
