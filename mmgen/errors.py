"""Typed errors: each carries the exit code and one-line message the CLI prints (DESIGN §8)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from pathlib import Path

from mmgen.terminal import number_text


class MmgenError(Exception):
    """Anything mmgen reports to a user as one line. Exit code 1 unless a subclass says otherwise."""

    exit_code = 1
    # Raised alike by every process of a torchrun job — about what they share (the batch file, the output folder):
    # only rank 0 says it, as a single process would, instead of one line per process (mmgen.cli._failed).
    # Set on one error, or on any raised in a block (`alike_in_every_process`).
    every_process = False

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class StorageError(MmgenError):
    """The disk failed under a write (full, over quota, file too large, an I/O error), or an output folder was
    replaced while the command ran: not the user's input, so exit code 1 (mmgen.disk_failures.write_failure)."""


class FolderReplaced(StorageError):
    """An output folder was replaced (moved away, a link put at its name) while the command wrote into it: it stops
    before writing anything through that name (mmgen.output_folders.same_folders). `folder`: the folder (absolute);
    `went`: where the outputs finished in it are now ("went with it"), and `then` what the line says after naming
    them (instead of the hint, which says where they went). `what`: what became of the folder, without what the
    command did then (`od is no longer there (…)`): a stop's line says it (the message, unless given)."""

    def __init__(self, message: str, hint: str, folder: Path, went: str, then: str, what: str | None = None):
        super().__init__(message, hint)
        self.folder, self.went, self.then, self.what = folder, went, then, what or message


class ResourceError(MmgenError):
    """The machine ran short of what the command needed — memory, or files it may have open at once — not the user's
    input: exit 1 (mmgen.disk_failures.resource_failure)."""


class PeerEnded(ResourceError):
    """A collective operation of a torchrun job (a gradient's sum, a barrier) failed because another process of the job
    ended — killed, or failed with its own line — stopped answering, or the backend failed between them (torch's
    DistBackendError): exit 1 (mmgen.runtime.collective_failures)."""


class UsageError(MmgenError):
    """Bad usage or bad input: exit code 2."""

    exit_code = 2


class InvalidSetting(UsageError, ValueError):
    """A setting that cannot be taken (exit 2): outside its limits, or refused by a check that needs more than its
    value (an adapter not registered, a rate the output cannot store, a range past the clip's end). Its line names
    the setting by its field, as a batch file or a config says it (`sample_rate 10000: …`); the command line says
    the same line naming its flag (`said_as("--sample-rate")`): one error, each edge's words. A ValueError too, so
    YAML parsing (mmgen.yaml_files) reports it with the file and line."""

    def __init__(self, field: str, reason: str, value: object = None, hint: str | None = None):
        self.field = field
        self.reason = reason
        self.value = value  # as given, where the reason is about it: `adapter 1: no registered adapter …`
        super().__init__(self._named(field), hint)

    def _named(self, name: str) -> str:
        return f"{name}{'' if self.value is None else f' {number_text(self.value)}'}: {self.reason}"

    def said_as(self, name: str) -> str:
        """The whole line (hint and all) naming the setting `name` (a flag) instead of its field."""
        return str(MmgenError(self._named(name), self.hint))


class InvalidArgument(UsageError, TypeError, ValueError):
    """A Python API function (mmgen.pipelines: generate, soundtrack, animate, retake, plan_batch,
    run_batch; mmgen.train.finetune) called with an argument it
    cannot take — settings of another kind, an input that is no path, a batch size under 1 — refused as it is called
    (pipelines.arguments), in one line naming the function and the argument, not an AttributeError from deep inside
    the run. Exit 2; a TypeError and a ValueError too, as Python's own would be."""


class ConfigError(UsageError):
    """A YAML/JSON config or a dataclass field is invalid; the message names the file and field."""


class MediaError(UsageError):
    """A media file cannot be read or written as asked (missing, unreadable, no such stream, ...)."""


class ModelNotFound(UsageError):
    """No registry entry or file by that name, or its weights are not available offline."""


class ChecksumMismatch(UsageError):
    """Downloaded or cached bytes do not have the sha256 the registry promises."""


