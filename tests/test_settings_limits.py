"""An option means the same wherever it is written: each value below is refused (or taken) alike as a command
flag and as a batch job's key, with exit 2 and one line naming the option, before any model loads.

The table runs through the real command line in this process (`mmgen.cli.run`, fast); the end-to-end cases at
the bottom run the `mmgen` command in a subprocess."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy
import pytest
import yaml
from cli_here import run_here
from media_factory import write_test_video
from mmgen_cli import mmgen_env
from tiny_model import save_tiny_model

from mmgen.cli import run
from mmgen.pipelines import AnimateSettings, GenerateSettings, InvalidSetting, SoundtrackSettings
from mmgen.pipelines.settings import RetakeSettings

# (kind, option, as a flag, as YAML, refused?)
CASES = [
    ("soundtrack", "overlap", "0.8", "0.8", True),
    ("soundtrack", "overlap", "-0.1", "-0.1", True),
    ("soundtrack", "overlap", "0.75", "0.75", False),
    ("soundtrack", "overlap", "nan", ".nan", True),
    ("soundtrack", "overlap", "-inf", "-.inf", True),
    ("soundtrack", "steps", "0", "0", True),
    ("soundtrack", "steps", "1001", "1001", True),
    ("soundtrack", "steps", "1000", "1000", False),
    ("soundtrack", "guidance_scale", "nan", ".nan", True),
    ("soundtrack", "guidance_scale", "inf", ".inf", True),
    ("soundtrack", "guidance_scale", "-inf", "-.inf", True),
    ("soundtrack", "guidance_scale", "-1", "-1", True),
    ("soundtrack", "guidance_scale", "0", "0", False),
    ("soundtrack", "guidance_scale", "1e30", "1.0e+30", True),  # was sampled, then "sampling gave NaN or Inf values"
    ("soundtrack", "guidance_scale", "1e9", "1.0e+9", False),
    ("soundtrack", "mix", "1.5", "1.5", True),
    ("soundtrack", "mix", "nan", ".nan", True),
    ("soundtrack", "mix", "inf", ".inf", True),
    ("soundtrack", "mix", "1", "1", False),
    ("soundtrack", "seed", "-1", "-1", True),
    ("soundtrack", "seed", str(2**63), str(2**63), True),
    ("soundtrack", "seed", str(2**32), str(2**32), True),  # made seed 0's clip: torch keeps a seed's low 32 bits
    ("soundtrack", "seed", str(2**32 - 1), str(2**32 - 1), False),
    ("soundtrack", "seed", "0", "0", False),
    ("soundtrack", "loudness", "3", "3", True),
    ("soundtrack", "loudness", "off", "off", False),
    ("soundtrack", "loudness", "-23", "-23", False),
    ("soundtrack", "loudness", "0", "0", False),  # the range's ends are taken, and delivered (was refused late)
    ("soundtrack", "loudness", "-71", "-71", True),
    ("soundtrack", "sample_rate", "96000", "96000", False),
    ("soundtrack", "sample_rate", "100", "100", True),
    ("soundtrack", "sample_rate", "model", "model", False),
    ("animate", "overlap", "0.9", "0.9", True),
    ("animate", "overlap", "nan", ".nan", True),
    ("generate", "num", "0", "0", True),
    ("generate", "steps", "0", "0", True),
]
# What an option means something only with, given beside it (as a flag, as a YAML line): a scale is gradient guidance's.
WITH = {"guidance_scale": ("--guidance=gradient", "    guidance: gradient\n")}


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny model and a clip, with mmgen's cache and config kept inside."""
    for name, value in mmgen_env(tmp_path).items():
        if name.startswith(("MMGEN_", "XDG_")):
            monkeypatch.setenv(name, value)
    save_tiny_model(tmp_path / "tiny.safetensors")
    write_test_video(tmp_path / "clip.mp4", size=(32, 32))
    return tmp_path


