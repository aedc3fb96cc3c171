"""The command-line flags, defined once: FLAGS has one per settings field (mmgen.pipelines.settings), and
`settings_flags` gives a command the flags of its settings class — default from the class, range from
settings.LIMITS — and hands it the settings built from them. A new option is a field plus its entry here."""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import math
import sys
import typing
from typing import Annotated, Any, Literal

import typer

from mmgen.config import NumberTooLong, parse_number
from mmgen.diffusion.sampling_config import SamplingConfig
from mmgen.media.delivery import word_value
from mmgen.pipelines.settings import LIMITS, RunSettings

_SAMPLING = "Sampling"
_HARDWARE = "Hardware"
_OUTPUT = "Output"
MODELS_OWN = "the model's settings"  # --help's default for a field the model's sampling settings (or --preset) give

DEVICE_METAVAR = "auto|cpu|cuda|cuda:N|mps"

# One flag per settings field, by field name; where a field applies is up to the settings classes.
FLAGS: dict[str, Any] = {
    "num": Annotated[int, typer.Option("--num", "-n", metavar="N", help="How many clips to make.")],
    "model": Annotated[
        str,
        typer.Option(
            "--model", "-m", metavar="NAME|FILE",
            help="Registry name (see `mmgen models list`) or path to a .safetensors written by mmgen. A value with a / "
            "or ending in .safetensors is a path (./NAME for a file here); anything else a name.",
        ),
    ],
    "preset": Annotated[
        str | None,
        typer.Option(
            metavar="NAME", rich_help_panel=_SAMPLING,
            help="Sampling preset: fast, balanced or paper (default: the model's own settings, else balanced). "
            "fast and balanced change the sampler and steps and keep what the model's own settings need (e.g. the "
            "demo's start); paper is the paper's run. {overrides} override single fields.",  # this command's flags
        ),
    ],
    "sampler": Annotated[
        Literal["dpm++", "ddim", "ddpm", "paper"] | None,
        typer.Option(
            metavar="SAMPLER", rich_help_panel=_SAMPLING, show_default=MODELS_OWN,
            help="dpm++ (DPM-Solver++ 2M, fast), ddim, ddpm (the paper's ancestral sampler, needs many steps) "
            "or paper (the official DPM-Solver run).",
        ),
    ],
    "steps": Annotated[
        int | None,
        typer.Option(metavar="STEPS", rich_help_panel=_SAMPLING, show_default=MODELS_OWN,
                     help="Denoising steps: more is slower and usually cleaner."),
    ],
    "seed": Annotated[
        int | None,
        typer.Option(
            metavar="SEED", rich_help_panel=_SAMPLING,
            help="Random seed; the same seed and settings give the same output. Default: a random seed, "
            "printed and written to the sidecar JSON.",
        ),
    ],
    "guidance": Annotated[
        Literal["replacement", "gradient"] | None,
        typer.Option(
            metavar="MODE", rich_help_panel=_SAMPLING, show_default=MODELS_OWN,
            help="How the input steers generation: replacement (fast) or gradient (the paper's, uses "
            "--guidance-scale; about 2x slower).",
        ),
    ],
    "guidance_scale": Annotated[
        float | None,
        typer.Option(metavar="SCALE", rich_help_panel=_SAMPLING, show_default=MODELS_OWN,
                     help="Strength (lambda) of gradient guidance (the paper's: 3*2^20 = 3,145,728)."),
    ],
    "overlap": Annotated[
        float,
        typer.Option(
            metavar="FRACTION", rich_help_panel=_SAMPLING,
            help="Fraction of each model window shared with the previous one; the new window continues what "
            "the overlap already holds, and the two are crossfaded there.",
        ),
    ],
    "upscale": Annotated[
        bool | None,
        typer.Option(
            "--upscale/--no-upscale", show_default=False, rich_help_panel=_SAMPLING,
            help="Super-resolve video with the model's upsampler (e.g. 64→256). Default: when the upsampler "
            "is available.",
        ),
    ],
    "mix": Annotated[
        float,
        typer.Option(
            metavar="FRACTION", rich_help_panel=_OUTPUT,
            help="Blend in the input's own audio: 0 only the new soundtrack, 0.5 half each, 1 only the original.",
        ),
    ],
    "wav": Annotated[
        bool, typer.Option("--wav", rich_help_panel=_OUTPUT, help="Also write the sound alone as OUT.wav: soundtrack's "
                           "new audio (before any mix with the input's own), retake's whole sound (the retaken ranges and "
                           "the rest).")
    ],
    "previews": Annotated[
        bool,
        typer.Option("--previews/--no-previews", rich_help_panel=_OUTPUT,
                     help="Also write a contact sheet of the frames and a spectrogram of the sound."),
    ],
    "loudness": Annotated[
        float | None,
        typer.Option(
            metavar="LUFS|off", rich_help_panel=_OUTPUT, parser=lambda text: _word(text, "off", float),
            help="Integrated loudness of the delivered sound (EBU R128), true peak at most -1 dBTP; off keeps the "
            "level as made.",
        ),
    ],
    "sample_rate": Annotated[
        int | None,
        typer.Option(
            metavar="HZ|model", rich_help_panel=_OUTPUT, parser=lambda text: _word(text, "model", int),
            help="Sample rate of the delivered sound (the WAV and the audio track), refused up front where the output "
            "cannot store it; model keeps the model's own, or where the output cannot store that, the nearest rate "
            "above that it can (a note says so).",
        ),
    ],
    "ranges": Annotated[
        list[str],
        typer.Option("--range", metavar="A:B", show_default=False,
                     help="Seconds to regenerate, e.g. 2:3.5 (repeat the flag for several ranges: they may meet, "
                     "2:3 and 3:4, but not overlap)."),
    ],
    "video": Annotated[
        bool,
        typer.Option("--video", help="Regenerate the picture (clips at the model's frame size, i.e. mmgen's own) "
                     "instead of the sound."),
    ],
    "audio": Annotated[bool, typer.Option("--audio", help="Regenerate the sound (the default; any clip).")],
    "adapter": Annotated[
        list[str],
        typer.Option(
            "--adapter", metavar="FILE[:WEIGHT]", rich_help_panel=_SAMPLING, show_default=False,
            help="A LoRA adapter (the adapter.safetensors in the run folder of `mmgen finetune --lora`, or a name "
            "registered with `mmgen models import`) merged into the model, times WEIGHT (default 1). Repeat to "
            "stack several. As for -m, a value with a / or ending in .safetensors is a file (./NAME for one here), "
            "anything else a registered name.",
        ),
    ],
    "device": Annotated[
        str,
        typer.Option(metavar=DEVICE_METAVAR, rich_help_panel=_HARDWARE,
                     help="Where to run: auto picks cuda, then mps, then cpu."),
    ],
    "precision": Annotated[
        Literal["auto", "fp32", "fp16", "bf16"],
        typer.Option(
            rich_help_panel=_HARDWARE, case_sensitive=False,
            help="Compute precision: auto is bf16 (or fp16) on CUDA, fp16 on MPS (fp32 with a torch before 2.5), bf16 "
            "on CPUs with native bf16 (AVX512-BF16/AMX), else fp32.",
        ),
    ],
}