class WeightsMismatch(UsageError):
    """A state dict does not fit the architecture: missing, unexpected or mis-shaped keys."""


class OutputExists(UsageError):
    """An output would overwrite an existing file and --overwrite (overwrite=True) was not given. Unless it is
    given a hint of its own, its hint says how to ask for that in its reader's words: `pass overwrite=True to
    replace it` to a Python caller, `pass --overwrite …` while the command line runs (`command_line_words`)."""

    def __init__(self, message: str, hint: str | None = None):
        self.own_hint = hint
        super().__init__(message, hint)

    @property
    def hint(self) -> str:
        return self.own_hint or f"pass {in_callers_words('--overwrite', 'overwrite=True')} to replace it"

    @hint.setter
    def hint(self, value: str | None) -> None:
        self.own_hint = value


# The command line is running (mmgen.cli.run) in this context: errors name a setting by its flag. Per call, not per
# process: a command line run in one thread leaves a Python caller's words in another as they were (a new thread
# starts with this unset, as the Python API's own callers are).
_command_line: ContextVar[bool] = ContextVar("mmgen_command_line", default=False)


@contextmanager
def command_line_words() -> Iterator[None]:
    """While the command line runs, an error's hint names a setting as its flag (`--overwrite`), not as the Python
    API's argument (`overwrite=True`)."""
    token = _command_line.set(True)
    try:
        yield
    finally:
        _command_line.reset(token)


def in_callers_words(flag: str, argument: str, key: str | None = None) -> str:
    """A setting as its caller wrote it: `flag` while the command line runs (`--dtype`), else the Python argument or
    field (`dtype`) — or `key`, the batch file's words for it (`` `loudness: -16` ``), while a batch job runs
    (`settings_named_as_keys`): a batch's jobs take their settings from the file, not from flags."""
    if key is not None and _batch_keys.get():
        return key
    return flag if _command_line.get() else argument


# A batch job runs in this context: a setting that a batch file gives is named as its key (in_callers_words' `key`)
_batch_keys: ContextVar[bool] = ContextVar("mmgen_batch_keys", default=False)


def settings_named_as_keys() -> AbstractContextManager[None]:
    """In the block (a batch job running), a hint or note names a setting by its batch file key where it has one."""
    return _set(_batch_keys, True)


# What names the output of the call running, for a hint that says to name another: a batch job's key while a batch
# checks or runs it (`outputs_named_with`), else the command line's -o, else the Python argument of the pipeline
# call it is in (`output_argument`, which calls.pipeline_call sets: `output`, generate_files' `out_dir`, …).
_output_words: ContextVar[str | None] = ContextVar("mmgen_output_words", default=None)
_output_argument: ContextVar[str] = ContextVar("mmgen_output_argument", default="output")


@contextmanager
def _set(variable: ContextVar, value: object) -> Iterator[None]:
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def outputs_named_with(words: str) -> AbstractContextManager[None]:
    """In the block, an output is named by `words` (a batch: "the job's `name:`"), not by -o or a Python argument."""
    return _set(_output_words, words)


def output_argument(name: str) -> AbstractContextManager[None]:
    """In the block (a pipeline call of the Python API's), the caller named the output by the argument `name`."""
    return _set(_output_argument, name)


def output_named(value: object = None) -> str:
    """What names the output, in its caller's words: `-o`, `output=`, "the job's `name:`"; given a `value`, the output
    named that (`-o out.mp4`, `output='out.mp4'`)."""
    if (words := _output_words.get()) is not None:
        return words if value is None else f"{words} {value}"
    if _command_line.get():
        return "-o" if value is None else f"-o {value}"
    return f"{_output_argument.get()}=" + ("" if value is None else repr(str(value)))


@contextmanager
def alike_in_every_process() -> Iterator[None]:
    """An MmgenError raised in the block is about what every process of a torchrun job checks alike (the batch file
    each one plans, the run folder and the clips each one looks at): marked `every_process`, said once (rank 0)."""
    try:
        yield
    except MmgenError as e:
        if "every_process" not in vars(e):  # one marked as its process's own stays so (processes.gpu)
            e.every_process = True
        raise
