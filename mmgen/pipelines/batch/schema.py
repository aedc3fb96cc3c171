"""The batch file of `mmgen batch JOBS.yaml`, read into frozen dataclasses with EVERY problem found at once,
each with the line it is on — a user fixing a 300-job file should not have to run it once per typo.

    output_dir: out              # optional; default "outputs" (relative paths: to the YAML's folder)
    defaults: {steps: 25, ...}   # any job option (pipelines/settings.py), plus the batch-wide device and precision
    jobs:
      - kind: generate           # generate | soundtrack | animate | retake
        name: intro              # optional output name (a relative path without ".."; "{stem}" for globs)
        num: 2                   # options override the defaults
      - kind: soundtrack
        inputs: clips/*.mp4      # a glob (or `input:` one file)

Every key keeps its line: the file is read once, its data and each key's line together (key_lines.compose).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgen.adapters.use import AdapterUse
from mmgen.config import from_dict, nearest_key, unknown_keys, unquoted
from mmgen.errors import ConfigError, InvalidSetting, UsageError
from mmgen.pipelines.batch.key_lines import Lines, compose, from_anchor
from mmgen.pipelines.batch.older_folders import made_before, note_made_before
from mmgen.pipelines.settings import KINDS as SETTINGS
from mmgen.spelled_paths import as_found
from mmgen.weights.names import is_path
from mmgen.written_paths import TILDE_HINT, glob_in_folder, in_folder, made_folder_refusal


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


KINDS: tuple[str, ...] = tuple(SETTINGS)  # generate, soundtrack, animate, retake
DEFAULT_OUTPUT_DIR = "outputs"
BATCH_WIDE = ("device", "precision")  # one device for the whole batch, so each model loads once
BATCH_FLAGS = ("overwrite", "fail_fast", "dry_run", "json")  # `mmgen batch`'s own flags, which no file sets
# A job's options are its kind's settings fields (pipelines/settings.py), less the batch-wide ones.
KIND_OPTIONS: dict[str, tuple[str, ...]] = {
    kind: tuple(name for name in _fields(SETTINGS[kind]) if name not in BATCH_WIDE) for kind in KINDS
}
DEFAULT_KEYS = tuple(dict.fromkeys(name for cls in SETTINGS.values() for name in _fields(cls)))
JOB_KEYS = ("kind", "name", "input", "inputs")
TOP_KEYS = ("output_dir", "defaults", "jobs")
MAX_BATCH_OUTPUTS = 100_000  # clips one batch file may ask for, all jobs together (one job's `num` at most)


@dataclass(frozen=True)
class JobSpec:
    """One entry under `jobs:`, as written (options not yet merged with the defaults)."""

    index: int  # 1-based position under jobs:
    line: int
    kind: str
    options: Mapping[str, Any]  # the settings the job sets itself, each checked
    name: str | None = None
    input: Path | None = None  # read from the YAML's folder (written_paths.in_folder)
    inputs: str | None = None  # a glob pattern as written, `~` expanded (relative ones match from the YAML's folder)
    lines: Mapping[str, int] = dataclasses.field(default_factory=dict)  # line of each key, for later problems
    merged: Mapping[str, str] = dataclasses.field(default_factory=dict)  # where a key a `<<:` merged came from

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)

    def told(self, error: Exception, field: str | None = None) -> str:
        """`job N (kind): ERROR`, a problem found once its settings are taken together (a rule between two of them, a
        range past its input's end): the setting it names (`field`, else an InvalidSetting's) said, where a `<<:`
        merge gave it, as a single setting's check says it (Lines.said: `seed (from <<: *gen, line 6): …`)."""
        where, key = f"job {self.index} ({self.kind})", field or getattr(error, "field", None)
        return from_anchor(f"{where}: {error}", where, str(key), self.merged.get(key))


@dataclass(frozen=True)
class BatchFile:
    path: Path
    output_dir: Path
    defaults: Mapping[str, Any]  # the settings `defaults:` sets (each checked), device and precision included
    jobs: tuple[JobSpec, ...]
    default_lines: Mapping[str, int]
    problems: tuple[Problem, ...] = ()  # what reading it found wrong (read_batch_file)

    @property
    def plannable(self) -> bool:
        """Not where it sets the batch's device or precision wrongly: every job is planned for them."""
        return not any(problem.batch_wide for problem in self.problems)


