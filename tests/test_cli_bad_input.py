"""Everything a user can get wrong gets one line saying what and where — exit code 2, no traceback — and costs
them nothing: no output, no half-written or temporary file is left behind.

Each case builds its bad input in a fresh folder, runs the `mmgen` command there — in the test's process
(tests/cli_here.py), with what libraries write to the process's own stdout and stderr caught too — and compares
the folder's files (hidden ones included) before and after.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import struct
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
from cli_here import run_here
from media_factory import write_test_audio, write_test_video
from mmgen_cli import mmgen_env, run_mmgen

from mmgen.media import write_mp4

FAST = ("--steps", "2")
# A case writes its inputs into the folder and returns (mmgen arguments, what the error line must say).
Case = Callable[[Path, Path], tuple[list, str]]


def clip(folder: Path, name: str = "clip.mp4", **options) -> Path:
    return write_test_video(folder / name, seconds=1.0, **options).path


def missing_file(folder, model):
    return ["soundtrack", folder / "holiday.mp4", "-m", model], "holiday.mp4: no such file"


def a_directory(folder, model):
    (folder / "clips.mp4").mkdir()
    return ["soundtrack", folder / "clips.mp4", "-m", model], "clips.mp4: it is a directory"


def empty_file(folder, model):
    (folder / "empty.mp4").touch()
    return ["soundtrack", folder / "empty.mp4", "-m", model], "empty.mp4: the file is empty"


def random_bytes_named_mp4(folder, model):
    (folder / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(20_000))
    return ["soundtrack", folder / "noise.mp4", "-m", model], "noise.mp4: not a readable media file"


def audio_only_for_soundtrack(folder, model):
    song = write_test_audio(folder / "song.m4a", seconds=1.0).path
    return ["soundtrack", song, "-m", model], "song.m4a: it has no video stream"


def a_still_image_for_soundtrack(folder, model):
    with av.open(str(folder / "cover.png"), "w") as image:
        stream = image.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb24"
        for packet in [*stream.encode(av.VideoFrame(32, 32, "rgb24")), *stream.encode()]:
            image.mux(packet)
    return ["soundtrack", folder / "cover.png", "-m", model], "cover.png: it is a still image (png), not a video"


def video_only_for_animate(folder, model):
    silent = clip(folder, "silent.mp4", audio=False)
    return ["animate", silent, "-m", model], "silent.mp4: it has no audio stream"


def video_with_no_frames(folder, model):
    blank = write_test_video(folder / "blank.avi", seconds=0, audio=False).path
    return ["soundtrack", blank, "-m", model], "blank.avi: its video stream is empty"


def truncated_camera_mp4(folder, model):
    """An mp4 with its index at the end, cut in half (an interrupted copy): the index is gone."""
    whole = clip(folder, "whole.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "whole.mp4").unlink()
    return ["soundtrack", folder / "cut.mp4", "-m", model, *FAST], "cut.mp4: not a readable media file or damaged"


def truncated_faststart_mp4(folder, model):
    """An mp4 with its index first, cut in half: it opens, but the data stops early."""
    whole = folder / "whole.mp4"
    write_mp4(whole, torch.rand(20, 3, 32, 32) * 2 - 1, torch.rand(1, 32000) - 0.5, 10, 16000)
    (folder / "cut.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    return ["soundtrack", folder / "cut.mp4", "-m", model, *FAST], "cut.mp4: the file is cut short"


def unsupported_codec(folder, model):
    """An mp4 whose video is in a codec FFmpeg has no decoder for (its sample entry renamed)."""
    path = clip(folder)
    path.write_bytes(path.read_bytes().replace(b"avc1", b"zzzz"))
    return ["soundtrack", path, "-m", model], "clip.mp4: its video codec is not supported"


def unwritable_output_folder(folder, model):
    locked = _unwritable_folder(folder)
    return ["soundtrack", clip(folder), "-o", locked / "out.mp4", "-m", model], f"cannot write to {locked}"


def output_folder_is_a_file(folder, model):
    (folder / "notes.txt").write_text("not a folder")
    return ["generate", "-o", folder / "notes.txt", "-m", model], "notes.txt is a file, not a directory"


def output_folder_below_a_file(folder, model):
    """-o notes.txt/clips: the folder cannot be made because notes.txt is a file — not "does not exist"."""
    (folder / "notes.txt").write_text("not a folder")
    return (["generate", "-o", folder / "notes.txt" / "clips", "-m", model],
            "notes.txt is a file, not a directory")


def output_folder_below_a_locked_one(folder, model):
    locked = _unwritable_folder(folder)
    return ["generate", "-o", locked / "new", "-m", model], f"cannot write to {locked}"


def output_without_a_movie_suffix(folder, model):
    return ["soundtrack", clip(folder), "-o", folder / "scored", "-m", model], "the output must be a .mp4"


def existing_output(folder, model):
    (folder / "clip_soundtrack.mp4").write_bytes(b"my earlier edit")
    return ["soundtrack", clip(folder), "-m", model], "clip_soundtrack.mp4 already exists (pass --overwrite"


def zero_steps(folder, model):
    return ["soundtrack", clip(folder), "-m", model, "--steps", "0"], "--steps: must be between 1 and 1000, got 0"


def too_many_steps(folder, model):
    return ["generate", "-o", folder, "-m", model, "--steps", "5000"], "--steps: must be between 1 and 1000, got 5000"


def zero_batch_size(folder, model):
    """Worded as every range is, not as typer's pydantic-style "Input should be greater than or equal to 1"."""
    return ["generate", "-o", folder, "-m", model, "--batch-size", "0"], "--batch-size: must be at least 1, got 0"


def unknown_device(folder, model):
    return ["generate", "-o", folder, "-m", model, "--device", "tpu"], "--device: 'tpu' is not a device"


def missing_cuda(folder, model):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    return ["animate", clip(folder), "-m", model, "--device", "cuda"], "--device cuda: CUDA is not available"


def mix_out_of_range(folder, model):
    return ["soundtrack", clip(folder), "-m", model, "--mix", "1.5"], "--mix: must be between 0 and 1, got 1.5"


def mix_without_own_audio(folder, model):
    silent = clip(folder, "silent.mp4", audio=False)
    return ["soundtrack", silent, "-m", model, "--mix", "0.5"], "silent.mp4: it has no audio stream"


def unknown_model(folder, model):
    return ["generate", "-o", folder, "-m", "landscpae"], "unknown model 'landscpae'"


def not_a_model_file(folder, model):
    (folder / "weights.safetensors").write_bytes(b"definitely not safetensors")
    return ["generate", "-o", folder, "-m", folder / "weights.safetensors"], "weights.safetensors"