def mmgen(capsys: pytest.CaptureFixture, *args) -> tuple[int, str]:
    code = run([str(a) for a in args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("kind", "option", "flag_value", "yaml_value", "refused"), CASES,
                         ids=[f"{c[0]}-{c[1]}={c[2]}" for c in CASES])
def test_an_option_has_the_same_limits_as_a_flag_and_in_a_batch_file(
    folder: Path, capsys: pytest.CaptureFixture, kind, option, flag_value, yaml_value, refused
):
    flag = "--" + option.replace("_", "-")
    missing = folder / "missing.mp4"  # a value that is taken gets as far as reading the input
    target = ["-o", folder / "out"] if kind == "generate" else [missing]  # (no taken generate case: it would run)
    with_flag, with_line = WITH.get(option, ("", ""))
    code, said = mmgen(capsys, kind, *target, "-m", folder / "tiny.safetensors", f"{flag}={flag_value}",
                       *filter(None, [with_flag]))
    assert code == 2
    assert (flag in said) == refused, said
    assert said.count("\n") == 1 and "Traceback" not in said
    if not refused:
        assert "missing.mp4" in said
    flag_reason = said.strip().partition(f"{flag}: ")[2]

    jobs = folder / "jobs.yaml"
    job_input = "" if kind == "generate" else "    input: clip.mp4\n"
    jobs.write_text(f"defaults: {{model: tiny.safetensors}}\njobs:\n  - kind: {kind}\n{job_input}"
                    f"    {option}: {yaml_value}\n{with_line}")
    code, said = mmgen(capsys, "batch", jobs, "--dry-run")
    option_line = 5 if job_input else 4
    if refused:
        assert code == 2, said
        first = said.splitlines()[0]
        assert first.startswith(f"{jobs}:{option_line}: ") and f"{option}:" in first, said
        assert flag_reason and first.endswith(f"{option}: {flag_reason}"), (flag_reason, first)  # nan: "not finite"
    else:
        assert code == 0, said
    assert not (folder / "out").exists() and not (folder / "outputs").exists()


@pytest.mark.parametrize(("option", "yaml_value", "refused"),
                         [(c[1], c[3], c[4]) for c in CASES if c[0] == "soundtrack"])
def test_the_python_api_takes_and_refuses_the_same_values(option, yaml_value, refused):
    value = yaml.safe_load(yaml_value)
    if refused:
        with pytest.raises(InvalidSetting, match=f"^{option}: "):
            SoundtrackSettings(**{option: value})
    else:
        settings = SoundtrackSettings(**{option: value})
        assert getattr(settings, option) == value
        settings.delivery()  # what the settings take, the sound's delivery takes too: no refusal after the work


def test_guidance_scale_inf_is_refused_before_any_work(tmp_path: Path):
    """#12: exit 2 with one line, not a failure after the first window."""
    env = mmgen_env(tmp_path)
    model = save_tiny_model(tmp_path / "tiny.safetensors")
    clip = write_test_video(tmp_path / "clip.mp4", size=(32, 32)).path
    done = run_here("soundtrack", clip, "-m", model, "--guidance", "gradient", "--guidance-scale", "inf", env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr == "mmgen: error: --guidance-scale: must be a finite number, got inf\n"
    assert not (tmp_path / "clip_soundtrack.mp4").exists()


def test_batch_names_with_a_nul_or_ending_in_a_slash_are_refused(tmp_path: Path):
    save_tiny_model(tmp_path / "tiny.safetensors")
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(textwrap.dedent("""
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: generate
            name: "take\\0one"
          - kind: generate
            name: scored/
        """).lstrip())
    done = run_here("batch", jobs, env=mmgen_env(tmp_path))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == f"{jobs}:4: job 1 (generate): name: 'take\\x00one' must not hold control characters (a newline, tab, NUL, ...)"
    assert lines[1].startswith(f"{jobs}:6: job 2 (generate): name: 'scored/' names a folder")
    assert lines[2] == f"mmgen: error: {jobs}: 2 problems found, nothing was run"
    assert len(lines) == 3 and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(("field", "value", "says"), [
    ("guidance_scale", 1e30, "guidance_scale must be between 0 and 1e+09, got 1e+30"),
    ("guidance_scale", float("nan"), "guidance_scale must be between 0 and 1e+09, got nan"),
    ("eta", 1.5, "eta must be between 0 and 1, got 1.5"),  # ddim stopped on √ of a negative number
])
def test_a_models_sampling_settings_have_the_flags_limits(field, value, says):
    """A registry entry's or preset's `sampling:` is the same SamplingConfig: a value that can only blow up is
    refused as it is read, as the flag is."""
    from mmgen.diffusion.sampling_config import SamplingConfig

    with pytest.raises(ValueError, match=f"^{re.escape(says)}$"):
        SamplingConfig(**{field: value})


def test_a_guidance_scale_without_gradient_guidance_is_refused_not_ignored(folder: Path, capsys):
    """`--guidance-scale` scales gradient guidance; with replacement guidance (asked for, or the model's own) it was
    taken and did nothing. Refused as a flag and as a batch job's key, before any work."""
    model = folder / "tiny.safetensors"
    for asked, whose in ([], "the model's own setting"), (["--guidance", "replacement"], "as asked"):
        code, said = mmgen(capsys, "soundtrack", folder / "clip.mp4", "-m", model, "--guidance-scale", 3, *asked,
                           "-o", folder / "out.mp4")
        assert code == 2
        assert said == (f"mmgen: error: --guidance-scale 3: scales gradient guidance only, and this run guides by "
                        f"replacement ({whose}) (ask for gradient guidance with it, or leave the scale out)\n")
    jobs = folder / "jobs.yaml"
    jobs.write_text("defaults: {model: tiny.safetensors}\njobs:\n  - kind: animate\n    input: clip.mp4\n"
                    "    guidance_scale: 3\n")
    code, said = mmgen(capsys, "batch", jobs, "--dry-run")
    assert code == 2
    assert said.splitlines()[0].startswith(f"{jobs}:5: job 1 (animate): guidance_scale 3: scales gradient guidance")
    assert not list(folder.glob("out*"))


# A value of the wrong type or no word of the field's, given from Python: refused as the settings are built,
# naming the field, as a batch file's key is (same converter) — not taken as something else, or a TypeError later.
WRONGLY_TYPED = [
    (GenerateSettings, "sample_rate", 48e3, "expected an integer or 'model', got 48000.0"),  # was None: 8 kHz
    (GenerateSettings, "sample_rate", 44100.0, "expected an integer or 'model', got 44100.0"),
    (GenerateSettings, "sample_rate", "fast", "expected an integer or 'model', got 'fast'"),
    (GenerateSettings, "loudness", "loud", "expected a number or 'off', got 'loud'"),  # was off
    (GenerateSettings, "loudness", True, "expected a number or 'off', got True"),
    (GenerateSettings, "previews", "no", "expected true/false, got 'no'"),  # was true
    (GenerateSettings, "seed", True, "expected an integer, got True"),  # was seed 1
    (GenerateSettings, "seed", "7", "expected an integer, got '7'"),  # was TypeError: '<=' not supported
    (GenerateSettings, "seed", 7.5, "expected an integer, got 7.5"),
    (GenerateSettings, "num", "2", "expected an integer, got '2'"),
    (GenerateSettings, "num", 1.5, "expected an integer, got 1.5"),
    (GenerateSettings, "steps", 2.5, "expected an integer, got 2.5"),
    (GenerateSettings, "steps", "2", "expected an integer, got '2'"),
    (GenerateSettings, "model", None, "expected a string, got None"),  # was 'None'
    (GenerateSettings, "sampler", "bogus", "'bogus' is not one of 'dpm++', 'ddim', 'ddpm', 'paper'"),
    (GenerateSettings, "precision", "fp8", "'fp8' is not one of 'auto', 'fp32', 'fp16', 'bf16'"),
    (GenerateSettings, "upscale", "yes", "expected true/false, got 'yes'"),
    (SoundtrackSettings, "mix", "0.3", "expected a number, got '0.3'"),
    (SoundtrackSettings, "guidance_scale", "3e6", "expected a number, got '3e6'"),  # was 3000000.0: YAML's leniency
    (SoundtrackSettings, "guidance", "foo", "'foo' is not one of 'replacement', 'gradient'"),
    (SoundtrackSettings, "wav", 1, "expected true/false, got 1"),
    (AnimateSettings, "overlap", None, "expected a number, got None"),
    (AnimateSettings, "adapter", [1], "expected a string or a list, got [1]"),
    (RetakeSettings, "ranges", "1:2", "expected a list, got str"),
    (RetakeSettings, "video", "yes", "expected true/false, got 'yes'"),
]


@pytest.mark.parametrize(("cls", "field", "value", "reason"), WRONGLY_TYPED,
                         ids=[f"{c[0].__name__}-{c[1]}={c[2]!r}" for c in WRONGLY_TYPED])
def test_the_settings_refuse_a_wrongly_typed_value_as_they_are_built(cls, field, value, reason):
    with pytest.raises(InvalidSetting) as refused:
        cls(**{field: value})
    assert (refused.value.field, refused.value.reason, refused.value.exit_code) == (field, reason, 2)
    assert str(refused.value) == f"{field}: {reason}"


def test_the_settings_take_the_lossless_forms_of_a_value_and_hold_the_fields_type():
    settings = GenerateSettings(seed=numpy.int64(7), num=2, model=Path("clips/tiny.safetensors"), adapter=["a", "b"],
                                loudness=-14, sample_rate="model")
    assert (settings.seed, settings.model, settings.adapter, settings.loudness) == (
        7, "clips/tiny.safetensors", ("a", "b"), -14.0)
    assert type(settings.seed) is int and type(settings.loudness) is float
    hash(settings)  # a list given for a repeatable option is held as a tuple: the settings stay hashable
    assert SoundtrackSettings(mix=1, overlap=0, loudness="off").delivery().loudness is None
    assert RetakeSettings(ranges=("1:2",), video=True).ranges == ("1:2",)
    assert GenerateSettings(sample_rate=44100).delivery().sample_rate == 44100


def test_a_batch_file_reads_scientific_notation_as_the_number_it_is_where_python_gives_text(folder: Path, capsys):
    """YAML 1.1 leaves `5e-1` (no dot) a string; a batch file means the number, and gets it. A str given from Python
    is text, refused as any other str for a number (it was read as one: only YAML's text is read so)."""
    jobs = folder / "jobs.yaml"
    jobs.write_text("jobs:\n  - kind: soundtrack\n    input: clip.mp4\n    model: tiny.safetensors\n"
                    "    overlap: 5e-1\n    guidance: gradient\n    guidance_scale: 2e1\n")
    code, said = mmgen(capsys, "batch", jobs, "--dry-run")
    assert code == 0, said
    with pytest.raises(InvalidSetting, match="^overlap: expected a number, got '5e-1'$"):
        SoundtrackSettings(overlap="5e-1")


def test_a_flag_of_the_wrong_type_is_still_refused_in_the_flags_words(folder: Path, capsys):
    code, said = mmgen(capsys, "generate", "-m", folder / "tiny.safetensors", "--seed", "7.5", "-o", folder / "o")
    assert code == 2 and said == "mmgen: error: --seed: expected an integer, got '7.5'\n", said


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--loudness", "1e308", "must be between -70 and 0, got 1e+308"),
    ("--overlap", "-1e20", "must be between 0 and 0.75, got -1e+20"),
    ("--guidance-scale", "1e308", "must be between 0 and 1000000000, got 1e+308"),
    ("--mix", "1e15", "must be between 0 and 1, got 1000000000000000"),
])
def test_a_huge_number_out_of_range_is_echoed_as_a_number_not_hundreds_of_digits(folder: Path, capsys, flag, value,
                                                                                  says):
    """A whole float was echoed as int() writes it: `--loudness 1e308` said "got 1000000000000000010979…" (309
    digits). Past what str writes in full it is echoed as str writes it."""
    code, said = mmgen(capsys, "soundtrack", folder / "clip.mp4", "-m", folder / "tiny.safetensors", "--guidance",
                       "gradient", flag, value)
    assert code == 2 and said == f"mmgen: error: {flag}: {says}\n", said


