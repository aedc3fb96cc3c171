"""Every setting of a fine-tuning run, as one frozen dataclass parsed from layered YAML + command-line flags.

Layers, later ones winning: the run's own config.yaml (on --resume), a --config file, then the flags given
(`train.config_layers.run_config`). Each layer is validated on its own first, so an error names the file it came from; the merged
result is what RUN/config.yaml records. `init` (--from) and `model` (--scratch) exclude each other: a layer
that sets one clears the other from earlier layers, so `--from demo` overrides a recipe file's `model:` section.
Settings that can never train (a learning rate that is not a positive finite number, say) are refused here,
so a YAML file is checked exactly as a flag is. So are the settings only this machine can judge (the device,
the model to start from) and, on --resume, what the run trains (mmgen.train.run_checks): on the merged result,
with each error naming the file and key, or the flag, that the value came from (`Setting`). A relative path in a YAML file (`init:`,
`cache_dir:`) is read from that file's folder, one given as a flag from the current folder; both are recorded
absolute, so a run resumes from any folder.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_type_hints

from mmgen.adapters.spec import LoraSpec
from mmgen.config import ConfigProblems, FieldError, converted, from_dict, parse_number, unknown_keys
from mmgen.errors import ConfigError, UsageError
from mmgen.pipelines.settings import InvalidSetting, Limit, SeedLimit
from mmgen.runtime.device_names import check_device_name, check_precision_name
from mmgen.terminal import number_text
from mmgen.weights.registry import is_path

DEFAULT_MODEL = "demo"
DEFAULT_LORA_TARGETS = "attention+conv"
# Settings that mean something only beside another one: given without it they would be recorded and do nothing
# (`--lora-alpha 4` without --lora once started a whole-model run), so the merged settings refuse them.
NEEDS: dict[str, str] = {"lora_alpha": "lora_rank", "lora_targets": "lora_rank"}
# The ranges of the whole-number settings, checked (and worded) as a command's are (pipelines.settings.LIMITS):
# in a YAML file `FILE: key: must be at least 1, got 0`, as a flag `--flag: must be at least 1, got 0`.
LIMITS: dict[str, Limit] = {
    **{name: Limit(1) for name in ("steps", "batch_size", "sample_steps", "probe_clips", "log_every", "stride",
                                   "lora_rank", "keep_checkpoints")},  # the newest checkpoint is what --resume needs
    **{name: Limit(0) for name in ("warmup", "save_every", "sample_every", "num_workers",
                                   "probe_every")},
    "seed": SeedLimit(),
}
# The settings that name a file or folder, each with the test of whether a value does (`init` may be a model name).
PATH_KEYS: dict[str, Callable[[str], bool]] = {"init": is_path, "cache_dir": lambda value: True}
# The settings that name a folder mmgen makes (init names a file it reads): a file's value is refused where that
# folder would not be the one meant (written_paths.made_folder_refusal: `C:/clips` made a folder named `C:`).
MADE_FOLDER_KEYS = ("cache_dir",)


@dataclass(frozen=True)
class ArchitectureSpec:
    """The network trained from random initialisation (--scratch): an architecture and its config fields."""

    arch: Literal["mm-unet"] = "mm-unet"
    config: dict[str, Any] = field(
        default_factory=dict
    )  # MMUNetConfig fields; missing ones = released values

    def __post_init__(self):
        # Checked as it is built, from Python too (a FinetuneConfig is): `arch="sr-unet"` was an AttributeError deep
        # in the run, a config field it refuses a line said only once the run had begun.
        from mmgen.models.config import config_for

        _typed_fields(self)
        try:
            config_for(self.arch, self.config, "config")
        except FieldError as e:
            raise InvalidSetting("config", f"{e.field}: {e.reason}" if e.field else e.reason) from None


@dataclass(frozen=True)
class FinetuneConfig:
    """A run's settings. Defaults follow the official training recipe where it has one (AdamW-style Adam,
    lr 1e-4, no weight decay, EMA 0.9999, uniform timesteps, eps-MSE summed over the two modalities)."""

    # What to start from: a registry name / .safetensors path, or an architecture trained from scratch.
    init: str | None = None
    model: ArchitectureSpec | None = None

    # LoRA (--lora RANK): train low-rank adapters over the frozen `init` model instead of the whole network
    lora_rank: int | None = None
    lora_alpha: float | None = None  # the adapters' scale is alpha / rank; None = rank (scale 1)
    lora_targets: Literal["attention", "attention+conv", "all"] | None = None  # None = attention+conv

    # Data
    stride: int | None = None  # frames between the starts of consecutive clips of a file; None = clip length
    flip: bool = True  # random horizontal flip of the video (the soundtrack is unchanged)
    cache_dir: Path | None = None  # decoded-clip cache; None = <mmgen cache>/clips
    num_workers: int = 0  # DataLoader worker processes

    # Optimisation
    steps: int = 1000
    batch_size: int = 8  # global batch: split evenly over the processes of a torchrun job
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 0  # steps of linear learning-rate warm-up from 0
    lr_decay: Literal["constant", "cosine"] = "constant"  # after warm-up
    grad_clip: float | None = 1.0  # max global gradient norm; None or 0 = no clipping
    ema_decay: float = 0.9999
    loss_weights: dict[str, float] = field(default_factory=lambda: {"video": 1.0, "audio": 1.0})
    min_snr_gamma: float | None = None  # Min-SNR-γ loss weighting (Hang et al., 2023); None = plain eps-MSE
    x0_weight_cap: float | None = None  # high-noise steps weighted by their x0 error, min(1/SNR, cap); None = off
    timesteps: Literal["shared", "independent"] = "shared"  # independent: audio gets its own timestep
    seed: int = 0

    # Compute
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps (torchrun: cuda:LOCAL_RANK when CUDA is present)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16, any case; auto: as select_precision (bf16 on CPUs with it)
    gradient_checkpointing: bool = False

    # Outputs
    log_every: int = 10  # steps between log.jsonl lines
    save_every: int = 500  # steps between checkpoints (0: only at the end and on Ctrl-C)
    keep_checkpoints: int = 3  # newest checkpoints kept (at least 1); older ones are deleted
    sample_every: int = 500  # steps between preview clips in samples/ (0: never)
    sample_sampler: Literal["ddim", "ddpm", "dpm++"] = "ddim"
    sample_steps: int = 10
    probe_every: int | None = None  # steps between audio-visual probes (None: = sample_every; 0: never)
    probe_timesteps: tuple[int, ...] = (100, 300, 600)
    probe_clips: int = 8  # clips in the fixed probe batch (held out of training when the data allows)

    def __post_init__(self):
        _typed_fields(self)
        # the words checked as the settings classes check them (pipelines.settings): `device="gpu"` was built
        # without complaint; `precision="BF16"` is bf16. Whether the device is here is check_here's to say.
        object.__setattr__(self, "device", check_device_name(self.device))  # as recorded: `CPU` is cpu, as BF16 is bf16
        object.__setattr__(self, "precision", check_precision_name(self.precision))
        if self.init is not None and self.model is not None:
            raise InvalidSetting(
                "model", "set either init (a model to fine-tune) or model (an architecture to train from scratch)"
            )
        for name, limit in LIMITS.items():
            limit.check(name, getattr(self, name))
        if self.lora_rank is not None and self.model is not None:
            raise InvalidSetting("lora_rank", "LoRA adapts an existing model (--from), not one trained from scratch")
        numbers = {
            "lr": self.lr,
            "lora_alpha": self.lora_alpha,
            "weight_decay": self.weight_decay,
            "ema_decay": self.ema_decay,
            "grad_clip": self.grad_clip,
            "min_snr_gamma": self.min_snr_gamma,
            "x0_weight_cap": self.x0_weight_cap,
            **{f"betas[{i}]": b for i, b in enumerate(self.betas)},
            **{f"loss_weights.{k}": w for k, w in self.loss_weights.items()},
        }
        # Each refusal an InvalidSetting of its field: named by its key in a file, by its flag on the command line.
        for name, value in numbers.items():
            if value is not None and not math.isfinite(value):
                field_name, _, part = name.partition(".")
                raise InvalidSetting(field_name.split("[")[0], f"{part + ' ' if part else ''}must be a finite number, "
                                     f"got {value}")
        for name in ("lr", "lora_alpha", "min_snr_gamma", "x0_weight_cap"):
            if numbers[name] is not None and numbers[name] <= 0:
                raise InvalidSetting(name, f"must be positive, got {number_text(numbers[name])}")
        for name in ("weight_decay", "grad_clip"):
            if numbers[name] is not None and numbers[name] < 0:
                raise InvalidSetting(name, f"must not be negative, got {number_text(numbers[name])}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InvalidSetting("ema_decay", f"must be in [0, 1), got {number_text(self.ema_decay)}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise InvalidSetting("betas", f"must be in [0, 1), got {list(self.betas)}")
        weights = self.loss_weights
        if set(weights) - {"video", "audio"} or any(w < 0 for w in weights.values()):
            raise InvalidSetting("loss_weights", "takes non-negative weights for 'video' and 'audio'")
        if not any(weights.get(k, 1.0) > 0 for k in ("video", "audio")):
            raise InvalidSetting("loss_weights", "at least one of 'video' and 'audio' must be positive")
        if not self.probe_timesteps:
            raise InvalidSetting("probe_timesteps", "give at least one noise level (0..999); probe_every: 0 turns the "
                                 "probes off")
        if any(not 0 <= t < 1000 for t in self.probe_timesteps):
            raise InvalidSetting("probe_timesteps", "must lie in 0..999")
        if self.lora_rank is not None:
            self.lora  # noqa: B018 (checks rank, alpha and targets)

    @property
    def lora(self) -> LoraSpec | None:
        """The adapters to train, or None for a whole-network run."""
        if self.lora_rank is None:
            return None
        alpha = float(self.lora_rank if self.lora_alpha is None else self.lora_alpha)
        try:
            return LoraSpec(self.lora_rank, alpha, self.lora_targets or DEFAULT_LORA_TARGETS)
        except UsageError as e:
            raise ValueError(e.message) from None

    @property
    def probe_interval(self) -> int:
        return self.sample_every if self.probe_every is None else self.probe_every


def _typed_fields(settings: FinetuneConfig | ArchitectureSpec) -> None:
    """Each field of `settings` as the type (and words) its annotation gives, as a YAML key is read (and a command's
    settings are checked, pipelines.settings): 2.5 or True is no number of steps, '1e-4' no learning rate; a value
    it refuses is an InvalidSetting naming the field."""
    types = _field_types(type(settings))
    for name in settings.__dataclass_fields__:
        try:
            value = converted(types[name], getattr(settings, name), type(settings).__name__, name)
        except FieldError as e:
            raise InvalidSetting(e.field, e.reason) from None
        object.__setattr__(settings, name, value)


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """A settings class's field annotations, resolved (the module's annotations are strings), read once."""
    return get_type_hints(cls)


COMMAND_LINE = "command line"  # the layer of flags given now
_FLAGS = {"init": "--from", "lora_rank": "--lora", "model": "--scratch", "gradient_checkpointing": "--recompute"}  # options not named after their field
# Keys a YAML file may give a field by: its flag's name (`recompute: true`, as --recompute), besides the field's own.
KEY_ALIASES = {"recompute": "gradient_checkpointing"}


@dataclass(frozen=True)
class Setting:
    """Where a merged setting came from, as an error names it: a key in a YAML file, or a flag (also for a
    default, which only a flag can change)."""

    key: str
    file: str | None = None

    @classmethod
    def of(cls, key: str, layers: list[tuple[str, dict[str, Any]]]) -> Setting:
        where = next((where for where, data in reversed(layers) if key in data), COMMAND_LINE)
        return cls(key, None if where == COMMAND_LINE else where)

    @property
    def flag(self) -> str:
        return _FLAGS.get(self.key, "--" + self.key.replace("_", "-"))

    def __str__(self) -> str:
        return f"{self.file}: {self.key}" if self.file else self.flag

    def given(self, value: Any) -> str:
        """`FILE: key: value` or `--flag value`."""
        return f"{self} {number_text(value)}" if self.file is None else f"{self}: {number_text(value)}"

    def dropped(self, keep: Any = None) -> str:
        """How to take the setting back: drop the flag, or remove the key (or give it `keep`) in the file."""
        if self.file is None:
            return f"drop {self.flag}"
        return f"remove {self.key} from {self.file}" if keep is None else f"set {self.key}: {number_text(keep)} in {self.file}"


def resolve_config(layers: list[tuple[str, dict[str, Any]]], *, scratch: bool = False) -> FinetuneConfig:
    """Merge (where, mapping) layers into one config. `scratch` means --scratch was given: the result must
    then name an architecture. With neither init nor model, the default model is fine-tuned."""
    merged: dict[str, Any] = {}
    for where, data in layers:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
        if where != COMMAND_LINE:
            data = _keys_named(where, data)
            _every_field(data, where)
        _config(data, where, [(where, data)])  # errors name this layer's source
        if "init" in data and "model" not in data:
            merged.pop("model", None)
        if "model" in data and "init" not in data:
            merged.pop("init", None)
        merged.update(data)
    def setting(key: str) -> Setting:
        return Setting.of(key, layers)

    if scratch and merged.get("lora_rank") is not None:  # before the architecture: LoRA has nothing to adapt here
        raise UsageError(f"{setting('lora_rank').given(merged['lora_rank'])}: LoRA adapts an existing model, and "
                         "--scratch trains a new one", hint=f"fine-tune with --from MODEL, or {setting('lora_rank').dropped()}")
    for key, needed in NEEDS.items():
        if merged.get(key) is not None and merged.get(needed) is None:
            raise UsageError(f"{setting(key).given(merged[key])}: means something only with {Setting(needed).flag} "
                             f"({needed} in a YAML file), and that is not set",
                             hint=f"give {Setting(needed).flag}, or {setting(key).dropped()}")
    if scratch:
        merged["init"] = None
        if merged.get("model") is None:
            raise ConfigError(
                "--scratch needs the architecture: give --config FILE.yaml with a `model:` section "
                "(arch: mm-unet, config: {video_size: ..., ...})"
            )
    elif merged.get("init") is None and merged.get("model") is None:
        merged["init"] = DEFAULT_MODEL
    return _config(merged, " + ".join(where for where, _ in layers) or "finetune config", layers)


def _every_field(data: dict[str, Any], where: str) -> None:
    """A file's values that their fields refuse, each taken alone (its type, its range: `steps: 1_000`, `steps: 0`,
    `lr: abc`): more than one is ConfigProblems, every one of them said at once (three lines, as a batch file's
    problems are), not the first alone; one is said as from_dict says it (_config). Rules between two settings
    (`lora_rank` beside `model`) are the merged settings' (_config), the first one said."""
    hints = get_type_hints(FinetuneConfig)
    known = tuple(f.name for f in fields(FinetuneConfig) if f.init)
    unknown = sorted({str(key) for key in data} - set(known))
    problems = [f"{where}: {unknown_keys(unknown, known)}"] if unknown else []  # as from_dict says them
    for key, value in data.items():
        if key in hints:
            try:  # its type, then its range and rules (LIMITS, __post_init__) with every other setting a default
                FinetuneConfig(**{key: converted(hints[key], value, where, key, text=True)})
            except InvalidSetting as e:
                problems.append(e.said_as(f"{where}: {e.field}"))
            except ConfigError as e:
                problems.append(str(e))
    if len(problems) > 1:
        raise ConfigProblems(where, problems)