def output_is_the_input(folder, model):
    """--overwrite never lets an output replace its own input."""
    source = clip(folder)
    return ["soundtrack", source, "-o", source, "--overwrite", "-m", model], "clip.mp4: it is the input"


def output_is_a_symlink_to_the_input(folder, model):
    source = clip(folder)
    (folder / "edit.mp4").symlink_to(source.name)
    return (["soundtrack", source, "-o", folder / "edit.mp4", "--overwrite", "-m", model],
            f"edit.mp4: it is the input {source}")


def output_is_a_hard_link_to_the_input(folder, model):
    song = write_test_audio(folder / "song.m4a", seconds=1.0).path
    os.link(song, folder / "song_video.mp4")  # the same bytes under a name that looks like an output
    return (["animate", song, "-o", folder / "song_video.mp4", "--overwrite", "-m", model],
            f"song_video.mp4: it is the input {song}")


def output_is_a_symlink_loop(folder, model):
    (folder / "loop.mp4").symlink_to("loop.mp4")
    return ["soundtrack", clip(folder), "-o", folder / "loop.mp4", "-m", model], "loop.mp4: it (or a folder on its "


def output_folder_is_a_symlink_loop(folder, model):
    (folder / "out").symlink_to("out")
    return ["generate", "-o", folder / "out" / "clips", "-m", model], "is a symbolic link loop"


def batch_file_with_a_duplicated_key(folder, model):
    (folder / "jobs.yaml").write_text(f"defaults:\n  model: {model}\n  steps: 2\n  steps: 20\n"
                                      "jobs:\n  - kind: generate\n")
    return ["batch", folder / "jobs.yaml"], "jobs.yaml:4: key 'steps' is given twice (lines 3 and 4)"


def config_with_a_duplicated_key(folder, model):
    (folder / "recipe.yaml").write_text("lr: 0.001\nsteps: 10\nlr: 0.1\n")
    return (["finetune", folder, "--config", folder / "recipe.yaml", "-o", folder / "run"],
            "recipe.yaml:3: key 'lr' is given twice (lines 1 and 3)")


def raw_pickle_checkpoint(folder, model):
    """A plain-pickle .pt (protocol 4, not torch.save's default): torch warns about its pickle protocol before
    refusing it; the user sees one line."""
    (folder / "weights.pt").write_bytes(pickle.dumps({"weights": 1}, protocol=4))
    return (["models", "import", folder / "weights.pt", "--name", "mine", "--arch", "mm-unet"],
            "weights.pt: damaged, or not a PyTorch checkpoint (a pickle, but not one torch.save wrote)")