@dataclass(frozen=True)
class Problem:
    line: int | None
    message: str
    batch_wide: bool = dataclasses.field(default=False, compare=False)  # about the batch's device or precision

    def describe(self, path: Path) -> str:
        return f"{path}:{self.line}: {self.message}" if self.line else f"{path}: {self.message}"


class BatchInvalid(ConfigError):
    """The batch file has problems; nothing was run. `problems` holds all of them, in line order."""

    def __init__(self, path: Path, problems: list[Problem]):
        self.path = path
        self.problems = sorted(set(problems), key=lambda p: (p.line or 0, p.message))
        count = len(self.problems)
        super().__init__(f"{path}: {count} problem{'s' if count != 1 else ''} found, nothing was run")

    def lines(self) -> list[str]:
        return [p.describe(self.path) for p in self.problems]


def read_batch_file(path: str | Path, problems: list[Problem], output_dir: Path | None = None) -> BatchFile:
    """Parse the batch file, appending every problem found to `problems`; the result holds what parsed.
    `output_dir` (the command's -o) overrides the file's own. The result's `problems` are those this read found."""
    path, before = Path(path), len(problems)
    data, lines = compose(path)
    folder = path.resolve().parent
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with `jobs:` (and optionally `defaults:`, `output_dir:`)")
    for key in data:
        if key not in TOP_KEYS:
            problems.append(Problem(lines.get((str(key),)), unknown_keys([key], TOP_KEYS)))

    if output_dir is None:
        written = data.get("output_dir", DEFAULT_OUTPUT_DIR)
        if not isinstance(written, str) or not written:
            tilde = f" ({TILDE_HINT})" if written is None else ""  # `output_dir: ~` is null, not the home folder
            problems.append(Problem(lines.get(("output_dir",)), f"output_dir: expected a folder, got {written!r}{tilde}"))
            written = DEFAULT_OUTPUT_DIR
        if refusal := made_folder_refusal(written, folder):  # a folder mmgen makes is named as meant, or not at all
            problems.append(Problem(lines.get(("output_dir",)), f"output_dir: {refusal}{made_before(folder, written)}"))
        output_dir = in_folder(folder, written)
        note_made_before(path, lines.get(("output_dir",)), folder, written)
    output_dir = as_found(output_dir)  # the folder there in another Unicode form (copied back from a Mac) is this one

    raw_defaults = data.get("defaults") or {}
    if not isinstance(raw_defaults, dict):
        problems.append(Problem(lines.get(("defaults",)), "defaults: expected a mapping of job options"))
        raw_defaults = {}
    for key in [k for k in raw_defaults if k not in DEFAULT_KEYS]:
        problems.append(Problem(lines.get(("defaults", str(key))), f"defaults: {_not_an_option(key, None, DEFAULT_KEYS)}"))
    known = _from_folder({k: v for k, v in raw_defaults.items() if k in DEFAULT_KEYS}, folder)
    defaults = _one_choice(_checked(known, ("defaults",), lines, problems, "defaults"), lines, problems)
    default_lines = {str(k): lines.get(("defaults", str(k)), 0) for k in raw_defaults}

    raw_jobs = data.get("jobs")
    jobs = []
    if not isinstance(raw_jobs, list) or not raw_jobs:
        said = "the list is empty: give at least one job" if raw_jobs == [] else "expected a list of jobs"
        problems.append(Problem(lines.get(("jobs",)), f"jobs: {said} (each with a `kind`)"))
    else:
        for i, raw in enumerate(raw_jobs):
            job = _job(i, raw, folder, lines, problems)
            if job is not None:
                jobs.append(job)
    _check_outputs(path, jobs, defaults)
    return BatchFile(path, output_dir, defaults, tuple(jobs), default_lines, tuple(problems[before:]))


def _check_outputs(path: Path, jobs: list[JobSpec], defaults: Mapping[str, Any]) -> None:
    """Refuse, before anything is planned, a file whose jobs ask for more than MAX_BATCH_OUTPUTS clips together
    (each generate job its `num`, each other job at least one): a few lines of merge keys (`<<: *job`) can repeat a
    `num: 100000` job tens of times, and planning them took gigabytes."""
    total = sum(job.options.get("num", defaults.get("num", 1)) if "num" in KIND_OPTIONS[job.kind] else 1
                for job in jobs)
    if total > MAX_BATCH_OUTPUTS:
        raise ConfigError(f"{path}: its jobs ask for {total:,} clips; at most {MAX_BATCH_OUTPUTS:,} in one batch "
                          "(split it into several files)")