def _config(data: dict[str, Any], where: str, layers: list[tuple[str, dict[str, Any]]]) -> FinetuneConfig:
    """from_dict of FinetuneConfig, a setting it refuses (InvalidSetting) named where it was given (Setting.of):
    `--lr: must be positive, got 0.0` on the command line, `FILE: lr: must be positive, got 0.0` in a file."""
    try:
        return from_dict(FinetuneConfig, data, where)
    except ConfigError as e:
        refused = e.__cause__
        if not isinstance(refused, InvalidSetting) or refused.field not in FinetuneConfig.__dataclass_fields__:
            raise
        raise ConfigError(refused.said_as(str(Setting.of(refused.field, layers)))) from None


def _keys_named(where: str, data: dict[str, Any]) -> dict[str, Any]:
    """A file's layer by field names: an alias key (KEY_ALIASES) taken as its field (refused beside it); a key
    that is a flag's name but no field's (`lora:`, `from:`) refused with the key that flag sets."""
    fields = FinetuneConfig.__dataclass_fields__
    named = {}
    for key, value in data.items():
        field_name = KEY_ALIASES.get(key, key)
        if field_name != key and field_name in data:
            raise ConfigError(f"{where}: {key} and {field_name} are one setting: give one of them")
        if field_name != key:  # its value checked under the key it was given by
            value = converted(get_type_hints(FinetuneConfig)[field_name], value, where, key, text=True)
        if key not in fields and field_name == key:
            flag_of = {flag[2:]: name for name, flag in _FLAGS.items() if flag[2:] not in fields}
            if str(key) in flag_of:
                raise ConfigError(f"{where}: unknown key {key!r}: the key of --{key} is {flag_of[key]!r}")
        named[field_name] = value
    return named


def parse_loss_weights(text: str) -> dict[str, float]:
    """`video=1,audio=2` → {"video": 1.0, "audio": 2.0} (the --loss-weights flag)."""
    weights = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            weights[name.strip()] = parse_number(value, float)
        except ValueError:
            raise UsageError(f"--loss-weights: {part!r} is not NAME=NUMBER (e.g. video=1,audio=2)") from None
    return weights
