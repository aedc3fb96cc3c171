"""Where a fine-tuning run's settings come from, laid in order (mmgen.train.config resolves them): the run's own
config.yaml on --resume (its record read as what it did: RECORDED_AS), a --config file, then the flags given. A
relative path in a YAML file is read from that file's folder (a leading `~` as the home folder, as a batch file's:
written_paths.in_folder), one given as a flag from the current folder; both are recorded absolute, so a run resumes
from any folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgen.data.clip_folder import check_clip_folder
from mmgen.errors import ConfigError, UsageError
from mmgen.pipelines.settings import SeedLimit, seed_taken
from mmgen.presets import config_path
from mmgen.runtime import torchrun
from mmgen.terminal import say
from mmgen.train.config import (
    COMMAND_LINE,
    MADE_FOLDER_KEYS,
    NEEDS,
    PATH_KEYS,
    FinetuneConfig,
    Setting,
    resolve_config,
)
from mmgen.train.run_checks import check_here, check_run_folder, check_same_training
from mmgen.written_paths import TILDE_HINT, in_folder, made_folder_refusal, tilde_nulls
from mmgen.yaml_files import compose_yaml


def _no_run(run_dir: Path) -> UsageError:
    """Why `finetune -o RUN_DIR --resume` finds no run to resume (no config.yaml there): no folder at all, something
    else than a folder, or a folder of something else."""
    if not os.path.lexists(run_dir):
        return UsageError(f"{run_dir}: no such folder", hint="--resume continues the run in the folder -o names")
    if not run_dir.is_dir():
        from mmgen.output_checks import kind_of

        return UsageError(f"{run_dir} is {kind_of(run_dir)}, not a run folder",
                          hint="--resume continues the run in the folder -o names")
    return UsageError(f"{run_dir}: no config.yaml here: not an mmgen finetune run folder")


def run_config(
    run_dir: Path,
    *,
    resume: bool = False,
    scratch: bool = False,
    config_file: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    data_dir: Path | None = None,
) -> FinetuneConfig:
    """The settings of `mmgen finetune`: the run's own config.yaml when resuming it, then `config_file`, then
    `flags` (the options given on the command line, by field name). Given the clips to train on, `data_dir` (the
    command line), that folder is judged too, and the run folder of a single process (run_checks.check_run_folder),
    first of what only this machine can judge: before torch loads, for the device."""
    flags = {k: str(v) if isinstance(v, Path) else v for k, v in (flags or {}).items() if v is not None}
    if scratch and "init" in flags:
        raise UsageError("--from and --scratch exclude each other")
    if resume and (scratch or "init" in flags):
        raise UsageError("--resume continues the run's own model; drop --from/--scratch")
    flags = _absolute_paths(flags, Path.cwd().__truediv__)  # config.yaml keeps them: --resume may run from another folder
    layers = []
    from mmgen.train.run_folder import RunFolderLock, is_run_record  # (not loaded by --help)

    if resume:  # what a refused --resume needs to know, known before torch loads (cli.finetune)
        if torchrun.rank() == 0:  # rank 0 (runtime.processes.described, which loads torch): the others'
            # look may come after rank 0 took the folder for this very run (train.setup)
            RunFolderLock(run_dir).check_free()  # a run trains in it (or a new one took it, no config.yaml yet)
        if not (run_dir / "config.yaml").is_file():
            raise _no_run(run_dir)
        layers.append(_recorded_layer(run_dir / "config.yaml"))

    if config_file is not None:  # another run's record (`--config RUN/config.yaml`) is read as --resume reads it
        chosen = config_path(config_file)  # a bare name (`--config demo-train`) is a packaged recipe
        typed = os.fspath(config_file)  # a path named as typed in what is said of it (`./demo-train: …`): a Path
        shown = typed if Path(typed) == chosen else chosen  # drops the `./` that told it from a recipe's name
        layers.append(_recorded_layer(shown) if is_run_record(chosen) else load_layer(shown))
    layers.append((COMMAND_LINE, flags))
    config = resolve_config(layers, scratch=scratch)
    if data_dir is not None:
        # every process of a torchrun job alike: its refusal is said at their agreement (which loads torch, to hear
        # the others), before they join the process group and rank 0 makes the run folder
        check_clip_folder(data_dir)
        if torchrun.place()[1] == 1:  # a torchrun job's processes look at the run folder
            check_run_folder(data_dir, run_dir, config, resume)  # together, rank 0 holding it (train.setup)
    check_here(config, lambda key: Setting.of(key, layers), resume)
    if resume:
        check_same_training(run_dir, config, lambda key: Setting.of(key, layers))
    return config


def load_layer(path: str | Path, *, record: bool = False) -> tuple[str, dict[str, Any]]:
    """One YAML file as a layer, its paths read as a file writes them (written_paths.in_folder: relative ones from
    its folder, a leading `~` as the home folder); an empty file is an empty layer. A folder mmgen would make
    (MADE_FOLDER_KEYS) written as Windows writes it (`C:/clips`, `clips\\x`) or as a bare `~` (YAML's null) is refused,
    naming the key and file;
    a run's `record` holds its paths absolute, as they were made: read as they are."""
    data, node = compose_yaml(path)
    if tilde := tilde_nulls(node, () if record else MADE_FOLDER_KEYS):  # `cache_dir: ~` used the default cache
        key, line = next(iter(tilde.items()))
        raise ConfigError(f"{path}:{line}: {key}: {TILDE_HINT}")
    folder = Path(path).parent.resolve()
    for key in MADE_FOLDER_KEYS if isinstance(data, dict) and not record else ():
        if isinstance(written := data.get(key), str) and (refusal := made_folder_refusal(written, folder)):
            raise ConfigError(f"{path}: {key}: {refusal}")
    return str(path), {} if data is None else _absolute_paths(data, lambda written: in_folder(folder, written))


# Values that runs recorded before LIMITS refused them, read back as what they did, each with why (said in a note:
# the run's config.yaml is written again with the value read): `keep_checkpoints: 0` kept the newest checkpoint all
# the same; a seed past 2^32 - 1 seeded its generators with its low 32 bits.
RECORDED_AS: dict[str, tuple[Callable[[int], int], str]] = {
    "keep_checkpoints": (lambda kept: kept or 1, "it kept the newest checkpoint; keep_checkpoints is at least 1 now"),
    "seed": (lambda seed: seed_taken(seed) if seed > 0 else seed,
             f"what its generators took; seeds are 0..{SeedLimit.high} now"),
}


def _recorded_layer(path: str | Path) -> tuple[str, dict[str, Any]]:
    """A run's own config.yaml as a layer, resumed or reused (`--config RUN/config.yaml`). A run's record is always
    taken: runs recorded before NEEDS was checked hold settings that meant nothing in them (every whole-model run's
    `lora_targets: attention+conv`): dropped; values refused since (RECORDED_AS) are read as what they did, a note
    saying so (rank 0's); a `ran_on` key (where it last trained, as runs wrote it before that became a comment line)
    is no setting: skipped, the device and precision are picked again, once it is seen to be the record a run wrote
    (ran_on: [1, 2] was taken silently). A new --config file or flag is still refused, `ran_on` in it an unknown key."""
    from mmgen.train.run_folder import RAN_ON

    where, data = load_layer(path, record=True)
    if isinstance(data, dict):
        ran_on = data.get(RAN_ON, {})
        if not (isinstance(ran_on, dict) and set(ran_on) <= {"device", "precision"}
                and all(isinstance(value, str) for value in ran_on.values())):
            raise ConfigError(f"{where}: {RAN_ON}: {ran_on!r} is not the record a run writes ({RAN_ON}: with device: "
                              "and precision: words); remove it: --resume picks the device and precision again")
        data = {key: value for key, value in data.items()
                if key != RAN_ON and not (key in NEEDS and data.get(NEEDS[key]) is None)}
        for key, (read_as, why) in RECORDED_AS.items():
            value = data.get(key)
            if type(value) is int and read_as(value) != value:
                data[key] = read_as(value)
                if torchrun.rank() == 0:
                    say(f"note: {where}: {key} {value} is read as {data[key]} ({why})")
    return where, data


def _absolute_paths(layer: Any, read: Callable[[str], Path]) -> Any:
    """`layer` with the paths of its PATH_KEYS as `read` makes them absolute (what is not a mapping or not a
    string is left for from_dict to refuse)."""
    if not isinstance(layer, dict):
        return layer
    return {key: str(read(value)) if key in PATH_KEYS and isinstance(value, str) and PATH_KEYS[key](value)
            else value for key, value in layer.items()}
