"""A creator's first run: `mmgen generate` writes playable clips with a sidecar and previews each, `--json`
speaks to scripts, and a clip's seed makes that clip again (the same samples; the mp4 to within the H.264
encoder's own wobble).

The real `mmgen` command runs in a subprocess on a tiny random model (tests/tiny_model.py) with 2 steps; the
runs that make a clip again from its seed, or whose output alone is the point, run in the test's process
(tests/cli_here.py), so a seed is still made again in another process than the one that first used it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from cli_here import run_here
from media_factory import (
    ENCODE_LEVELS,
    audio_stream_seconds,
    decode_audio,
    decode_frames,
    frame_difference,
    stream_kinds,
)
from mmgen_cli import mmgen_env, run_mmgen
from tiny_model import register_tiny_with_upsampler

import mmgen
from mmgen.pipelines import GenerateSettings, generate_files
from mmgen.runtime.device import select_compute

AAC_FRAME = 1024 / 16000  # seconds of one AAC frame at 16 kHz: the tolerance on audio length
CLIP_FILES = ("{}.mp4", "{}.json", "{}_frames.png", "{}_spectrogram.png")


@pytest.fixture(scope="module")
def two_clips(tiny, tmp_path_factory):
    """`mmgen generate -n 2 --seed 7 --json` into out/, the sound as the model made it (the tiny model's
    16 kHz, at its own level): (folder, the finished process)."""
    root = tmp_path_factory.mktemp("generate")
    done = run_mmgen(
        "generate", "-m", tiny, "-n", "2", "--steps", "2", "--seed", "7", "-o", root / "out", "--json",
        "--sample-rate", "model", "--loudness", "off", env=mmgen_env(root),
    )
    assert done.returncode == 0, done.stderr
    return root / "out", done


def sidecar(folder, stem: str) -> dict:
    return json.loads((folder / f"{stem}.json").read_text())


def test_generate_writes_two_playable_clips_with_sidecars_and_previews(two_clips):
    out, _ = two_clips
    stems = ["clip_0000", "clip_0001"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f.format(s) for s in stems for f in CLIP_FILES)
    for stem in stems:
        mp4 = out / f"{stem}.mp4"
        assert stream_kinds(mp4) == ["video", "audio"]
        with av.open(str(mp4)) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
            assert video.average_rate == 10
            assert audio.codec_context.sample_rate == 16000
        assert decode_frames(mp4).shape == (16, 16, 16, 3)  # 16 frames of the tiny model's 16×16
        sound, rate = decode_audio(mp4)
        assert rate == 16000 and sound.shape[0] == 1
        assert sound.shape[1] / rate == pytest.approx(1.6, abs=AAC_FRAME)
        assert audio_stream_seconds(mp4) == pytest.approx(1.6, abs=AAC_FRAME)


def test_each_sidecar_records_how_its_clip_was_made(two_clips, tiny):
    out, _ = two_clips
    model_hash = hashlib.sha256(tiny.read_bytes()).hexdigest()
    for k in (0, 1):
        record = sidecar(out, f"clip_000{k}")
        assert record["seed"] == 7 + k  # clip k of a run uses seed SEED + k
        assert record["model"] == str(tiny) and record["model_sha256"] == model_hash
        assert (record["sampler"], record["steps"], record["guidance"]) == ("dpm++", 2, None)
        assert record["mmgen_version"] == mmgen.__version__
        assert record["device"] == select_compute("cpu", "auto").describe()  # "cpu (bf16)" where it is native
        assert record["wall_time_s"] > 0
        assert (record["frames"], record["fps"], record["sample_rate"]) == (16, 10.0, 16000)
        assert record["mp4"] == str(out / f"clip_000{k}.mp4")


def test_previews_are_a_contact_sheet_and_a_spectrogram(two_clips):
    out, _ = two_clips
    sheet = decode_frames(out / "clip_0000_frames.png")[0]  # (H, W, 3)
    assert sheet.shape[1] >= 8 * 16 and sheet.shape[0] >= 2 * 16  # 16 frames of 16×16, 8 to a row
    spectrogram = decode_frames(out / "clip_0000_spectrogram.png")[0]
    assert spectrogram.shape[0] > 32 and spectrogram.shape[1] > 32
    assert spectrogram.std() > 10  # a picture of the sound, not a blank image


def test_json_prints_one_object_per_clip_on_stdout_and_messages_on_stderr(two_clips):
    out, done = two_clips
    lines = done.stdout.splitlines()
    assert [json.loads(line) for line in lines] == [sidecar(out, "clip_0000"), sidecar(out, "clip_0001")]
    assert "seed 7..8" in done.stderr and "{" not in done.stderr


def test_a_folder_name_that_is_not_utf8_comes_back_exact_from_the_json(tiny, tmp_path):
    """Linux allows any bytes in a name; Python holds the odd ones as lone surrogates. The sidecar and --json write
    one as its escape (\\udcff), in ASCII: the name's bytes come back (os.fsencode), and it is not the name of a file
    literally called `takes-\\xff`, as the text \\xff was."""
    out = tmp_path / os.fsdecode(b"takes-\xff")
    (tmp_path / "takes-\\xff").mkdir()  # the other folder that text \\xff named
    done = run_here("generate", "-m", tiny, "--steps", "2", "--no-previews", "-o", out, "--json",
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    written = (out / "clip_0000.json").read_bytes().decode("ascii")
    for text in (done.stdout, written):
        assert text.isascii() and "takes-\\udcff" in text
        mp4 = json.loads(text)["mp4"]
        assert os.fsencode(mp4) == os.fsencode(tmp_path) + b"/takes-\xff/clip_0000.mp4" and os.path.isfile(mp4)


def test_the_seed_in_a_sidecar_makes_that_clip_again(two_clips, tiny, tmp_path):
    out, _ = two_clips
    folder = tmp_path / "again\n[red]"  # Linux allows a newline (and rich's markup) in a name
    done = run_here("generate", "-m", tiny, "--steps", "2", "--seed", "8", "-o", folder,
                    "--sample-rate", "model", "--loudness", "off", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    again = folder / "clip_0000.mp4"
    assert f"\nwrote {tmp_path}/again\\n[red]/clip_0000.mp4  1.60 s" in done.stderr  # one line, escaped
    assert done.stdout == ""  # without --json: human lines on stderr
    same, other = out / "clip_0001.mp4", out / "clip_0000.mp4"  # seed 8, seed 7
    assert frame_difference(again, same) <= ENCODE_LEVELS  # the same samples, up to the H.264 encoder
    assert np.array_equal(decode_audio(again)[0], decode_audio(same)[0])
    assert frame_difference(again, other) > 10 * ENCODE_LEVELS  # another seed, another clip
    assert not np.allclose(decode_audio(again)[0], decode_audio(other)[0], atol=1e-3)


def test_a_missing_bundled_model_is_one_line_naming_the_file_and_what_to_do(tmp_path):
    """What `-m demo` says while the demo weights are not in the package: a registry entry whose bundled file
    is absent (here a user preset, so the test holds once the demo ships)."""
    env = mmgen_env(tmp_path)
    (tmp_path / "presets" / "models").mkdir(parents=True)
    (tmp_path / "presets" / "models" / "ghost.yaml").write_text(
        "arch: mm-unet\nweights: {bundled: ghost.safetensors, format: safetensors}\n"
    )
    done = run_here("generate", "-m", "ghost", "-o", tmp_path / "out", env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "ghost.safetensors is missing" in done.stderr
    assert "reinstall mmgen" in done.stderr and "-m NAME|FILE" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_model_whose_entry_names_an_upsampler_makes_bigger_frames(tmp_path, monkeypatch):
    """A registry entry with `upsampler:` (here user presets pointing at local files): --upscale runs it, and the
    sidecar records how it sampled. In this process (tests/cli_here.py): the frames made are the point, and the
    upsampler's start noise. That was drawn from a generator seeded seed + 2^40, which torch's takes as seed (it keeps a seed's low 32 bits): the clip's own x_T
    video again, reshaped — the same numbers for two tensors. It continues the clip's own generator now."""
    from mmgen.pipelines import sampling

    register_tiny_with_upsampler(tmp_path)
    starts = []

    def recording(denoiser, x_T, *args, **kwargs):
        starts.append(x_T["image"][0].flatten().cpu())
        return real(denoiser, x_T, *args, **kwargs)

    real = sampling.sample
    monkeypatch.setattr(sampling, "sample", recording)
    done = run_here("generate", "-m", "tiny", "--steps", "2", "--seed", "1", "--upscale", "-o", tmp_path / "out",
                    "--json", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert (record["upscaled"], record["upsampler"], record["width"], record["height"]) == (True, "tiny-sr", 32, 32)
    # how it upscaled, which its entry decides (the shipped landscape-sr's 25 ddim steps, a user's 1): a sidecar
    # said only its name
    assert record["upsampling"] == {"sampler": "ddim", "steps": 2, "eta": 0.0, "clip_denoised": True}
    assert decode_frames(tmp_path / "out" / "clip_0000.mp4").shape == (16, 32, 32, 3)  # 16×16 → 32×32
    image = starts[0]
    clip_start = torch.randn(2 * image.numel(), generator=torch.Generator().manual_seed(1))  # its x_T's first numbers
    assert not torch.equal(image, clip_start[: image.numel()])
    assert image.std() == pytest.approx(1, abs=0.1)  # standard noise still


def test_upscaling_says_its_steps_as_the_clip_s_own_with_one_eta(tmp_path, monkeypatch):
    """`generate -m landscape` upscaling to 256×256 said nothing for its whole length (116 s for 1 step; the
    shipped 25 are an hour on a CPU): its steps had no line. They count on from the clip's sampling steps, one
    total of both, so a step line's ETA is the whole clip's. Here every step line is due (no 30 s wait): 2 steps
    of `tiny`, then 2 of `tiny-sr` (its entry's ddim, 2 steps) on the clip's one chunk of 16 frames."""
    register_tiny_with_upsampler(tmp_path)
    monkeypatch.setattr("mmgen.cli.progress.PLAIN_SECONDS", 0)
    done = run_here("generate", "-m", "tiny", "--steps", "2", "--upscale", "--no-previews", "-o", tmp_path / "out",
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    steps = [line.split(", ETA")[0] for line in done.stderr.splitlines() if ": step " in line]
    assert steps == ["clip 1/1: step 1/4", "clip 1/1: step 2/4", "clip 1/1: step 3/4"], done.stderr
    assert all(", ETA " in line for line in done.stderr.splitlines() if ": step 3/4" in line), done.stderr


def test_the_demo_sidecar_records_its_stochastic_sampler_and_its_seed_makes_the_clip_again(tmp_path):
    """The bundled demo samples with ddim at eta = 1 from t = 650: fresh noise at every step, drawn from the
    clip's own seed, so the sidecar's seed still makes the same clip: the same samples (both runs have the
    test's one thread), encoded to within the H.264 encoder's own wobble (media_factory.ENCODE_LEVELS)."""
    env = mmgen_env(tmp_path)
    done = run_mmgen("generate", "-n", "2", "--seed", "7", "--json", "-o", tmp_path / "two", env=env)
    assert done.returncode == 0, done.stderr
    second = json.loads(done.stdout.splitlines()[1])
    assert (second["model"], second["sampler"], second["steps"]) == ("demo", "ddim", 25)
    assert (second["eta"], second["start_timestep"], second["seed"]) == (1.0, 650, 8)
    again = run_here("generate", "--seed", str(second["seed"]), "-o", tmp_path / "again", env=env)
    assert again.returncode == 0, again.stderr
    remade, original = tmp_path / "again" / "clip_0000.mp4", tmp_path / "two" / "clip_0001.mp4"
    assert frame_difference(remade, original) <= ENCODE_LEVELS
    assert np.array_equal(decode_audio(remade)[0], decode_audio(original)[0])
    assert frame_difference(remade, tmp_path / "two" / "clip_0000.mp4") > 4 * ENCODE_LEVELS  # seed 7's clip


def test_an_overwrite_without_previews_takes_the_old_clips_previews_away_but_never_a_users_file(tiny, tmp_path):
    """Previews of a clip that is gone would show the wrong clip. Only what the replaced sidecar says mmgen wrote,
    as mmgen wrote it, goes: a preview the user changed since stays."""
    fast = {"model": str(tiny), "steps": 2, "device": "cpu"}
    out = tmp_path / "out"
    generate_files(out, GenerateSettings(seed=1, **fast))
    assert sorted(p.name for p in out.iterdir()) == sorted(f.format("clip_0000") for f in CLIP_FILES)
    drawn = out / "clip_0000_frames.png"
    drawn.write_bytes(b"my own drawing")
    later = (out / "clip_0000.json").stat().st_mtime + 1
    os.utime(drawn, (later, later))

    generate_files(out, GenerateSettings(seed=2, previews=False, **fast), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["clip_0000.json", "clip_0000.mp4", "clip_0000_frames.png"]
    assert drawn.read_bytes() == b"my own drawing" and sidecar(out, "clip_0000")["seed"] == 2


@pytest.mark.parametrize(("failure", "code"), [(KeyboardInterrupt(), 130),
                                               (OSError(28, "No space left on device"), 1)])
def test_json_lists_each_clip_as_it_is_kept_when_a_later_one_is_stopped_or_fails(tiny, tmp_path, monkeypatch,
                                                                                failure, code):
    """--json's line of a clip is printed as the clip is kept, not when the command ends: a Ctrl-C or a full disk
    while clip_0001 is written still lists clip_0000, and only it: stdout names exactly the files there."""
    generate = importlib.import_module("mmgen.pipelines.generate")  # the module (the package names its function so)
    real, calls = generate.write_mp4, []

    def write_mp4(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise failure
        return real(path, *args, **kwargs)

    monkeypatch.setattr(generate, "write_mp4", write_mp4)
    out = tmp_path / "out"
    done = run_here("generate", "-m", tiny, "-n", "3", "--steps", "2", "--seed", "1", "--no-previews", "--json",
                    "-o", out, env=mmgen_env(tmp_path))
    assert done.returncode == code, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["mp4"] for r in records] == [str(out / "clip_0000.mp4")]
    assert sorted(p.name for p in out.iterdir()) == ["clip_0000.json", "clip_0000.mp4"]


@pytest.mark.parametrize("name", ["clip.mp4", "clip.gif", "clip.avi", "clip.m4a", "clip.MP3", "clip.png"])
def test_an_out_dir_named_as_a_media_file_is_refused_unless_it_is_a_folder_already_or_ends_in_a_slash(
        tiny, tmp_path, name):
    """`generate -o clip.mp4` made a folder `clip.mp4/` holding clip_0000.mp4, without a word; `clip.gif`, `.avi`,
    `.m4a`, `.mp3` still did after .mp4/.mov/.mkv/.webm/.wav were refused: every media file's suffix is."""
    env = mmgen_env(tmp_path)
    done = run_here("generate", "-m", tiny, "--steps", "1", "-o", tmp_path / name, env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"-o {tmp_path / name} names a file, and generate writes its clips into a folder (its clips are named " \
           f"clip_0000.mp4 …; give -o {tmp_path / 'clip'}/, or -o " in done.stderr
    assert not (tmp_path / name).exists()
    # Taken as a folder so named: the run goes on to its model (here missing, so nothing is sampled).
    missing = tmp_path / "missing.safetensors"
    (tmp_path / f"made{Path(name).suffix}").mkdir()
    for folder in (f"{tmp_path / name}/", tmp_path / f"made{Path(name).suffix}"):
        done = run_here("generate", "-m", missing, "-o", folder, env=env)
        assert done.returncode == 2 and "missing.safetensors" in done.stderr and "-o is a" not in done.stderr


def readme_generate_sidecar() -> dict:
    """The README's example sidecar of `clip_0000`."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    return json.loads(readme.split("The sidecar of `clip_0000`")[1].split("```json")[1].split("```")[0])


def test_the_readme_s_example_sidecar_has_every_key_a_generated_clip_s_has(two_clips):
    """The README's example lacked `delivery`, which every generated clip's sidecar has."""
    out, _ = two_clips
    record, example = sidecar(out, "clip_0000"), readme_generate_sidecar()
    assert set(record) - {"eta", "start_timestep"} <= set(example), set(record) - set(example)  # ddim's; tiny: dpm++
    assert set(record["delivery"]) == set(example["delivery"])


def test_a_sidecar_records_the_preset_and_the_sampling_fields_it_laid_over_the_models(tiny, tmp_path):
    """`--preset paper` and `--sampler paper` made other clips from one seed (the preset clears a model's own
    start_timestep, zero_mean and start_mean, as the demo's), but their sidecars differed only by a start_timestep
    left out: each records the preset it was given and the model's own fields where they applied."""
    (tmp_path / "presets" / "models").mkdir(parents=True)
    (tmp_path / "presets" / "models" / "mine.yaml").write_text(
        f"arch: mm-unet\nweights:\n  urls: [{tiny.as_uri()}]\n  sha256: {hashlib.sha256(tiny.read_bytes()).hexdigest()}\n"
        "sampling: {sampler: ddim, steps: 2, start_timestep: 500, zero_mean: [audio], start_mean: {video: -0.5}}\n")
    env = mmgen_env(tmp_path)
    common = ["-m", "mine", "--sampler", "ddim", "--steps", "1", "--seed", "3", "--no-previews", "--json",
              "--loudness", "off", "--sample-rate", "model"]
    preset = run_here("generate", "--preset", "paper", "-o", tmp_path / "a", *common, env=env)
    sampler = run_here("generate", "-o", tmp_path / "b", *common, env=env)
    assert preset.returncode == sampler.returncode == 0, preset.stderr + sampler.stderr
    preset, sampler = json.loads(preset.stdout), json.loads(sampler.stdout)
    assert preset["preset"] == "paper" and not {"start_timestep", "zero_mean", "start_mean"} & set(preset)
    assert "preset" not in sampler
    assert (sampler["start_timestep"], sampler["zero_mean"], sampler["start_mean"]) == (500, ["audio"],
                                                                                      {"video": -0.5})



def test_a_device_that_is_no_device_is_refused_before_any_output_is_checked(tmp_path, monkeypatch):
    """`generate -n 5000 --device bogus` checked its 20,000 output files (twice) for 19 s before it said `--device:
    'bogus' is not a device`; -n 100000 took minutes. The word is checked when the settings are built, first."""
    from mmgen.errors import InvalidSetting
    from mmgen.pipelines import outputs

    checked = []
    monkeypatch.setattr(outputs, "check_outputs", lambda *args, **kwargs: checked.append(args))
    done = run_here("generate", "-n", "100000", "--device", "bogus", "-o", tmp_path / "out", env=mmgen_env(tmp_path))
    assert (done.returncode, done.stderr) == (
        2, "mmgen: error: --device: 'bogus' is not a device (choose from auto, cpu, cuda, cuda:N, mps)\n")
    assert not checked and not (tmp_path / "out").exists()
    with pytest.raises(InvalidSetting, match=r"^device: 'tpu' is not a device"):
        GenerateSettings(device=" TPU ")
    assert GenerateSettings(device=" CUDA:1 ").device == " CUDA:1 "  # the word; whether it is here is for the run


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_a_device_this_machine_lacks_is_said_before_any_output_is_checked(tmp_path, monkeypatch, capsys, device):
    """`generate -n 100000 --device cuda` on a machine without CUDA said so only after its 400,000 output files were
    checked, twice (8.8 s of CPU); a real device word is as cheap to judge as `bogus`, once torch is there. So are
    soundtrack's, animate's and retake's, before their input is even looked at."""
    from mmgen.cli import run
    from mmgen.errors import InvalidSetting
    from mmgen.pipelines import outputs, preflight
    from mmgen.pipelines.settings import AnimateSettings, RetakeSettings, SoundtrackSettings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    checked = []
    monkeypatch.setattr(outputs, "check_outputs", lambda *args, **kwargs: checked.append(args))
    assert run(["generate", "-n", "100000", "--device", device, "-o", str(tmp_path / "out")]) == 2
    missing = "Apple MPS is not available on this machine" if device == "mps" else "CUDA is not available"
    assert capsys.readouterr().err.startswith(f"mmgen: error: --device {device}: {missing}")
    assert not checked and not (tmp_path / "out").exists()
    for check, settings in ((preflight.check_matching, SoundtrackSettings), (preflight.check_matching, AnimateSettings)):
        with pytest.raises(InvalidSetting, match=f"^device {device}: {missing}"):
            check("soundtrack", tmp_path / "no-such.mp4", None, settings(device=device))
    with pytest.raises(InvalidSetting, match=f"^device {device}: {missing}"):
        preflight.check_retake(tmp_path / "no-such.mp4", None, RetakeSettings(device=device, ranges=("0:1",)))


def test_an_out_dir_that_holds_clip_0000_is_refused_before_the_other_clips_are_named(tmp_path, monkeypatch):
    """`generate -n 100000 -o DIR` over an earlier run's DIR took 77 s to say clip_0000.mp4 is there: the names of
    all 100,000 clips' files were made first. The first clip's files are checked before the others are named."""
    from mmgen.errors import OutputExists
    from mmgen.pipelines.preflight import check_generate

    (tmp_path / "clip_0000.mp4").write_bytes(b"an earlier clip")
    named = []
    outputs_of = GenerateSettings.outputs
    monkeypatch.setattr(GenerateSettings, "outputs", lambda self, mp4: named.append(mp4) or outputs_of(self, mp4))
    with pytest.raises(OutputExists, match="clip_0000.mp4 already exists"):
        check_generate(tmp_path, GenerateSettings(num=100_000))
    assert named == [tmp_path / "clip_0000.mp4"]


def test_a_generate_that_goes_ahead_checks_its_outputs_once_and_a_python_call_checks_them_too(tiny, tmp_path,
                                                                                             monkeypatch):
    """`generate` checks its outputs before torch loads, then generate_files checked them all again: `-n 20000`
    named and looked at its 80,000 files twice (11 s more before the first clip). The command checks once; a Python
    program calling generate_files still has them checked: over that folder, it is refused."""
    from mmgen.errors import OutputExists
    from mmgen.pipelines import outputs

    checked = []
    check = outputs.check_outputs
    monkeypatch.setattr(outputs, "check_outputs", lambda paths, *args, **kwargs: checked.append(len(paths))
                        or check(paths, *args, **kwargs))
    done = run_here("generate", "-m", tiny, "-n", "2", "--steps", "1", "--no-previews", "-o", tmp_path / "cli",
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert checked == [1, 2]  # the first clip's files, then every clip's: once
    checked.clear()
    with pytest.raises(OutputExists, match="clip_0000.mp4 already exists"):
        generate_files(tmp_path / "cli", GenerateSettings(model=str(tiny), num=2, steps=1, previews=False))
    assert checked == [1]


def test_a_model_file_swapped_for_a_folder_after_the_command_checked_it_is_said_as_a_folder(tiny, tmp_path):
    """`generate -m m2.safetensors`, the file swapped for a folder while torch loaded: the pipeline found the
    command's check kept (checked_once) and the model's read failed with `OSError: No such device (os error 19)`,
    exit 1. A kept check holds only while the files it read are the same; a read of a folder says what it is."""
    from mmgen.errors import UsageError
    from mmgen.pipelines.checked_once import checks_kept
    from mmgen.pipelines.preflight import check_generate
    from mmgen.weights.architecture import read_header

    model = tmp_path / "m2.safetensors"
    model.write_bytes(tiny.read_bytes())
    settings = GenerateSettings(model=str(model), num=1, steps=1, previews=False)
    with checks_kept():
        check_generate(tmp_path / "out", settings)
        model.unlink()
        model.mkdir()
        with pytest.raises(UsageError, match="m2.safetensors: it is a directory"):
            check_generate(tmp_path / "out", settings)
    with pytest.raises(UsageError, match="m2.safetensors: it is a directory") as refused:
        read_header(model)  # (a swap after the pipeline's check too)
    assert refused.value.exit_code == 2


def test_many_outputs_are_checked_per_folder_and_a_name_already_there_one_by_one(tmp_path, monkeypatch):
    """`generate -n 20000 -o NEWDIR` checked each planned file on its own (a stat, a symlink resolution, a name-length
    lookup, a cache check: ~1.6 ms each, 32 s before the first clip, and twice). Its folder is checked with its first
    clip, and one listing tells the names not there yet; a name there (an old clip, a symlink), or one of the inputs
    through another spelling of its folder, is still checked on its own and refused in the same words."""
    import re

    from mmgen.errors import OutputExists, UsageError
    from mmgen.pipelines import outputs

    checked = []
    check = outputs.check_output_target
    monkeypatch.setattr(outputs, "check_output_target", lambda path, inputs=(): checked.append(path) or check(path, inputs))

    def plan(folder: Path) -> list[outputs.OutputPaths]:
        return [outputs.beside(folder / f"{outputs.CLIP_STEM.format(k)}.mp4") for k in range(1000)]

    model = tmp_path / "model.safetensors"
    for folder in (tmp_path / "new", tmp_path):  # a folder to be made, and one that is there
        checked.clear()
        outputs.check_outputs(plan(folder), False, inputs=[model])
        assert checked == [folder / "clip_0000.mp4", folder / "clip_0000.json"]
    (tmp_path / "clip_0700.mp4").write_bytes(b"")
    (tmp_path / "clip_0800.json").symlink_to(tmp_path / "nowhere")
    for there in ("clip_0700.mp4", "clip_0800.json"):
        with pytest.raises(OutputExists, match=f"^{re.escape(str(tmp_path / there))} already exists "):
            outputs.check_outputs(plan(tmp_path), False, inputs=[model])
        (tmp_path / there).unlink()
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(UsageError, match=f"^cannot write {re.escape(str(tmp_path / 'clip_0900.json'))}: it is the input "):
        outputs.check_outputs(plan(tmp_path), False, inputs=[model, tmp_path / "link" / "clip_0900.json"])


def test_a_checked_folder_tells_its_names_lengths_from_one_bound_and_a_longer_name_is_refused_as_before(
        tmp_path, monkeypatch):
    """`generate -n 20000 -o DIR` spent ~2.5 s in its output checks, twice: each of the 80,000 names was measured
    for its filesystem on its own (check_name_length: its folder's, its suffix's and its own bytes, through Paths)
    and each clip's container asked the codec library for its rates. The longest name a folder takes is worked out
    once, with its listing; only the first clip's files are checked on their own, and a name past that bound is
    checked on its own and refused in check_name_length's words."""
    import re

    from mmgen import output_checks
    from mmgen.errors import UsageError
    from mmgen.pipelines import outputs
    from mmgen.weights.names import PATH_MAX

    measured = []
    measure = output_checks.check_name_length
    monkeypatch.setattr(output_checks, "check_name_length", lambda path, limit=None: measured.append(path.name)
                        or measure(path, limit))
    outputs.check_outputs([outputs.beside(tmp_path / "new" / f"{outputs.CLIP_STEM.format(k)}.mp4")
                           for k in range(1000)], False)
    assert set(measured) == {"clip_0000.mp4", "clip_0000.json"}

    longest = os.pathconf(tmp_path, "PC_NAME_MAX")
    too_long = tmp_path / f"{'b' * (longest - 3)}.mp4"
    with pytest.raises(UsageError, match=f"^cannot write {re.escape(str(too_long))}: its name is {longest + 1} bytes, "
                       f"longer than the {longest} the filesystem allows "):
        outputs.check_outputs([outputs.beside(tmp_path / "a.mp4"), outputs.beside(too_long)], False)
    deep = tmp_path
    while len(os.fsencode(deep)) < PATH_MAX - 150:  # a folder to be made, each name in it short enough
        deep /= "d" * 100
    past = deep / f"{'b' * 200}.mp4"  # the first clip's names fit in the folder; this whole path does not
    with pytest.raises(UsageError, match=f"^cannot write {re.escape(str(past))}: path too long "
                       f"\\({len(os.fsencode(past))} bytes; the system takes at most {PATH_MAX} in a path\\) "):
        outputs.check_outputs([outputs.beside(deep / "a.mp4"), outputs.beside(past)], False)