@pytest.mark.parametrize(("args", "says"), [
    (["--seed", "1_000"], "--seed: expected an integer, got '1_000'"),
    (["--seed", " 5"], "--seed: expected an integer, got ' 5'"),
    (["--seed", "\uff10"], "--seed: expected an integer, got '\uff10'"),  # full-width 0
    (["--num", "\u0665"], "--num: expected an integer, got '\u0665'"),  # Arabic-Indic 5
    (["--steps", "0x10"], "--steps: expected an integer, got '0x10'"),
    (["--loudness", "-1_6"], "--loudness: expected a number or 'off', got '-1_6'"),
    (["--sample-rate", "48000.0"], "--sample-rate: expected an integer or 'model', got '48000.0'"),
    (["--sample-rate", "nan"], "--sample-rate: expected an integer or 'model', got 'nan'"),
    (["--adapter", "style.safetensors:1_0"], "--adapter style.safetensors:1_0: weight '1_0' is not a number "
                                              "(FILE:WEIGHT or NAME:WEIGHT, e.g. x.safetensors:0.8)"),
])
def test_a_number_flag_takes_the_digits_0_9_only_as_a_batch_file_and_range_do(folder: Path, capsys, args, says):
    """int() and float() took `--seed 1_000`, " 5", full-width and Arabic-Indic digits, where --range and a batch file
    refuse them: every number flag takes one form (mmgen.config.NUMBER)."""
    (folder / "style.safetensors").write_bytes(b"")
    code, said = mmgen(capsys, "generate", "-m", folder / "tiny.safetensors", "-o", folder / "o", *args)
    assert code == 2 and said == f"mmgen: error: {says}\n", said