def model_cut_short(folder, model):
    """A model file whose copy stopped half way."""
    whole = Path(model).read_bytes()
    (folder / "cut.safetensors").write_bytes(whole[: len(whole) // 2])
    return (["generate", "-o", folder / "clips", "-m", folder / "cut.safetensors", *FAST],
            "cut.safetensors: damaged, or not a safetensors file")


def model_header_with_a_wrong_shape(folder, model):
    liar = _with_header(model, folder / "liar.safetensors", shape=lambda s: [s[0] // 2, *s[1:]])
    return ["soundtrack", clip(folder), "-m", liar, *FAST], "liar.safetensors: damaged, or not a safetensors file"


def model_header_with_a_wrong_length(folder, model):
    liar = _with_header(model, folder / "liar.safetensors", data_offsets=lambda o: [o[0], o[1] - 4])
    return (["finetune", folder, "--from", liar, "-o", folder / "run"],
            "liar.safetensors: damaged, or not a safetensors file")


def model_header_with_a_wrong_offset(folder, model):
    liar = _with_header(model, folder / "liar.safetensors", data_offsets=lambda o: [o[0] - 4, o[1] - 4])
    return (["models", "import", liar, "--name", "mine"], "liar.safetensors: damaged, or not a safetensors file")


def model_cut_short_for_import(folder, model):
    whole = Path(model).read_bytes()
    (folder / "cut.safetensors").write_bytes(whole[: len(whole) // 2])
    return ["models", "import", folder / "cut.safetensors", "--name", "mine"], "cut.safetensors: damaged"


def model_with_a_nan_weight(folder, model):
    """One weight flipped to NaN (a bad disk, a bad copy): sampling it would give a NaN video minutes later."""
    bad = _with_one_value(model, folder / "nan.safetensors", float("nan"))
    return (["generate", "-o", folder / "clips", "-m", bad, *FAST],
            "nan.safetensors: damaged: its weights hold NaN or Inf values")


def model_with_an_inf_weight_for_import(folder, model):
    bad = _with_one_value(model, folder / "inf.safetensors", float("inf"))
    return ["models", "import", bad, "--name", "mine"], "inf.safetensors: damaged: its weights hold NaN or Inf"


def _with_config(model: Path, target: Path, text: str | None = None, **changes) -> Path:
    """A copy of `model` whose metadata config has `changes` (or is `text`); the weights stay as they are."""
    tensors = safetensors.torch.load_file(str(model))
    with safetensors.safe_open(str(model), framework="pt") as f:
        metadata = f.metadata()
    metadata["config"] = text or json.dumps({**json.loads(metadata["config"]), **changes})
    safetensors.torch.save_file(tensors, str(target), metadata=metadata)
    return target


def model_whose_config_has_ten_million_res_blocks(folder, model):
    """Each architecture field is bounded where the config is read: this one built layers until memory ran out."""
    bad = _with_config(model, folder / "deep.safetensors", num_res_blocks=10**7)
    return (["generate", "-o", folder / "clips", "-m", bad, *FAST],
            "deep.safetensors: metadata config: num_res_blocks must be between 1 and 16, got 10000000")


def model_whose_heads_do_not_divide_its_channels_for_import(folder, model):
    """num_heads 1,000,000 was imported, then failed as a RuntimeError once sampling had begun."""
    bad = _with_config(model, folder / "heads.safetensors", num_heads=10**6)
    return (["models", "import", bad, "--name", "mine"],
            "heads.safetensors: metadata config: num_heads must divide the channels of every attention layer (64), "
            "got 1000000")


def model_whose_dropout_is_nan(folder, model):
    bad = _with_config(model, folder / "nan.safetensors", dropout=float("nan"))
    return (["generate", "-o", folder / "clips", "-m", bad, *FAST],
            "nan.safetensors: metadata config: dropout must be between 0 and 1, got nan")


def model_whose_config_holds_a_number_too_long(folder, model):
    bad = _with_config(model, folder / "long.safetensors", text='{"num_heads": ' + "9" * 5000 + "}")
    return (["generate", "-o", folder / "clips", "-m", bad, *FAST],
            "long.safetensors: damaged weights file: its metadata 'config': a number too long")


def batch_file_with_a_seed_too_long(folder, model):
    (folder / "jobs.yaml").write_text(f"jobs:\n  - kind: generate\n    seed: {'1' * 5000}\n")
    return ["batch", folder / "jobs.yaml"], "jobs.yaml:3: invalid YAML: a number too long"


def _with_header(model: Path, target: Path, **changes: Callable[[list], list]) -> Path:
    """A copy of `model` whose header says something else about its last tensor (its shape or where its bytes
    are); the data stays as it is."""
    data = Path(model).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])
    header[last].update({key: change(header[last][key]) for key, change in changes.items()})
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= length  # every change above keeps the header as short
    target.write_bytes(data[:8] + text.ljust(length) + data[8 + length :])
    return target


def _with_one_value(model: Path, target: Path, value: float) -> Path:
    """A copy of `model` with one value of its middle float tensor replaced by `value`."""
    tensors = safetensors.torch.load_file(str(model))
    with safetensors.safe_open(str(model), framework="pt") as f:
        metadata = f.metadata()
    floats = sorted(k for k, t in tensors.items() if t.is_floating_point())
    tensors[floats[len(floats) // 2]].view(-1)[0] = value
    safetensors.torch.save_file(tensors, str(target), metadata=metadata)
    return target


def _alias_bomb(levels: int = 9) -> str:
    """"Billion laughs": each level a list of nine aliases of the one before — 9**9 values once expanded."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9)}]" for k in range(1, levels)]
    return "\n".join(lines) + "\n"


def batch_file_alias_bomb(folder, model):
    (folder / "jobs.yaml").write_text(_alias_bomb() + "jobs:\n  - kind: generate\n    seed: *l8\n")
    return ["batch", folder / "jobs.yaml"], "values once its aliases (*name) are expanded"


def config_alias_bomb(folder, model):
    (folder / "recipe.yaml").write_text(_alias_bomb() + "loss_weights: *l8\n")
    return ["finetune", folder, "--config", folder / "recipe.yaml", "-o", folder / "run"], "values once its aliases"


def a_device_as_the_video(folder, model):
    return ["soundtrack", "/dev/zero", "-m", model, "-o", folder / "out.mp4"], "/dev/zero: it is not a regular file"


def batch_file_that_never_ends(folder, model):
    """/dev/zero has no size to check: it is refused unread (it filled the machine's memory before)."""
    return ["batch", "/dev/zero", "--dry-run"], "/dev/zero: it is not a regular file"


def config_that_never_ends(folder, model):
    return ["finetune", folder, "--config", "/dev/zero", "-o", folder / "run"], "/dev/zero: it is not a regular file"


def batch_output_folder_is_a_file(folder, model):
    (folder / "jobs.yaml").write_text(f"defaults: {{model: {model}, steps: 2}}\njobs:\n  - kind: generate\n")
    taken = clip(folder, "taken.mp4")
    return ["batch", folder / "jobs.yaml", "-o", taken], "taken.mp4: it is a file, not a folder"


def finetune_run_folder_is_a_file(folder, model):
    taken = clip(folder, "taken.mp4")
    return ["finetune", folder, "-o", taken / "run"], "taken.mp4 is a file, not a folder"


def clip_cache_folder_is_a_file(folder, model):
    taken = clip(folder, "taken.mp4")
    return ["finetune", folder, "--cache-dir", taken, "-o", folder / "run"], "taken.mp4: it is a file, not a folder"


def finetune_run_folder_cannot_be_written(folder, model):
    """Said before the clips are decoded, not as an OS error (exit 1) when the run writes its config."""
    clip(folder)
    locked = _unwritable_folder(folder)
    return ["finetune", folder, "-o", locked / "run"], f"cannot write into {locked / 'run'} (it would be created in"


def clip_cache_folder_cannot_be_created(folder, model):
    clip(folder)
    locked = _unwritable_folder(folder)
    return (["finetune", folder, "--cache-dir", locked / "clips", "-o", folder / "run"],
            f"cannot write into {locked / 'clips'} (it would be created in")


def batch_output_folder_cannot_be_written(folder, model):
    """No other batch holds it: the lock file that keeps one out cannot be made, and the line says so."""
    (folder / "jobs.yaml").write_text(f"defaults: {{model: {model}, steps: 2}}\njobs:\n  - kind: generate\n")
    locked = _folder_that_takes_no_files(folder)
    return ["batch", folder / "jobs.yaml", "-o", locked], f"cannot write into {locked}: "


def a_recipe_for_a_model_no_machine_could_build(folder, model):
    """A typo'd width asked torch for 40 PB (exit 1, an allocator error); a medium one would swap for minutes."""
    (folder / "recipe.yaml").write_text("model: {arch: mm-unet, config: {model_channels: 100000000}}\n")
    return (["finetune", folder, "--scratch", "--config", folder / "recipe.yaml", "-o", folder / "run"],
            "model_channels × the largest channel_mult must be at most 4096")


def a_recipe_whose_heads_do_not_fit_its_widths(folder, model):
    (folder / "recipe.yaml").write_text("model: {arch: mm-unet, config: {model_channels: 96, num_head_channels: 64}}\n")
    return (["finetune", folder, "--scratch", "--config", folder / "recipe.yaml", "-o", folder / "run"],
            "num_head_channels must divide the channels of every attention layer (192, 288, 384), got 64")


def seeds_past_the_last_one(folder, model):
    """Clip k takes seed + k: the last clip's seed must still be one --seed takes, to make it again."""
    return (["generate", "-m", model, "--seed", 2**32 - 1, "-n", 2, "-o", folder / "out", *FAST],
            f"seed + num - 1 must be at most {2**32 - 1}, got {2**32} (split it: seed {2**32 - 1} with num 1, and "
            f"seed 0 with num 1, make the clips older versions made, whose seeds wrapped to 0; or lower the seed to "
            f"at most {2**32 - 2})")


def seed_past_32_bits(folder, model):
    """torch's generator keeps a seed's low 32 bits: seed 2^32 + 7 made seed 7's clip, which the refusal names."""
    return (["generate", "-m", model, "--seed", 2**32 + 7, "-o", folder / "out", *FAST],
            "--seed: must be between 0 and 4294967295, got 4294967303 (seed 7 makes what it made before: "
            "the random generator keeps only a seed's low 32 bits)")


def output_name_too_long(folder, model):
    """One byte over the usual 255-byte limit: refused before any work, not after all of the sampling."""
    return (["soundtrack", clip(folder), "-m", model, "-o", folder / f"{'a' * 252}.mp4", *FAST],
            "its name is 256 bytes, longer than the 255 the filesystem allows")


def default_output_name_too_long(folder, model):
    """A legal input name whose INPUT_soundtrack.mp4 is not."""
    return (["soundtrack", clip(folder, f"{'b' * 245}.mp4"), "-m", model, *FAST],
            "_soundtrack.mp4: its name is 260 bytes")


def sound_retake_past_the_end_of_the_picture(folder, model):
    """The sound outlasts the picture: a sound retake is conditioned on the picture all through its range."""
    longer_sound = clip(folder, audio_seconds=1.5)
    return (["retake", longer_sound, "--range", "1.1:1.4", "-m", model, *FAST],
            "clip.mp4's picture lasts only 1.000 s, and the sound is remade to match it")


def picture_retake_past_the_end_of_the_sound(folder, model):
    shorter_sound = clip(folder, audio_seconds=0.5)
    return (["retake", shorter_sound, "--video", "--range", "0.6:0.8", "-m", model, *FAST],
            "clip.mp4's sound lasts only 0.500 s, and the picture is remade to match it")


def retake_with_both_video_and_audio(folder, model):
    """--video and --audio together: refused, not the last one silently winning."""
    return (["retake", clip(folder), "--video", "--audio", "--range", "0.2:0.4", "-m", model, *FAST],
            "--video: a retake remakes the picture (video) or the sound (audio), not both")


def _unwritable_folder(folder: Path) -> Path:
    """A folder no one may create files in: a read-only one we make, or — when we are root, whom permission
    bits do not stop — sysfs, which refuses new files to everyone."""
    if os.geteuid() != 0:
        locked = folder / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return locked
    if Path("/sys/kernel").is_dir():
        return Path("/sys")
    pytest.skip("running as root without sysfs: no folder here is unwritable")


def _folder_that_takes_no_files(folder: Path) -> Path:
    """/proc/1: it refuses new files to everyone, root too, with "no such file" — which filelock takes for a lock
    file its holder just removed, and so tries again, forever. Elsewhere, a folder no one may create files in."""
    return Path("/proc/1") if Path("/proc/1").is_dir() else _unwritable_folder(folder)


CASES: list[Case] = [
    missing_file, a_directory, empty_file, random_bytes_named_mp4, audio_only_for_soundtrack,
    a_still_image_for_soundtrack, video_only_for_animate, video_with_no_frames, truncated_camera_mp4,
    truncated_faststart_mp4,
    unsupported_codec, unwritable_output_folder, output_folder_is_a_file, output_folder_below_a_file,
    output_folder_below_a_locked_one, retake_with_both_video_and_audio,
    output_without_a_movie_suffix, existing_output, zero_steps, too_many_steps, zero_batch_size, unknown_device, missing_cuda,
    mix_out_of_range, mix_without_own_audio, unknown_model, not_a_model_file, output_is_the_input,
    output_is_a_symlink_to_the_input, output_is_a_hard_link_to_the_input, output_is_a_symlink_loop,
    output_folder_is_a_symlink_loop, batch_file_with_a_duplicated_key, config_with_a_duplicated_key,
    batch_file_alias_bomb, config_alias_bomb, raw_pickle_checkpoint, a_device_as_the_video, batch_file_that_never_ends,
    config_that_never_ends, batch_output_folder_is_a_file, finetune_run_folder_is_a_file, seeds_past_the_last_one, seed_past_32_bits,
    model_cut_short, model_header_with_a_wrong_shape, model_header_with_a_wrong_length,
    model_header_with_a_wrong_offset, model_cut_short_for_import, model_with_a_nan_weight,
    model_with_an_inf_weight_for_import, clip_cache_folder_is_a_file, a_recipe_for_a_model_no_machine_could_build,
    a_recipe_whose_heads_do_not_fit_its_widths, output_name_too_long, default_output_name_too_long,
    sound_retake_past_the_end_of_the_picture, picture_retake_past_the_end_of_the_sound,
    finetune_run_folder_cannot_be_written, clip_cache_folder_cannot_be_created, batch_output_folder_cannot_be_written,
    model_whose_config_has_ten_million_res_blocks, model_whose_heads_do_not_divide_its_channels_for_import,
    model_whose_dropout_is_nan, model_whose_config_holds_a_number_too_long, batch_file_with_a_seed_too_long,
]


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under `folder`, hidden ones included."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing_behind(case: Case, tiny, tmp_path, monkeypatch, capfd):
    folder = tmp_path / "work"
    folder.mkdir()
    scratch = tmp_path / "tmp"  # the run's temporary-files folder ($TMPDIR): must stay empty too
    scratch.mkdir()
    args, says = case(folder, tiny)
    before = tree(folder)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # what $TMPDIR is to a new process (read once per process)
    capfd.readouterr()

    done = run_here(*args, env=mmgen_env(tmp_path, TMPDIR=str(scratch)))
    leaked = capfd.readouterr()  # what a library wrote to the process's own stdout and stderr (FFmpeg's log)

    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("mmgen: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert re.search("(?<!-)" + re.escape(says), done.stderr), done.stderr  # a flag is said once: not as `----flag`
    assert "Traceback" not in done.stderr + done.stdout and done.stdout == ""
    assert leaked.out + leaked.err == "", leaked
    assert tree(folder) == before  # no output, no temporary file or new folder; the user's files untouched
    assert list(scratch.iterdir()) == []


def test_a_clip_cache_folder_that_takes_no_files_is_refused_not_waited_on(tmp_path):
    """The folder exists, so nothing fails until the lock file of the first clip: filelock took that for a lock
    another process holds, and finetune waited for it forever."""
    folder = tmp_path / "work"
    folder.mkdir()
    clip(folder)
    locked = _folder_that_takes_no_files(folder)

    done = run_mmgen("finetune", folder, "--cache-dir", locked, "-o", folder / "run", "--steps", "1",
                     env=mmgen_env(tmp_path), timeout=120)

    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"mmgen: error: cannot write into {locked}: ") and done.stderr.count("\n") == 1
    assert not (folder / "run").exists()


def test_library_warnings_reach_the_terminal_only_with_debug(tmp_path):
    (tmp_path / "weights.pt").write_bytes(pickle.dumps({"weights": 1}, protocol=4))
    args = ["models", "import", tmp_path / "weights.pt", "--name", "mine", "--arch", "mm-unet"]

    quiet = run_mmgen(*args, env=mmgen_env(tmp_path))
    debug = run_mmgen("--debug", *args, env=mmgen_env(tmp_path))

    assert quiet.returncode == debug.returncode == 2
    assert "UserWarning" not in quiet.stderr and quiet.stderr.count("\n") == 1, quiet.stderr
    assert "UserWarning: Detected pickle protocol 4" in debug.stderr


def test_a_path_too_long_for_any_filesystem_is_one_line_exit_2_wherever_it_is_given(tmp_path, monkeypatch, capsys):
    """300-byte names given as a path: the OS's "File name too long" was an unexpected error (exit 1) for every
    one of them. -m and --adapter say which they were before anything is read; a path anywhere else is named."""
    from mmgen.cli import run

    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    long = "x" * 300
    cases = {
        ("generate", "--adapter", f"./{long}"): "--adapter: adapter path too long (a name in it is 300 bytes, at most 255)",
        ("generate", "--adapter", f"{long}.safetensors:0.5"): "adapter path too long (a name in it is 312 bytes",
        ("generate", "-m", f"./{long}"): "--model: model path too long (a name in it is 300 bytes, at most 255)",
        ("generate", "-m", f"{tmp_path}/{long}.safetensors"): "model path too long (a name in it is 312 bytes",
        ("finetune", str(tmp_path), "--config", f"./{long}.yaml"): f"{long}.yaml: file name too long",
        ("batch", f"{long}.yaml"): f"{long}.yaml: file name too long",
        ("soundtrack", f"{long}.mp4"): f"{long}.mp4: file name too long",
        # every name in it fits, the whole is over PATH_MAX: not "file name too long … 255 bytes per name"
        ("soundtrack", "/".join(["y" * 200] * 21) + ".mp4"): "path too long (4224 bytes; the system takes at most 4095",
    }
    for args, says in cases.items():
        assert run(list(args)) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("mmgen: error: ") and err.count("\n") == 1 and says in err, (args, err)
    assert not [p for p in tmp_path.rglob("*") if long in p.name]  # nothing made under those names


def test_a_folder_with_no_name_part_as_the_input_is_a_directory_not_an_internal_error(tmp_path, monkeypatch, capsys):
    """`.` and `/` have no name to make INPUT_soundtrack.mp4 from: that was a ValueError, exit 1."""
    from mmgen.cli import run

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    for args in [("soundtrack", ".", "-o", "out/"), ("soundtrack", "/"), ("animate", "."),
                 ("retake", "/", "--range", "0:1")]:
        assert run(list(args)) == 2, args
        err = capsys.readouterr().err
        assert err == f"mmgen: error: cannot read {args[1]}: it is a directory\n", (args, err)


def test_an_environment_variable_with_a_value_that_means_nothing_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    """`MMGEN_OFFLINE=maybe` and `MMGEN_DEBUG=banana` were taken for on, `MMGEN_MAX_MEMORY=banana` was found only
    by the upsampler after all of the sampling, and MMGEN_PRESETS naming a file was passed over: each is refused
    before any command starts, naming the variable and what it takes."""
    from mmgen.cli import run

    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    a_file = tmp_path / "presets.yaml"
    a_file.write_text("")
    cases = {
        ("MMGEN_OFFLINE", "maybe"): "MMGEN_OFFLINE='maybe': takes 1 or 0 (or true/false, yes/no, on/off)",
        ("MMGEN_DEBUG", "banana"): "MMGEN_DEBUG='banana': takes 1 or 0 (or true/false, yes/no, on/off)",
        ("MMGEN_CPU_BF16", "2"): "MMGEN_CPU_BF16='2': takes 1 or 0 (or true/false, yes/no, on/off)",
        ("MMGEN_MAX_MEMORY", "banana"): "MMGEN_MAX_MEMORY='banana': takes a size, e.g. 6G or 512M",
        ("MMGEN_PRESETS", str(a_file)): f"MMGEN_PRESETS={a_file}: {a_file} is a file; it takes a folder",
    }
    for (name, value), says in cases.items():
        with monkeypatch.context() as env:
            env.setenv(name, value)
            assert run(["models", "list", "--json"]) == 2, name
            out, err = capsys.readouterr()
            assert out == "" and err.startswith("mmgen: error: ") and err.count("\n") == 1 and says in err, (name, err)
            assert run(["generate", "--help"]) == 0, name  # help still answers: it runs nothing the variable sets
            assert "--seed" in capsys.readouterr().out

    # what they take: 1/0 and their words; a presets folder not made yet holds no entries; --debug overrides
    for name, value in [("MMGEN_OFFLINE", "off"), ("MMGEN_DEBUG", "0"), ("MMGEN_MAX_MEMORY", "512M"),
                        ("MMGEN_PRESETS", str(tmp_path / "not-yet"))]:
        with monkeypatch.context() as env:
            env.setenv(name, value)
            assert run(["models", "list", "--json"]) == 0, name
    monkeypatch.setenv("MMGEN_DEBUG", "banana")
    assert run(["--debug", "models", "list", "--json"]) == 0
    capsys.readouterr()


def test_a_command_run_in_a_removed_folder_says_so_before_torch_cannot_load(tmp_path):
    """`cd gone && rm -rf ../gone && mmgen doctor`: torch cannot load from a current folder that no longer exists,
    and the command printed only oneMKL's `FATAL ERROR: Cannot load …/libtorch_cpu.so.` and exited 2. Every command
    (doctor too) is refused in one line, exit 1, before it loads torch; --version (and --help) still answer (a real
    process: the folder the shell left it in is the point)."""
    import subprocess

    from mmgen_cli import mmgen_command

    gone = tmp_path / "gone"
    for args, code in [(("generate", "--steps", "1", "-o", tmp_path / "out"), 1), (("--version",), 0)]:
        gone.mkdir()
        done = subprocess.run(["sh", "-c", 'cd "$0" && rmdir "$0" && exec "$@"', gone, *mmgen_command(*args)],
                              env=mmgen_env(tmp_path), capture_output=True, text=True, timeout=300)
        assert done.returncode == code, (args, done.stderr)
        if code:
            assert done.stderr == ("mmgen: error: the current folder no longer exists (cd to an existing folder)\n"), args
            assert done.stdout == ""
    assert not (tmp_path / "out").exists()


def _two_frames_at_a_million_fps(folder: Path) -> Path:
    with av.open(str(folder / "flash.mp4"), "w") as movie:
        stream = movie.add_stream("libx264", rate=1_000_000)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for frame in [av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")] * 2:
            movie.mux(stream.encode(frame))
        movie.mux(stream.encode())
    return folder / "flash.mp4"


def _pcm_wav(path: Path, sample_rate: int, samples: int) -> Path:
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(sample_rate)
        sound.writeframes(b"\x00\x10" * samples)
    return path


@pytest.mark.parametrize("command, make, says", [
    ("soundtrack", _two_frames_at_a_million_fps,
     "flash.mp4: its video lasts 0.002 ms, too short to hold any sound (mmgen needs 10 ms or more)"),
    ("animate", lambda folder: _pcm_wav(folder / "blip.wav", 192_000, 1),
     "blip.wav: its audio lasts 0.00521 ms, too short to hold any sound (mmgen needs 10 ms or more)"),
    ("animate", lambda folder: _pcm_wav(folder / "slow.wav", 1, 20),
     "slow.wav: its audio is sampled at 1 Hz, out of range (mmgen reads sound sampled at 4,000 Hz or more)"),
], ids=["a clip of 2 microseconds", "one sample at 192 kHz", "20 samples at 1 Hz"])
def test_an_input_too_short_for_any_sound_or_at_an_absurd_rate_is_said_so_before_any_work(command, make, says, tiny,
                                                                                          tmp_path):
    """Such an input was a ValueError (exit 1) after all the sampling — `audio must be (1, L) with L > 0` — or
    said to have an "empty" stream: what is wrong with it is its length, or its sample rate."""
    folder = tmp_path / "work"
    folder.mkdir()
    source = make(folder)
    before = tree(folder)

    done = run_here(command, source, "-m", tiny, *FAST, env=mmgen_env(tmp_path))

    assert (done.returncode, done.stderr) == (2, f"mmgen: error: cannot read {folder / says}\n")
    assert tree(folder) == before


@pytest.mark.parametrize("make, says", [
    (lambda folder: write_test_video(folder / "slow.mkv", seconds=0.5, size=(16, 16), sample_rate=2_000,
                                     audio_codec="pcm_s16le").path,
     "slow.mkv: its audio is sampled at 2,000 Hz, out of range (mmgen reads sound sampled at 4,000 Hz or more)"),
    (lambda folder: write_test_video(folder / "blip.mkv", seconds=0.5, size=(16, 16), audio_seconds=0.005,
                                     audio_codec="pcm_s16le").path,
     "blip.mkv: its audio lasts 5 ms, too short to hold any sound (mmgen needs 10 ms or more)"),
], ids=["a sound at 2 kHz", "a sound of 5 ms"])
def test_retake_holds_its_input_to_the_limits_soundtrack_and_animate_do(make, says, tiny, tmp_path):
    """retake took a sound sampled below 4 kHz, or one too short to hold any, and went through all the sampling
    (exit 0) where soundtrack and animate refuse it: it is their one line, exit 2, before any work."""
    folder = tmp_path / "work"
    folder.mkdir()
    source = make(folder)
    before = tree(folder)

    done = run_here("retake", source, "--range", "0:0.004", "-m", tiny, *FAST, env=mmgen_env(tmp_path))

    assert (done.returncode, done.stderr) == (2, f"mmgen: error: cannot read {folder / says}\n")
    assert tree(folder) == before


@pytest.mark.parametrize("command", ["soundtrack", "animate", "retake"])
def test_a_dash_is_a_file_name_and_the_error_says_standard_input_is_not_read(command, tmp_path, monkeypatch):
    """`mmgen soundtrack - < clip.mp4` reads no standard input (an input is seeked and read more than once): the
    error says so, not only `no such file`, and --help says the input is a file's path."""
    monkeypatch.chdir(tmp_path)
    done = run_here(command, "-", env=mmgen_env(tmp_path))
    assert (done.returncode, done.stderr) == (2, "mmgen: error: cannot read -: no such file (mmgen reads inputs from "
                                                 "files, not from standard input: give the file's path)\n")
    helped = run_here(command, "--help", env=mmgen_env(tmp_path, COLUMNS="200"))
    assert "a path; `-` is not standard input." in helped.stdout


@pytest.mark.parametrize("command", [["soundtrack"], ["animate"], ["retake", "--range", "0:1"]])
def test_a_file_named_like_an_option_gets_a_hint_how_to_give_it(tmp_path, monkeypatch, command):
    """`mmgen soundtrack -dash.mp4` said only `No such option: -d`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-dash.mp4").write_bytes(b"")
    done = run_here(*command, "-dash.mp4", env=mmgen_env(tmp_path))
    assert (done.returncode, done.stderr) == (2, "mmgen: error: No such option: -d (to use a file named -dash.mp4, "
                                                 "write ./-dash.mp4, or put -- before it and the options before "
                                                 "the --)\n")
    assert run_here(*command, "-zzz.mp4", env=mmgen_env(tmp_path)).stderr == "mmgen: error: No such option: -z\n"


def test_an_option_before_its_command_says_options_go_after_the_command(tmp_path):
    """`mmgen --adapter style generate` said only `No such option: --adapter`."""
    said = {args: run_here(*args.split(), env=mmgen_env(tmp_path)).stderr for args in (
        "--adapter style generate", "--adapter=style generate", "models --json list", "--adapter x", "--nothing generate")}
    assert said["--adapter style generate"] == ("mmgen: error: No such option: --adapter (options go after the "
                                                "command: mmgen generate --adapter …)\n")
    assert said["--adapter=style generate"] == said["--adapter style generate"]
    assert said["models --json list"].endswith("(options go after the command: mmgen models list --json …)\n")
    assert "--adapter is an option of mmgen animate, mmgen generate, mmgen models info" in said["--adapter x"]
    assert said["--nothing generate"] == "mmgen: error: No such option: --nothing\n"


def test_an_unknown_option_is_suggested_only_options_close_to_it(tmp_path):
    """`generate --guidance gradient` said `(Possible options: --loudness)`, a suggestion that leads nowhere (click's
    cut-off); a typo still gets the option it most likely meant, and that one alone (`--seeds`: not `--steps`)."""
    said = {args: run_here("generate", *args.split(), env=mmgen_env(tmp_path)).stderr for args in (
        "--guidance gradient", "--seeds 3", "--modle demo", "--json-out")}
    assert said == {"--guidance gradient": "mmgen: error: No such option: --guidance (an option of animate, retake, "
                                           "soundtrack)\n",
                    "--seeds 3": "mmgen: error: No such option: --seeds (Possible options: --seed)\n",
                    "--modle demo": "mmgen: error: No such option: --modle (Possible options: --model)\n",
                    "--json-out": "mmgen: error: No such option: --json-out (Possible options: --json)\n"}


def test_another_command_s_output_option_or_a_typo_of_it_is_told_this_command_s_own(tmp_path):
    """`generate --output x` named the commands that take --output, and `soundtrack --out-dir` those that take that,
    though each has its own -o; `generate --ouput`/`--outpt` and `batch --ouput` said nothing (click had suggested
    --out-dir before its cut-off was narrowed). A typo of a command's own option gets it, `--guidance` still not
    `--loudness`."""
    said = {args: run_here(*args.split(), env=mmgen_env(tmp_path)).stderr for args in (
        "generate --output x", "generate --ouput x", "batch j.yaml --ouput y", "soundtrack x.mp4 --out-dir y",
        "generate --outpt x", "generate --stpes 3", "generate --guidance 3")}
    assert said == {
        "generate --output x": "mmgen: error: No such option: --output (did you mean -o/--out-dir?)\n",
        "generate --ouput x": "mmgen: error: No such option: --ouput (did you mean -o/--out-dir?)\n",
        "batch j.yaml --ouput y": "mmgen: error: No such option: --ouput (did you mean -o/--out-dir?)\n",
        "soundtrack x.mp4 --out-dir y": "mmgen: error: No such option: --out-dir (did you mean -o/--output?)\n",
        "generate --outpt x": "mmgen: error: No such option: --outpt (did you mean -o/--out-dir?)\n",
        "generate --stpes 3": "mmgen: error: No such option: --stpes (Possible options: --steps)\n",
        "generate --guidance 3": "mmgen: error: No such option: --guidance (an option of animate, retake, soundtrack)\n"}


def test_an_unknown_option_that_other_commands_take_names_them(tmp_path):
    """`generate --guidance 3` said only `No such option: --guidance`; an option some other command takes names
    those commands, for every command (a group's subcommand too); one no command takes is said alone."""
    said = {args: run_here(*args.split(), env=mmgen_env(tmp_path)).stderr for args in (
        "generate --guidance 3", "animate --mix 0.3", "models list --name x", "generate --nothing")}
    assert said == {
        "generate --guidance 3": "mmgen: error: No such option: --guidance (an option of animate, retake, soundtrack)\n",
        "animate --mix 0.3": "mmgen: error: No such option: --mix (an option of soundtrack)\n",
        "models list --name x": "mmgen: error: No such option: --name (an option of models import)\n",
        "generate --nothing": "mmgen: error: No such option: --nothing\n"}


def test_an_unknown_command_says_where_a_command_of_that_name_or_adapters_are(tmp_path):
    """`mmgen list` and `mmgen adapters` said only `No such command 'adapters'.`; typos keep typer's own hint."""
    said = {args: run_here(*args.split(), env=mmgen_env(tmp_path)) for args in ("list", "adapters", "models adapters",
                                                                              "models lst")}
    assert {args: done.returncode for args, done in said.items()} == dict.fromkeys(said, 2)
    assert said["list"].stderr == "mmgen: error: No such command 'list'. Did you mean `mmgen models list`?\n"
    for args in ("adapters", "models adapters"):
        assert said[args].stderr.startswith("mmgen: error: No such command 'adapters'. LoRA adapters are kept with "
                                            "the models: `mmgen models list` lists them, `mmgen models import FILE` "
                                            "registers one"), said[args].stderr
    assert said["models lst"].stderr == "mmgen: error: No such command 'lst'. Did you mean 'list'?\n"


def test_an_output_that_is_a_device_or_a_pipe_is_refused_as_not_a_regular_file(tiny, tmp_path):
    """`-o /dev/stdout` was refused for its suffix, with the hint `(e.g. -o /dev/stdout.mp4)`: a file in /dev. An
    output is written whole and moved into place, so it is a regular file's path, never a device or a pipe."""
    source = clip(tmp_path)
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    kinds = (("/dev/null", "a device"), ("/dev/stdout", "the name of an open file descriptor"), (fifo, "a pipe"))
    for output, kind in kinds:  # /dev/stdout whatever stdout is: pytest's is a regular file
        done = run_here("soundtrack", source, "-m", tiny, *FAST, "-o", output, env=mmgen_env(tmp_path))
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"mmgen: error: cannot write {output}: it is {kind};"), done.stderr
        assert "an output is a regular file" in done.stderr and ".mp4)" not in done.stderr


def test_an_output_folder_that_is_a_device_or_a_pipe_is_named_what_it_is(tmp_path):
    """`generate -o /dev/null` said "/dev/null is a file, not a directory": a folder's place taken by a device, a
    pipe or a descriptor's name is named as the check of an output file names it — as is a cache folder's."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    kinds = (("/dev/null", "a device"), ("/dev/stdout", "the name of an open file descriptor"), (fifo, "a pipe"))
    for output, kind in kinds:
        done = run_here("generate", "-o", output, env=mmgen_env(tmp_path))
        assert (done.returncode, done.stderr) == (
            2, f"mmgen: error: cannot write {output}/clip_0000.mp4: {output} is {kind}, not a directory\n")
    done = run_here("finetune", tmp_path, "-o", "/dev/null/run", env=mmgen_env(tmp_path))
    assert (done.returncode, done.stderr) == (2, "mmgen: error: cannot write into /dev/null/run: /dev/null is a device, "
                                                 "not a folder\n")
    done = run_here("models", "list", env=mmgen_env(tmp_path, MMGEN_CACHE="/dev/null"))
    assert (done.returncode, done.stderr) == (2, "mmgen: error: cache folder /dev/null: it is a device, not a folder "
                                                 "(set MMGEN_CACHE to a folder)\n")


def test_an_output_folder_that_is_a_link_to_a_missing_folder_is_said_to_be_one(tmp_path):
    """A missing output folder is created, but not through a symbolic link to nothing: `generate -o lnk` said
    "directory lnk does not exist", though lnk is there and --help says the folder is created if missing."""
    (tmp_path / "lnk").symlink_to(tmp_path / "nowhere" / "deep")
    for args in (("generate", "-o", tmp_path / "lnk"), ("generate", "-o", tmp_path / "lnk" / "sub"),
                 ("finetune", tmp_path, "-o", tmp_path / "lnk" / "run")):
        done = run_here(*args, env=mmgen_env(tmp_path))
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert f"{tmp_path}/lnk is a symbolic link to {tmp_path}/nowhere/deep, a folder that does not exist (mmgen " \
               "creates a missing folder, but not where a link points" in done.stderr, done.stderr
    assert not (tmp_path / "nowhere").exists()


def test_a_run_folder_inside_a_cache_is_refused(tmp_path):
    """`finetune -o $MMGEN_CACHE/run_in` (or `…/clips/run_in`, among the clip cache's hashed files) was accepted: a
    run folder is refused inside mmgen's cache or the run's clip cache (--cache-dir), also through a link."""
    env, cache, clips = mmgen_env(tmp_path), tmp_path / "cache", tmp_path / "myclips"
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(cache)
    cases = ((cache / "run_in", [], cache), (cache / "clips" / "run_in", [], cache / "clips"),
             (tmp_path / "link" / "run_in", [], cache), (clips / "run_in", ["--cache-dir", clips], clips))
    for run_dir, options, named in cases:
        done = run_here("finetune", tmp_path / "data", "-o", run_dir, *options, env=env)
        assert (done.returncode, done.stderr) == (2, f"mmgen: error: {run_dir}: the run folder is inside a cache "
                                                     f"({named}) (choose another -o, outside the cache; the cache "
                                                     "holds mmgen's own files)\n"), done.stderr
        assert not run_dir.exists()


def test_a_clip_cache_inside_the_run_folder_is_refused(tmp_path):
    """`finetune -o RUN --cache-dir RUN/clips` (also through a link) was accepted: a new run
    that fails removes its run folder, and the clip cache with it, and the run folder was listed and copied with a
    cache inside. Refused as a run folder inside a cache is, before anything is made."""
    env, run_dir = mmgen_env(tmp_path), tmp_path / "run"
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path)
    for cache in (run_dir / "clips", tmp_path / "link" / "run" / "clips"):
        done = run_here("finetune", tmp_path / "data", "-o", run_dir, "--cache-dir", cache, env=env)
        assert (done.returncode, done.stderr) == (2, f"mmgen: error: {cache}: the clip cache is inside the run folder "
                                                     f"({run_dir}) (choose a --cache-dir outside the run folder (clips "
                                                     "decoded once serve every run))\n"), done.stderr
        assert not run_dir.exists()


def test_the_hint_for_a_relative_link_to_a_missing_folder_names_the_folder_it_points_to(tmp_path, monkeypatch):
    """`sub/lnk -> ../outs` points to ./outs, but the hint said "create ../outs": made from here, the link stayed
    dangling. The hint names the folder the link points to."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "lnk").symlink_to("../outs")
    monkeypatch.chdir(tmp_path)
    done = run_here("generate", "-o", "sub/lnk", env=mmgen_env(tmp_path))
    assert done.returncode == 2 and "sub/lnk is a symbolic link to ../outs, a folder that does not exist (mmgen " \
        "creates a missing folder, but not where a link points: create outs, or write elsewhere)" in done.stderr, \
        done.stderr


def test_an_error_or_a_note_naming_a_file_with_control_characters_is_one_line_without_them(tmp_path, caplog):
    """Linux allows ESC, a newline, any byte in a name: an error line showed them raw (`e^[[2Jx.mp4`: the terminal
    cleared its screen; a newline split the line in two), and a byte that is not UTF-8 as \\udcfe. Every line said
    (mmgen.terminal.say, as the error line is) and every note shows them as the `wrote` lines do: \\x1b, \\n, \\xfe."""
    from mmgen.media.notes import note

    name = tmp_path / os.fsdecode(b"no\x1b[2J\nx\xfe.mp4")
    for args in (("soundtrack", name), ("generate", "-o", name)):
        done = run_here(*args, env=mmgen_env(tmp_path))
        assert done.returncode == 2 and done.stderr.startswith("mmgen: error: "), done.stderr
        assert done.stderr.count("\n") == 1 and "\x1b" not in done.stderr and "\\udc" not in done.stderr, done.stderr
        assert "no\\x1b[2J\\nx\\xfe.mp4" in done.stderr, done.stderr
    with caplog.at_level(logging.WARNING, logger="mmgen.media"):
        note(name, "surround audio mixed to mono", "surround audio mixed to mono")
    assert caplog.messages == [f"{tmp_path}/no\\x1b[2J\\nx\\xfe.mp4: surround audio mixed to mono"]


def test_names_in_ordinary_writing_are_shown_as_typed_but_a_bidi_override_is_escaped(tmp_path):
    """Persian spells with the zero-width non-joiner, emoji families join with U+200D: both are invisible format
    characters that neither split a line nor drive the terminal, and the error line showed them as \\u200c (and
    Japanese's ideographic space, macOS's narrow no-break space in screen recordings' names, as \\u3000). The
    right-to-left override (U+202E) reorders what is shown (`cod.exe` shown as `exe.doc`): still escaped."""
    for typed, shown in (("می\u200cخواهم.mp4", "می\u200cخواهم.mp4"), ("fam👨\u200d👩\u200d👧.mp4", "fam👨\u200d👩\u200d👧.mp4"),
                         ("会議\u3000資料.mp4", "会議\u3000資料.mp4"), ("10.00.00\u202fAM.mov", "10.00.00\u202fAM.mov"),
                         ("a\u202egpj.mp4", "a\\u202egpj.mp4")):
        done = run_here("soundtrack", tmp_path / typed, env=mmgen_env(tmp_path))
        assert done.returncode == 2 and f"{tmp_path}/{shown}: no such file" in done.stderr, done.stderr


def test_a_long_but_real_path_in_an_error_line_is_shown_whole(tmp_path):
    """Lines quoting a value over 500 characters cut it in the middle (…(610 characters)…), so a user could not copy
    the path of the file that was missing: values are cut only past any path the system takes (PATH_MAX)."""
    missing = tmp_path.joinpath(*["d" * 200] * 3, "clip.mp4")
    done = run_here("soundtrack", missing, env=mmgen_env(tmp_path))
    assert done.returncode == 2 and str(missing) in done.stderr and "characters)…" not in done.stderr, done.stderr


def test_an_unknown_sampling_preset_is_refused_before_torch_loads(tmp_path):
    """`generate --preset turbo` imported torch (3.8 s, 267 MB) before its one line: the preset is read with the
    run's other checks, before any model loads."""
    script = ("import sys; from mmgen.cli import run; "
              f"code = run(['generate', '--preset', 'turbo', '-o', {str(tmp_path / 'out')!r}]); "
              "print(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], env=mmgen_env(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.splitlines()[-1] == "2 False", done.stderr
    assert done.stderr == "mmgen: error: unknown sampling preset 'turbo' (known: balanced, fast, paper)\n"
    assert not (tmp_path / "out").exists()


def test_a_missing_model_file_is_named_as_given(tmp_path, monkeypatch):
    """`generate -m ./nosuch.safetensors` said `nosuch.safetensors: no such model file`: the path as Path shows it."""
    monkeypatch.chdir(tmp_path)
    done = run_here("generate", "-m", "./nosuch.safetensors", "-o", "out", env=mmgen_env(tmp_path))
    assert (done.returncode, done.stderr) == (2, "mmgen: error: ./nosuch.safetensors: no such model file\n")