# What a delivery flag's default of None is, where a command has one (animate keeps its input's own sound): shown as
# that command's default in --help, where typer shows none for None.
NONE_MEANS = {
    "loudness": "the input's own sound, copied as it is",
    "sample_rate": "the input's own rate, its sound copied as it is",
}

# Flags of the commands themselves (not settings).
OutputFile = Annotated[
    str | None,  # a str, not a Path: a Path would drop the trailing slash that makes a new name a folder
    typer.Option("--output", "-o", metavar="OUT.mp4", rich_help_panel=_OUTPUT,
                 help="Output file (.mp4, .mov, .mkv or .webm), or a folder (an existing one, or a name "
                      "ending in /) to write INPUT_<command>.mp4 into. Default: next to the input, named "
                      "INPUT_<command>.mp4."),
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", rich_help_panel=_OUTPUT, help="Replace existing output files instead of stopping.")
]
def closed_stdout(what: str) -> str | None:
    """Why a command that prints `what` on stdout must not start: stdout is closed (`>&-`), and it would do all its
    work and print it nowhere. None while stdout is open."""
    return f"standard output is closed: there is nowhere to print {what}" if sys.stdout is None else None


def stdout_open(wanted: bool) -> bool:
    """--json's check (a typer callback): refused with stdout closed."""
    if wanted and (why := closed_stdout("the JSON")):
        raise typer.BadParameter(why)
    return wanted


Json = Annotated[
    bool,
    typer.Option(
        "--json", rich_help_panel=_OUTPUT, callback=stdout_open,
        help="Print one JSON object per output to stdout (the sidecar's content); messages go to stderr.",
    ),
]