@pytest.mark.parametrize("flag", ["--steps", "--sample-rate"])
def test_a_whole_number_too_long_for_int_is_refused_as_one_not_as_no_integer(folder: Path, capsys, flag):
    """5,000 nines: int() refuses more than 4,300 digits (ValueError), which was said as "expected an integer" (it is
    one); a YAML file's is refused as "a number too long", and so is a flag's (config.parse_number)."""
    code, said = mmgen(capsys, "generate", "-m", folder / "tiny.safetensors", "-o", folder / "o", flag, "9" * 5000)
    assert code == 2 and said == f"mmgen: error: {flag}: a number too long\n", said


@pytest.mark.parametrize(("flag", "value"), [("--lr", "0x10"), ("--lr", " 1e-4"), ("--lora-alpha", "1_0"),
                                             ("--ema-decay", "\u0660.9"), ("--grad-clip", "1,5")])
def test_finetune_s_number_flags_say_what_they_expected_in_mmgen_s_words(folder: Path, capsys, flag, value):
    """`finetune --lr 0x10` said typer's "Input should be a valid number, unable to parse string as a number"."""
    code, said = mmgen(capsys, "finetune", folder / "missing", "--lora", "4", flag, value)  # taken: no data, no run
    assert code == 2 and said == f"mmgen: error: {flag}: expected a number, got {value!r}\n", said