def _job(i: int, raw: Any, folder: Path, lines: Lines, problems: list[Problem]) -> JobSpec | None:
    where, line = f"job {i + 1}", lines.get(("jobs", i))
    if not isinstance(raw, dict):
        problems.append(Problem(line, f"{where}: expected a mapping with a `kind`, got {raw!r}"))
        return None
    kind = raw.get("kind")
    if kind not in KINDS:
        message = "`kind` is missing" if kind is None else f"kind: {kind!r} is not one of {', '.join(KINDS)}"
        if kind is not None and (close := nearest_key(kind, KINDS)):
            message += f"; did you mean {close}?"
        problems.append(Problem(lines.get(("jobs", i, "kind"), line), f"{where}: {message}"))
        return None
    where = f"job {i + 1} ({kind})"
    key_lines = {str(k): lines.get(("jobs", i, str(k)), line) for k in raw}
    allowed = KIND_OPTIONS[kind]
    own_keys = JOB_KEYS if SETTINGS[kind].conditional else ("kind", "name")  # generate takes no input
    options = {}
    for key, value in raw.items():
        if key in JOB_KEYS:
            continue
        if key in allowed:
            options[key] = value
        else:
            problems.append(Problem(key_lines[str(key)], f"{where}: {_not_an_option(key, kind, (*own_keys, *allowed))}",
                                    batch_wide=str(key).lstrip("-").replace("-", "_") in BATCH_WIDE))
    parsed = _checked(_from_folder(options, folder), ("jobs", i), lines, problems, where)

    name = _string(raw, "name", where, key_lines, problems)
    input = _string(raw, "input", where, key_lines, problems)
    inputs = _string(raw, "inputs", where, key_lines, problems)
    given = {key: raw.get(key) is not None for key in ("input", "inputs")}  # given, even as something refused above
    if not SETTINGS[kind].conditional and any(given.values()):
        key = "input" if given["input"] else "inputs"
        problems.append(Problem(key_lines[key], f"{where}: generate jobs take no {key} (they start from noise)"))
    elif SETTINGS[kind].conditional and given["input"] == given["inputs"]:
        says = "both `input:` and `inputs:`" if given["input"] else "no `input:` (a file) or `inputs:` (a glob)"
        problems.append(Problem(line, f"{where}: give exactly one input; found {says}"))
    return JobSpec(
        index=i + 1,
        line=line,
        kind=kind,
        options=parsed,
        name=name,
        input=in_folder(folder, input) if input is not None else None,
        inputs=glob_in_folder(inputs) if inputs is not None else None,
        lines=key_lines,
        merged={str(k): lines.merged[at] for k in raw if (at := ("jobs", i, str(k))) in lines.merged},
    )


def _not_an_option(key: Any, kind: str | None, allowed: tuple[str, ...]) -> str:
    """Why `key`, which is none of `allowed`, is refused in a `kind` job (None: under defaults:), read as the field
    it names however it is spelled (`--guidance-scale`, `guidance-scale`: guidance_scale): a mistyped key offers the
    allowed one nearest to it; another job kind's option, a batch-wide one or a finetune setting says whose it is."""
    name = str(key).lstrip("-").replace("-", "_")
    if name not in allowed:
        if kind is not None and (users := _kinds_taking(name)):
            return f"{key!r} is not an option of {kind} jobs ({'it' if name == key else name} belongs to {users})"
        if kind is not None and name in BATCH_WIDE:
            return f"{key!r} is set for the whole batch ({name}: under defaults:, or --{name})"
        if name in BATCH_FLAGS:
            return f"{key!r} is a flag of `mmgen batch` (--{name.replace('_', '-')}), for the whole batch, not a key"
        if name == "batch_size":  # generate's flag before finetune's setting: a batch's generate job is what is meant
            return (f"{key!r} is generate's --batch-size, which a batch does not take: it samples a job's clips one at "
                    "a time, and each comes out the same")
        if name in _finetune_settings():
            return f"{key!r} is a setting of finetune, which a batch does not run (its jobs: {', '.join(KINDS)})"
    others = tuple(dict.fromkeys(o for names in KIND_OPTIONS.values() for o in names if o not in allowed))
    if kind is not None and nearest_key(key, allowed) is None and (other := nearest_key(key, others)):
        return f"{key!r} is not an option of {kind} jobs (did you mean {other}? it belongs to {_kinds_taking(other)})"
    return unknown_keys([key], allowed)


