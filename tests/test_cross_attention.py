"""RS-MMA: the batched fast path equals the loop-per-frame reference for every shape the model can meet."""

from __future__ import annotations

import pytest
import torch
from oracle_attention import reference_rs_mma

from mmgen.models.cross_attention import rs_mma


def _qkv(batch: int, channels: int, frames: int, hw: int, length: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(batch, 3 * channels, frames, hw, generator=g)
    audio = torch.randn(batch, 3 * channels, length, generator=g)
    return video, audio


CASES = {
    # name: (batch, channels, heads, frames, hw, length, window)
    "16 frames, window 1": (1, 32, 2, 16, 16, 400, 1),
    "window 4 of 8 frames": (2, 32, 2, 8, 16, 200, 4),
    "L not divisible by F: last chunk takes the rest": (2, 32, 2, 8, 4, 203, 4),
    "odd sizes: 5 frames of 3x3, a 2-sample tail": (1, 16, 1, 5, 9, 37, 2),
    "window == F": (2, 32, 4, 8, 4, 200, 8),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_fast_path_matches_reference_for_every_shift(case):
    batch, channels, heads, frames, hw, length, window = CASES[case]
    qkv_video, qkv_audio = _qkv(batch, channels, frames, hw, length)
    # every legal shift, including those whose window wraps around the end of the clip
    for shift in range(frames - window + 1):
        fast = rs_mma(qkv_video, qkv_audio, heads, window, shift)
        reference = reference_rs_mma(qkv_video, qkv_audio, heads, window, shift)
        for got, want in zip(fast, reference, strict=True):
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=f"{case}, shift {shift}")


def test_fast_path_matches_reference_for_random_shapes_and_shifts():
    """Shapes and shifts drawn at random (seeded): batch, heads, head width, frames, pixels per frame, audio
    tokens per frame with a tail that does not divide evenly, window and shift."""
    g = torch.Generator().manual_seed(2023)

    def draw(low: int, high: int) -> int:  # inclusive
        return int(torch.randint(low, high + 1, (), generator=g))

    for case in range(24):
        batch, heads, ch, frames, hw = draw(1, 2), draw(1, 3), 4 * draw(1, 4), draw(2, 9), draw(1, 12)
        length = frames * draw(1, 12) + draw(0, frames - 1)
        window = draw(1, frames)
        shift = draw(0, frames - window)
        qkv_video, qkv_audio = _qkv(batch, heads * ch, frames, hw, length, seed=case)
        fast = rs_mma(qkv_video, qkv_audio, heads, window, shift)
        reference = reference_rs_mma(qkv_video, qkv_audio, heads, window, shift)
        shape = dict(batch=batch, heads=heads, ch=ch, frames=frames, hw=hw, length=length, window=window)
        for got, want in zip(fast, reference, strict=True):
            assert got.shape == want.shape, shape
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=f"{shape}, shift {shift}")


def test_fast_path_accepts_the_strided_layout_the_block_produces():
    qkv_video, qkv_audio = _qkv(2, 32, 8, 16, 200)
    strided = qkv_video.transpose(1, 2).contiguous().transpose(1, 2)  # (B, 3C, F, HW) over (B, F, 3C, HW)
    for got, want in zip(
        rs_mma(strided, qkv_audio, 2, 4, 3), rs_mma(qkv_video, qkv_audio, 2, 4, 3), strict=True
    ):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def test_window_one_links_frame_i_to_audio_chunk_i_plus_shift():
    frames, hw, length, shift = 8, 4, 80, 3
    qkv_video, qkv_audio = _qkv(1, 16, frames, hw, length)
    video_out, _ = rs_mma(qkv_video, qkv_audio, 1, 1, shift)

    chunk = 2  # change the audio keys and values of chunk 2 only
    changed = qkv_audio.clone()
    changed[:, 16:, chunk * 10 : (chunk + 1) * 10] += 1.0
    video_changed, _ = rs_mma(qkv_video, changed, 1, 1, shift)

    differs = (video_changed - video_out).abs().amax(dim=(0, 1, 3)) > 1e-6  # per frame
    assert differs.tolist() == [f == (chunk - shift) % frames for f in range(frames)]


def test_full_window_does_not_depend_on_the_shift():
    qkv_video, qkv_audio = _qkv(1, 32, 8, 4, 200)
    unshifted = rs_mma(qkv_video, qkv_audio, 2, 8, 0)
    for got, want in zip(rs_mma(qkv_video, qkv_audio, 2, 8, 5), unshifted, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def test_bfloat16_stays_close_to_the_reference():
    qkv_video, qkv_audio = (t.bfloat16() for t in _qkv(2, 32, 8, 16, 200))
    fast = rs_mma(qkv_video, qkv_audio, 2, 4, 2)
    reference = reference_rs_mma(qkv_video, qkv_audio, 2, 4, 2)
    for got, want in zip(fast, reference, strict=True):
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), want.float(), atol=3e-2, rtol=3e-2)