def test_a_precision_is_taken_in_any_case_everywhere_and_held_lower_case(tmp_path, capsys):
    """`--device CUDA` and a batch's `device: CPU` were taken, but `--precision BF16`, a batch's `precision: BF16`,
    a finetune config's and `GenerateSettings(precision="BF16")` were refused. Every one takes it now, as bf16: the
    one spelling the records keep. A word that is no precision is still refused, in every case."""
    from mmgen.pipelines.batch import plan_batch
    from mmgen.train.config import FinetuneConfig, resolve_config

    assert GenerateSettings(precision="BF16").precision == "bf16"
    assert SoundtrackSettings(precision=" Fp32 ").precision == "fp32"
    assert FinetuneConfig(precision="FP16").precision == "fp16"
    assert resolve_config([("c.yaml", {"precision": "BF16"})]).precision == "bf16"
    with pytest.raises(InvalidSetting, match=r"^precision: 'FP8' is not one of 'auto', 'fp32', 'fp16', 'bf16'$"):
        GenerateSettings(precision="FP8")

    save_tiny_model(tmp_path / "tiny.safetensors")
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("defaults: {model: tiny.safetensors, precision: BF16}\njobs:\n  - kind: generate\n")
    assert plan_batch(jobs).jobs[0].settings.precision == "bf16"
    assert run(["batch", str(jobs), "--dry-run", "--device", "CPU", "--precision", "FP32"]) == 0, capsys.readouterr().err


def test_a_finetune_config_checks_its_device_word_as_the_settings_classes_do():
    """`FinetuneConfig(device="gpu")` was built without complaint (the run failed later), while
    `GenerateSettings(device="gpu")` raised as it was built: both call check_device_name now."""
    from mmgen.train.config import FinetuneConfig

    for cls in (GenerateSettings, FinetuneConfig):
        with pytest.raises(InvalidSetting, match=r"^device: 'gpu' is not a device \(choose from auto, cpu, cuda"):
            cls(device="gpu")
    assert FinetuneConfig(device=" CUDA:1 ").device == "cuda:1"  # the word, held as written in records; here or not: the run's