def _kinds_taking(name: str) -> str:
    """The job kinds whose option `name` is: "soundtrack, animate and retake jobs"; "" where none."""
    users = [kind for kind, names in KIND_OPTIONS.items() if name in names]
    return f"{' and '.join((', '.join(users[:-1]), users[-1])) if len(users) > 1 else users[0]} jobs" if users else ""


def _finetune_settings() -> tuple[str, ...]:
    from mmgen.train.config import (
        FinetuneConfig,  # here: only a batch file with a key it does not know reads it
    )

    return _fields(FinetuneConfig)


def _from_folder(options: dict, folder: Path) -> dict:
    """`options` with the files they name read as `input:`, `inputs:` and `output_dir:` are (written_paths.in_folder:
    a relative path from the batch file's `folder`, wherever the command runs; `~` as the home folder): a
    `.safetensors` model, and each adapter's FILE of FILE[:WEIGHT] (a registered name stays a name). Done before any
    value is checked, so that what a value means (is `x.safetensors:abc` a file, or a weight that is no number?) is
    decided by the files in `folder`."""
    resolved = dict(options)
    model = options.get("model")
    if isinstance(model, str) and is_path(model) and not Path(model).is_absolute():
        resolved["model"] = str(in_folder(folder, model))
    adapters = options.get("adapter")
    if isinstance(adapters, str):
        resolved["adapter"] = _adapter_from(adapters, folder)
    elif isinstance(adapters, list):
        resolved["adapter"] = [_adapter_from(a, folder) if isinstance(a, str) else a for a in adapters]
    return resolved


def _adapter_from(text: str, folder: Path) -> str:
    """An `adapter:` value with a relative FILE read from `folder`: FILE:WEIGHT, as planning has hashed it."""
    named = text.rpartition(":")[0]
    if not any(is_path(part) and not Path(part).is_absolute() for part in (text, named) if part):
        return text  # a registered adapter's name, or an absolute path
    within = str(in_folder(folder, text))
    try:
        use = AdapterUse.parse(within)
    except UsageError:
        return within  # the settings say what is wrong with it
    return f"{use.source}:{use.weight!r}"


def _one_choice(defaults: dict, lines: Lines, problems: list[Problem]) -> dict:
    """`defaults` less the switches of a choice it turns on more than one of (retake's `video:` and `audio:`),
    refused once here: no job inherits them, so only a job turning on both itself is refused, at its line."""
    for cls in SETTINGS.values():
        try:
            cls.check_choices(defaults)
        except InvalidSetting as e:
            group = next(group for group in cls.one_of if e.field in group)
            on = [key for key in group if defaults.get(key)]
            problems.append(Problem(lines.get(("defaults",)), f"defaults: {' and '.join(on)}: {e.reason} "
                                    f"(give one in defaults:, or each job its own)"))
            defaults = {k: v for k, v in defaults.items() if k not in group}
    return defaults


def _string(raw: dict, key: str, where: str, key_lines: dict[str, int], problems: list[Problem]) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, list) and key == "inputs":
        problems.append(Problem(key_lines[key], f"{where}: inputs: expected one glob pattern (e.g. clips/*.mp4), got "
                                f"a list; give a pattern that matches the files, or a job with `input:` for each"))
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(Problem(key_lines[key], f"{where}: {key}: expected a non-empty string, got {unquoted(value)}"))
        return None
    return value


def _checked(raw: dict, path: tuple, lines: Lines, problems: list[Problem], where: str) -> dict:
    """The settings in `raw` that are valid, each through the settings class that has it, as that class converts
    them (e.g. 1 → 1.0): all of a class's keys in one object where they are all taken (a file of 10,000 jobs built
    one for each key of every job), else one key at a time (so that every bad key is reported, and a bad one is
    left unset). Each field is converted and checked on its own, so keys taken together are taken one by one."""
    owner = {key: next(cls for cls in SETTINGS.values() if key in _fields(cls)) for key in raw}
    built: dict[type, Any] = {}
    for cls in dict.fromkeys(owner.values()):
        try:
            built[cls] = from_dict(cls, {k: v for k, v in raw.items() if owner[k] is cls}, where)
        except ConfigError:
            pass  # said key by key below
    good = {}
    for key, value in raw.items():
        if owner[key] in built:
            good[key] = getattr(built[owner[key]], key)
            continue
        try:
            good[key] = getattr(from_dict(owner[key], {key: value}, where), key)
        except ConfigError as e:
            problems.append(Problem(lines.get((*path, str(key)), lines.get(path)),
                                    lines.said((*path, str(key)), str(e), where), batch_wide=key in BATCH_WIDE))
    return good
