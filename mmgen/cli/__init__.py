"""The `mmgen` command. Subcommands live one per module; this file registers them and maps errors to
exit codes in one place: 0 done, 1 a failed job or anything unexpected, 2 bad usage or input (one line, no
traceback), 130 interrupted (Ctrl-C; 143 SIGTERM, 129 SIGHUP: mmgen.runtime.stop_signals), never 0.

Importing this package costs nothing (the standard library only): typer, torch and the subcommands load inside
`run`, so a Ctrl-C while they load is an interruption like any other, not a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import NoReturn

INTERRUPTED = 130  # the shell's code for "stopped by SIGINT" (SIGTERM, SIGHUP: 143, 129 — stop_signals.stop_code)
BROKEN_PIPE = 141  # the shell's code for "stopped by SIGPIPE": stdout's reader went away (`mmgen ... | head -1`)
stdout_dropped = False  # standard output failed: main() drops what it had yet to print (no second failure at exit)
WRITERS = ("generate", "soundtrack", "animate", "retake", "batch")  # commands whose stop line says what they kept
_began = False  # the command itself began (run): a stop from then on is said by its own line (say_interrupted)


def _register() -> None:
    """Import every subcommand module (one per command or group) so it registers itself on `app`."""
    import importlib
    import pkgutil

    import mmgen.cli as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name not in ("app", "options"):
            importlib.import_module(f"mmgen.cli.{info.name}")


def command_named(argv: list[str] | tuple[str, ...] | None) -> str | None:
    """The command a command line names (its first word that is no option), before typer has parsed it."""
    return next((str(a) for a in (sys.argv[1:] if argv is None else argv) if not str(a).startswith("-")), None)


def nothing_kept(command: str | None, by: str = "") -> str:
    """The stop line of a command that kept nothing: one that writes outputs says it wrote none, whenever the stop
    landed (while mmgen loads, too); another says only that it was stopped. `by`: stop_signals.stop_name."""
    return f"interrupted{by}; nothing written" if command in WRITERS else f"interrupted{by}"


@contextlib.contextmanager
def notes_on_stderr() -> Iterator[None]:
    """While a command runs, mmgen's notes (warnings on the `mmgen` logger, mmgen.media.notes) are lines on its
    stderr (the one of the moment: a test's own), as they are, and only there (a program embedding `run` that set
    up logging got each twice): the package gives a library caller's notes to its logging setup only (a NullHandler),
    never to stderr."""
    handler = _StderrLines(logging.WARNING)
    logger = logging.getLogger("mmgen")
    logger.addHandler(handler)
    propagates, logger.propagate = logger.propagate, False  # said once: not again by a program's own logging setup
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagates


@contextlib.contextmanager
def environment_kept() -> Iterator[None]:
    """mmgen's own environment variables (MMGEN_*) as they were before the block, whatever it set or unset: a
    command may set one for what it starts (--debug's MMGEN_DEBUG=1, for torchrun's and a batch's processes), but a
    program embedding `run` is not left with it (every later run printed tracebacks)."""
    before = {key: value for key, value in os.environ.items() if key.startswith("MMGEN_")}
    try:
        yield
    finally:
        for key in [key for key in os.environ if key.startswith("MMGEN_") and key not in before]:
            del os.environ[key]
        os.environ.update(before)


class _StderrLines(logging.StreamHandler):
    """A StreamHandler writing each message, as it is, to sys.stderr as it is when the message comes."""

    def __init__(self, level: int):
        logging.Handler.__init__(self, level)  # no stream of its own

    @property
    def stream(self):
        return sys.stderr


def _error(message: str) -> None:
    from mmgen.terminal import say

    say(f"mmgen: error: {message}")


def _rank() -> int:
    """This process's rank in the torchrun job the environment describes (0: the main one, or no torchrun)."""
    from mmgen.runtime.torchrun import rank

    return rank()


def run(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code (for tests and embedding). While it runs, SIGTERM and
    SIGHUP stop it as Ctrl-C does (mmgen.runtime.stop_signals), and libraries' warnings are hidden (without --debug:
    hide_library_warnings); a program embedding it has its own warnings filters and mmgen's environment variables
    back as it returns (--debug sets MMGEN_DEBUG for the processes the command starts: environment_kept). A COLUMNS
    or LINES that holds no size (COLUMNS=0) is unset while it runs, one out of range brought within it
    (terminal_size.usable_size)."""
    from mmgen.errors import command_line_words
    from mmgen.runtime.stop_signals import stop_code, stop_name, stopped, stops_interrupt
    from mmgen.terminal_size import usable_size

    global _began
    _began = False
    try:
        with (stops_interrupt(), notes_on_stderr(), command_line_words(), warnings.catch_warnings(),
              environment_kept(), usable_size()):
            return _run(argv)
    except KeyboardInterrupt:  # while importing, or outside any command
        pass
    except Exception as e:  # mmgen could not start (or a module whose import a stop cut short, failing again)
        if not stopped():
            return _start_failed(e, argv)
    code = stop_code()
    if _began:  # as the command ended: its own line, naming what it kept
        _say_stopped(code)
        return code
    if says_early_stop(command_named(argv)):
        from mmgen.terminal import say

        say(f"mmgen: {nothing_kept(command_named(argv), stop_name(code))}")
    return code


def says_early_stop(command: str | None) -> bool:
    """Whether this process says a stop that came before its command began (while mmgen loads): under torchrun every
    process is stopped alike and began nothing of its own, so rank 0 alone says it, as a refusal of the one command
    line they all parse (torchrun.says_command_line_errors), not once per process."""
    from mmgen.runtime.torchrun import says_command_line_errors

    return says_command_line_errors(command)


def _start_failed(e: Exception, argv: list[str] | None) -> int:
    """mmgen could not start: loading its commands (their modules, the libraries they import) failed before any
    command ran — the machine out of memory, a broken install. One line as every failure (disk_failures.
    resource_failure's for memory or open files), exit 1 (an MmgenError: its own); the traceback with --debug only.
    Nothing here imports typer or a command's module again: they may be what failed."""
    from mmgen import environment
    from mmgen.disk_failures import resource_failure
    from mmgen.errors import MmgenError, command_line_words
    from mmgen.runtime.torch_import import torch_failed

    with environment.as_unset():
        debug = "--debug" in (sys.argv[1:] if argv is None else map(str, argv)) or bool(
            environment.flag(environment.DEBUG))
    if debug:
        import traceback

        traceback.print_exception(e)
    with command_line_words():  # its hint names flags (it is said after the command line's block has ended)
        e = resource_failure(e) or torch_failed(e) or e
    if isinstance(e, MmgenError):
        _error(str(e))
        return e.exit_code
    _error(f"mmgen could not start: {e.__class__.__name__}: {e}"
           + ("" if debug else " (run with --debug for the traceback)"))
    return 1


def _run(argv: list[str] | None) -> int:
    from mmgen.cli._interrupted import finished_outputs, say_interrupted
    from mmgen.cli.app import arguments, command, debug_enabled, hide_library_warnings
    from mmgen.media.notes import held_back, one_call
    from mmgen.runtime.stop_signals import check_stop, is_stop_code, stop_code, stopped

    hide_library_warnings()
    _register()
    check_stop()  # torch and the rest imported: a stop that an import swallowed ends the command before it begins
    import typer

    from mmgen.terminal import guarded_streams

    arguments.set(tuple(sys.argv[1:] if argv is None else map(str, argv)))
    global _began
    _began = True
    with finished_outputs(), guarded_streams() as stdout:
        try:
            # With standalone_mode=False, typer RETURNS the code of a typer.Exit instead of raising it — and it
            # turns a KeyboardInterrupt inside a command into Exit(130). A command's own return value is None.
            # each note said once in the command; one alike for each file written, as the command ends
            with one_call(), held_back():
                code = command()(args=argv, prog_name="mmgen", standalone_mode=False)
                if code == 0 and (flag := _shown_in_a_job(arguments.get())):
                    from mmgen.train.settings_agreement import shown_instead

                    code = shown_instead(flag)  # the others, given a run, wait at the agreement for this process
            if stdout is not None and not stopped():  # what is still held or buffered: one write, whose failure is
                stdout.release()  # the command's, not at exit; a stopped one's goes nowhere (drop_unprinted)
        except SystemExit:
            # click's answer to EPIPE (and rich's, printing --help) is an exit 1 without a word
            if stdout is None or stdout.failed is None:
                raise
            return _stdout_failed(stdout.failed)
        except (KeyboardInterrupt, typer.Abort):  # Abort: click's answer to a KeyboardInterrupt inside a command
            code = stop_code()
        except Exception as e:
            if debug_enabled():
                import traceback  # here: importing it is a few ms of the window before main() takes signals

                traceback.print_exc()
            if stdout is not None and stdout.failed is not None and not stopped():
                return _stdout_failed(stdout.failed)
            if not stopped():
                if stdout is not None:
                    with contextlib.suppress(OSError):  # what it printed before it failed (the help `mmgen models`
                        stdout.release()  # alone prints), then why it failed, whether or not that could be written
                return _failed(e)
            code = stop_code()  # whatever a stop broke on its way out (stop_signals.stopped)
    code = code if isinstance(code, int) else 0
    if code == INTERRUPTED or (code == 0 and stopped()):  # typer's Exit(130) for a KeyboardInterrupt, or a stop
        code = stop_code()  # that a library swallowed (a bare `except:` around an import): never 0
    if is_stop_code(code):  # what stdout still holds goes nowhere (drop_unprinted): said so
        say_interrupted(code, unprinted=stdout is not None and bool(stdout.held))
    return code


def _shown_in_a_job(words: tuple[str, ...]) -> str | None:
    """The --help or --version a process of a torchrun job printed (rank 0 alone prints it) instead of a command
    whose processes agree on their settings before they join (torchrun.AGREED); None otherwise."""
    from mmgen.errors import MmgenError
    from mmgen.runtime import torchrun

    flag = next((word for word in words if word in ("--help", "--version")), None)
    if flag is None or command_named(words) not in torchrun.AGREED:
        return None
    try:
        return flag if torchrun.place()[1] > 1 else None
    except MmgenError:  # the job's variables make no sense: its own refusal, elsewhere
        return None


def _stdout_failed(e: OSError) -> int:
    """A command whose standard output could not be written (mmgen.terminal.GuardedStream). Its reader went away
    (EPIPE): 141, as the shell's SIGPIPE; said only by a command that was doing work (`generate --json | head -1`:
    naming the outputs it kept, as a stop does); one that only prints (--help, `models list`) ends quietly, as `yes |
    head` does.
    Anything else (a full disk, an I/O error): exit 1 and why. What it had yet to print is dropped at exit."""
    from mmgen.cli._interrupted import stdout_failed_line

    global stdout_dropped
    stdout_dropped = True
    if line := stdout_failed_line(e):
        _error(line)
    return BROKEN_PIPE if e.errno == errno.EPIPE else 1


def _failed(e: Exception) -> int:
    """Say why a command failed, in one line; its exit code: 2 bad usage or input, 1 anything unexpected."""
    import typer

    from mmgen.cli._interrupted import failed_line
    from mmgen.cli.app import arguments
    from mmgen.cli.options import flag_of
    from mmgen.disk_failures import name_too_long, resource_failure
    from mmgen.errors import InvalidSetting, MmgenError
    from mmgen.runtime.torch_import import torch_failed
    from mmgen.runtime.torchrun import leave_the_word_to_rank_0, says_command_line_errors

    if (resource := resource_failure(e)) is not None:  # the machine's memory or open files ran out, whatever raised
        resource.every_process = getattr(e, "every_process", False)  # it: one line, said where e's would be
        e = resource
    e = torch_failed(e) or e  # a torch that is not installed, or fails to import: said so, with how to install it
    if isinstance(e, MmgenError):
        _said_once(e, lambda: e.said_as(flag_of(e.field)) if isinstance(e, InvalidSetting) else failed_line(e))
        return e.exit_code
    if isinstance(e, typer.BadParameter) and type(e) is typer.BadParameter and (name := _option_name(e.param)):
        message = e.message.removeprefix("Value error, ")  # typer's words before a choice's refusal
        _command_line_error(f"{name}: {message}")  # "--steps: expected an integer, got '1e3'", as LIMITS speak
        return 2
    if type(e).__name__ == "NoArgsIsHelpError":  # `mmgen`, `mmgen models` alone: the help is printed (stdout), no
        if not says_command_line_errors(command_named(arguments.get())):
            leave_the_word_to_rank_0()  # rank 0 prints the help
        return 2  # error line to say (its message is empty); exit 2, as click ≥8.2 and typer give a command missing
    if isinstance(e, typer.TyperException):  # typer ≥0.28 vendors click: its usage errors (BadParameter,
        from mmgen.cli.usage_hints import refusal  # NoSuchOption, NoSuchCommand, ...) derive from

        _command_line_error(refusal(e))
        return 2  # TyperException; exit 2
    if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:  # a path given to any option or argument
        _said_once(e, lambda: str(name_too_long(e)))
        return 2
    from mmgen.cli.app import debug_enabled

    hint = "" if debug_enabled() else " (run with --debug for the traceback)"
    _said_once(e, lambda: f"{e.__class__.__name__}: {e}{hint}")
    return 1


def _said_once(e: Exception, line: Callable[[], str]) -> None:
    """Say the line of the error a command failed with — but one that every process of a torchrun job met alike
    (MmgenError.every_process; or any error one process met and shared, processes.gather_or_fail) is rank 0's alone
    to say, as a single process would."""
    from mmgen.runtime.torchrun import leave_the_word_to_rank_0

    if getattr(e, "every_process", False) and _rank() != 0:
        leave_the_word_to_rank_0()
    else:
        _error(line())


def _command_line_error(message: str) -> None:
    """A refusal of the command line itself (typer's and click's usage errors): under torchrun said by rank 0 alone,
    as every process parsed the same line (torchrun.says_command_line_errors). A command whose processes agree on
    their settings before they join hands it to rank 0 there: another rank's command line may have been refused
    alone (a launcher script's `--steps abc` for rank 1), and rank 0 waited for it at the agreement."""
    from mmgen.cli.app import arguments
    from mmgen.runtime.torchrun import AGREED, leave_the_word_to_rank_0, says_command_line_errors

    command = command_named(arguments.get())
    if says_command_line_errors(command):
        _error(message)
    elif command in AGREED:
        from mmgen.errors import UsageError
        from mmgen.train.settings_agreement import hand_over

        leave_the_word_to_rank_0(lambda: hand_over(UsageError(message)))
    else:
        leave_the_word_to_rank_0()


def _option_name(param: object) -> str | None:
    """How an option's refusal names it, as mmgen's own checks do: its long name (--num, not '--num' / '-n');
    None for an argument, whose refusal keeps typer's words."""
    if getattr(param, "param_type_name", None) != "option":
        return None
    names = list(getattr(param, "opts", ()))
    return next((n for n in names if n.startswith("--")), names[0] if names else None)


def main() -> None:
    """The `mmgen` process (run by mmgen.entry, the entry point of the console script and of `python -m mmgen`): it
    is mmgen's own, so it may set what PyTorch reads from the environment before torch loads — which a library
    import must not do to its host — and own its signals through interpreter shutdown: a stop after the command
    ended is then recorded, never a traceback from an atexit handler, and makes its exit 0 the stop's code
    (stop_signals.own_process)."""
    hold_standard_descriptors()
    # A stop from here on is recorded, and stops the command as it begins (stops_interrupt). The console script's
    # entry point (mmgen.entry) did this before it imported this module: own_process then does nothing.
    try:
        from mmgen.runtime.stop_signals import drop_unprinted, final_code, is_stop_code, own_process

        own_process(_say_stopped)
    except KeyboardInterrupt:  # a Ctrl-C before the handlers were in place (Python's own raises it)
        stopped_while_starting()
    from mmgen.runtime.memory import keep_freed_memory, use_huge_pages  # stdlib only (ctypes): no torch

    use_huge_pages()
    keep_freed_memory()
    code = final_code(run(), _say_stopped)
    if is_stop_code(code) or stdout_dropped:  # what it had yet to print waits for no reader (a --json line to a full
        drop_unprinted()  # pipe), nor fails again at exit (a full disk)
    sys.exit(code)


def stopped_while_starting() -> NoReturn:
    """The `mmgen` process was stopped before it took its stop signals (Python's own handler raised
    KeyboardInterrupt): the line of a stop while mmgen loads, and exit 130."""
    if says_early_stop(command_named(None)):
        sys.stderr.write(f"mmgen: {nothing_kept(command_named(None))}\n")
    sys.exit(INTERRUPTED)


def hold_standard_descriptors() -> None:
    """A standard stream its caller closed (`2>&-`) is opened on /dev/null, before mmgen opens any file: else the
    next file opened (an output being written) takes that number, and whatever writes to the stream — FFmpeg's or
    oneDNN's own messages, a child process — writes into that file. (Python leaves sys.stderr None for it; so does
    this: mmgen prints nothing to a stream its caller closed.)"""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            held = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            os.set_inheritable(held, True)


def _say_stopped(code: int) -> None:
    from mmgen.cli._interrupted import say_interrupted

    say_interrupted(code)