def _word(text: str, word: str, kind: type) -> Any:
    """A delivery flag's value: a number, or its word for "as made" ("off", "model"), as delivery.word_value takes it."""
    if not isinstance(text, str):  # the default, already a value
        return text
    try:
        return word_value(text, word, kind)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def settings_flags(command):
    """Give `command` one flag per field of the settings class its keyword-only `settings` parameter names,
    in place of that parameter, and call it with the settings built (and checked) from them."""
    hints = typing.get_type_hints(command, include_extras=True)
    cls: type[RunSettings] = hints["settings"]
    fields = [f for f in dataclasses.fields(cls) if f.init]
    parameters = []
    for parameter in inspect.signature(command).parameters.values():
        if parameter.name == "settings":
            parameters += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                             annotation=_flag(f.name, cls)) for f in fields]
        else:
            parameters.append(parameter.replace(annotation=hints[parameter.name]))

    @functools.wraps(command)
    def run(**values):
        chosen = {f.name: values.pop(f.name) for f in fields}
        chosen = {k: tuple(v) if isinstance(v, list) else v for k, v in chosen.items()}  # repeatable flags: frozen
        return command(settings=cls(**chosen), **values)  # an InvalidSetting names its flag (flag_of) as it is said

    run.__signature__ = inspect.Signature(parameters)
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run


def flag_of(field: str) -> str:
    """The flag of a settings field as the command line's errors name it: its long name (`--range` for ranges,
    `--upscale` for upscale's --upscale/--no-upscale); `--field-name` for a field without a flag here."""
    info = typing.get_args(FLAGS[field])[1] if field in FLAGS else None
    # Inside Annotated, typer takes an Option's first name from where its default would go (`--range`).
    said = (getattr(info, "default", None), *(getattr(info, "param_decls", None) or ()))
    names = [name.split("/")[0] for name in said if isinstance(name, str) and name.startswith("--")]
    return names[0] if names else "--" + field.replace("_", "-")


def _overrides(cls: type[RunSettings]) -> str:
    """The flags of `cls` that set one field of the sampling settings over a preset's: "--sampler, --steps and
    --guidance" where the command has them, as --preset's help names them."""
    sampling = {f.name for f in dataclasses.fields(SamplingConfig)}
    flags = [flag_of(f.name) for f in dataclasses.fields(cls) if f.init and f.name in sampling]
    return " and ".join(filter(None, [", ".join(flags[:-1]), flags[-1]]))


def _flag(name: str, cls: type[RunSettings]) -> Any:
    """FLAGS[name] for the command of settings `cls`: its help naming that command's flags ({overrides}), its default
    said where it is None (NONE_MEANS), with the range of settings.LIMITS (shown in --help, refused by the parser)."""
    flag = FLAGS[name]
    kind, info = typing.get_args(flag)
    if name in NONE_MEANS and {f.name: f.default for f in dataclasses.fields(cls)}[name] is None:
        info = copy.copy(info)
        info.show_default = NONE_MEANS[name]
        flag = Annotated[kind, info]
    if "{overrides}" in (info.help or ""):
        info = copy.copy(info)
        info.help = info.help.format(overrides=_overrides(cls))
        flag = Annotated[kind, info]
    limit = LIMITS.get(name)
    if limit is None:
        return flag
    info = copy.copy(info)
    # a bound past any float's exact range (the seed's int64) would clutter typer's [x>=0] range: the help says it
    info.min, info.max = limit.low, limit.high if limit.high < 2**53 else None
    if info.max is None and not math.isinf(limit.high):
        info.help = f"{info.help} {at_most(limit.high)}"
    # The bounds are for --help only: with a parser typer leaves the range to the settings, whose check says why a
    # value is refused (typer's own would call nan "more than 0.75"), in the same words as a batch file's key.
    info.parser = functools.partial(_number, int if int in typing.get_args(kind) + (kind,) else float)
    return Annotated[kind, info]


def at_most(high: float) -> str:
    """A whole-number flag's upper bound in its help, where typer's [x>=0] leaves it out: `At most 2^63 - 1.` for a
    seed (its 19 digits would be cut short in a narrow panel)."""
    high = int(high)
    bits = (high + 1).bit_length() - 1
    return f"At most 2^{bits} - 1." if high + 1 == 2**bits else f"At most {high}."


def whole_number(text: str) -> Any:
    """The parser of a ranged whole-number flag whose range is checked after parsing (finetune's config, generate's
    --batch-size), in every command's words: typer's own check says "Input should be greater than or equal to 1"."""
    return _number(int, text)


def a_number(text: str) -> Any:
    """The parser of a float flag whose range is checked after parsing (finetune's --lr, --lora-alpha), in every
    command's words: typer's own says "Input should be a valid number, unable to parse string as a number"."""
    return _number(float, text)


def _number(kind: type, text: str) -> Any:
    """A ranged flag's value as `kind`, unchecked: settings.LIMITS refuses what is out of range or not finite. Written
    as mmgen.config.NUMBER says, as in a YAML file: int() and float() alone take " 5", "1_000", "٥" too."""
    if not isinstance(text, str):  # the default, already a value
        return text
    try:
        return parse_number(text, kind)
    except NumberTooLong as e:
        raise typer.BadParameter(str(e)) from None
    except ValueError:
        raise typer.BadParameter(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
