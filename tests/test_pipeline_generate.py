"""A seed is a promise: the Python API gives back the very same tensors for the same seed and settings, clip k of
a run is the clip its own seed makes alone, and a soundtrack made twice from one seed is the same sound.

Runs the real pipelines on a tiny random model (tests/tiny_model.py) with 2 steps, on the CPU.
"""

from __future__ import annotations

import pytest
import torch
from media_factory import write_test_video

from mmgen.pipelines import GenerateSettings, SoundtrackSettings, generate, soundtrack

# fp32: the batching tolerances below are fp32 rounding; bf16, the default on CPUs with it, rounds a batched
# convolution's sums ~1000× coarser, so a clip would differ in and out of a batch by bf16 rounding.
FAST = {"steps": 2, "device": "cpu", "precision": "fp32"}


def clips(tiny, batch_size: int = 1, **settings):
    """Clips from the tiny model through the Python API, in memory."""
    return generate(GenerateSettings(model=str(tiny), **FAST, **settings), batch_size=batch_size)


@pytest.fixture(scope="module")
def seven(tiny):
    """Two clips from seed 7 (clip k uses seed 7 + k), one at a time."""
    return clips(tiny, num=2, seed=7)


def test_the_same_seed_gives_identical_tensors(tiny, seven):
    again = clips(tiny, num=2, seed=7)
    for first, second in zip(seven, again, strict=True):
        assert first.clip.video.shape == (16, 3, 16, 16) and first.clip.audio.shape == (1, 25600)
        assert torch.equal(first.clip.video, second.clip.video)
        assert torch.equal(first.clip.audio, second.clip.audio)
        assert first.provenance.seed == second.provenance.seed
    a, b = seven
    assert (a.provenance.seed, b.provenance.seed) == (7, 8)
    assert not torch.allclose(a.clip.video, b.clip.video, atol=1e-3)  # another seed, another clip
    assert not torch.allclose(a.clip.audio, b.clip.audio, atol=1e-3)


def test_clip_k_is_what_its_own_seed_makes_alone(tiny, seven):
    (alone,) = clips(tiny, num=1, seed=8)
    assert torch.equal(alone.clip.video, seven[1].clip.video)
    assert torch.equal(alone.clip.audio, seven[1].clip.audio)


def test_batching_does_not_change_a_clip_with_the_deterministic_default_sampler(tiny, seven):
    """dpm++ draws no noise after x_T, and x_T comes from each clip's own seed, so a batch of two makes the same
    clips up to float rounding (batched convolutions may sum in another order: compared with a tolerance).
    The tolerance: a forward's batch rounding is ~3e-6, and the first step's clean-sample estimate at t = 999
    multiplies it by 1/√ᾱ ≈ 160."""
    batched = clips(tiny, num=2, seed=7, batch_size=2)
    for one, together in zip(seven, batched, strict=True):
        assert torch.allclose(one.clip.video, together.clip.video, atol=5e-4)
        assert torch.allclose(one.clip.audio, together.clip.audio, atol=5e-4)
        # up to rounding only, which the sound's encoder can make audible: the sidecar says which batch size made it
        assert (one.provenance.to_json()["batch_size"], together.provenance.to_json()["batch_size"]) == (1, 2)


def test_batching_does_not_change_a_clip_with_a_stochastic_sampler(tiny):
    """ddpm draws fresh noise at every step; each clip draws it from its own seed's generator."""
    alone = clips(tiny, num=1, seed=8, sampler="ddpm")
    batched = clips(tiny, num=2, seed=7, batch_size=2, sampler="ddpm")
    other_seed = clips(tiny, num=1, seed=9, sampler="ddpm")
    assert torch.allclose(alone[0].clip.video, batched[1].clip.video, atol=5e-4)
    assert torch.allclose(alone[0].clip.audio, batched[1].clip.audio, atol=5e-4)
    assert not torch.allclose(alone[0].clip.audio, other_seed[0].clip.audio, atol=1e-2)


def test_a_soundtrack_made_twice_from_one_seed_is_the_same_sound(tiny, tmp_path):
    clip = write_test_video(tmp_path / "clip.mp4", seconds=2.0, fps=25).path  # two windows at 10 fps
    made = [
        soundtrack(clip, tmp_path / f"take{k}.mp4", SoundtrackSettings(model=str(tiny), seed=seed, **FAST))
        for k, seed in enumerate((4, 4, 5))
    ]
    first, second, other = (result.clip.audio for result in made)
    assert first.shape == (1, 32000)  # exactly the clip's 2.0 s at 16 kHz
    assert made[0].provenance.windows == 2
    assert torch.equal(first, second)
    assert not torch.allclose(first, other, atol=1e-3)


def test_the_record_of_a_cpu_clip_names_the_thread_count_its_samples_need_again(seven):
    """A different thread count splits the model's sums differently, so the same seed remakes the samples bitwise
    only on as many threads: the sidecar says how many (`threads`: OMP_NUM_THREADS for the remake)."""
    for clip in seven:
        assert clip.provenance.threads == torch.get_num_threads()
        assert clip.to_json()["threads"] == torch.get_num_threads()
