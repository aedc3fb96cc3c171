"""The Typer application every subcommand module registers on, and the --debug switch every command takes."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import typer

from mmgen.runtime import torchrun
from mmgen.runtime.stuck_stops import answer_stuck_stops

app = typer.Typer(
    name="mmgen",
    help="Generate video with matching sound, give your clips a soundtrack, and fine-tune MM-Diffusion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

def _flags_show_no_value() -> None:
    """--help shows no value for a flag: typer 0.29's rich help gives every option its type, so a flag read
    `--debug <bool>`, as if it took one. Once, for every command (typer's own --help too)."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "flags_show_none", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.flags_show_none = True
    TyperOption.display_type_rich = display_type_rich


_flags_show_no_value()


def _help_tables_never_cut() -> None:
    """--help's option and command tables (typer's rich help) never cut a name: rich shrinks every column of a table
    too wide for the terminal, and cuts what no longer fits with `…` (`--lora-a…`, at 40 columns `--na…`), or folds
    a value's name mid-word (`<auto|fp32|fp16|bf16` over `>`). Each column but the description's is kept as wide as
    its longest word; where the terminal is too narrow for that beside a readable description, each option is its
    names on a line of their own and its description below, wrapped — in every panel of that --help alike, if any
    one of its tables is too wide (`_panels_laid_out_alike`): else animate's Sampling panel alone was stacked at 80
    columns between panels of columns. Once, for every table of every --help."""
    import typer.rich_utils
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    if getattr(typer.rich_utils.Table, "never_cuts", False):
        return
    if not all(hasattr(Table, name) for name in ("_measure_column", "_calculate_column_widths", "_extra_width")):
        return  # a rich whose table is built otherwise (these are its internals): its own layout, not a failing --help

    class HelpTable(Table):
        never_cuts = True
        narrowest_description = 24  # columns: below this a description beside its names reads a word a line

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.panels = _help_tables.get()  # the tables of the --help being printed, this one among them
            if self.panels is not None:
                self.panels.append(self)

        def _smallest(self, console, options) -> list[int]:
            return [self._measure_column(console, options, column).minimum for column in self.columns]

        def _fits(self, console, options) -> bool:
            smallest = self._smallest(console, options)
            described = max(smallest[-1], self.narrowest_description)
            return sum(smallest[:-1]) + described + self._extra_width <= options.max_width

        def _calculate_column_widths(self, console, options):
            widths = super()._calculate_column_widths(console, options)
            if len(widths) < 2:
                return widths
            smallest = self._smallest(console, options)
            for index in range(len(widths) - 1):  # a name or a value's name: never narrower than its longest word
                short = smallest[index] - widths[index]
                if short > 0:
                    widths[index] += short
                    widths[-1] -= short
            return widths

        def _laid_out_in_columns(self, console, options) -> bool:
            """Whether every table of its --help fits as columns (each panel is as wide as the others)."""
            return all(len(table.columns) < 2 or table._fits(console, options) for table in self.panels or [self])

        def __rich_console__(self, console, options):
            for column in self.columns:
                for cell in column._cells:
                    _folded(cell)
            if len(self.columns) < 2 or self._laid_out_in_columns(console, options):
                for column in self.columns:
                    column.overflow = "fold"
                yield from super().__rich_console__(console, options)
                return
            for row in range(self.row_count):  # too narrow for columns: names, then the description under them
                cells = [column._cells[row] for column in self.columns]
                names = Text(" ").join(cell if isinstance(cell, Text) else Text(str(cell)) for cell in cells[:-1]
                                       if str(cell).strip())
                names.overflow = "fold"
                yield names
                yield Padding(cells[-1], (0, 0, 0, 4))

    typer.rich_utils.Table = HelpTable


def _folded(cell) -> None:
    """A --help table's cell (a Text, or typer's Columns of them: an option's help, its default) whose words too long
    for the line are folded onto the next, not cut with `…`: the Columns lays each out in a grid of its own, whose
    column cuts (`(runs/finetune-<date>…` at 30 columns), whatever the table's column says."""
    from rich.text import Text

    for text in getattr(cell, "renderables", [cell]):
        if isinstance(text, Text):
            text.overflow = "fold"



def _help_set_up_on_first_use() -> None:
    """typer's rich help, set up as the first --help is rendered: its tables never cut a name (_help_tables_never_cut)
    and NO_COLOR is no escape at all (its console's COLOR_SYSTEM). Its module takes ~90 ms to import, which a
    command that shows no help (`models list`, `generate`, a refusal) need not pay as it starts."""
    import typer.core

    def set_up() -> None:
        import typer.rich_utils

        from mmgen.terminal import plain_wanted

        typer.rich_utils.COLOR_SYSTEM = None if plain_wanted() else "auto"
        _help_tables_never_cut()

    for command_class in (typer.core.TyperCommand, typer.core.TyperGroup):
        def format_help(self, ctx, formatter, shown=command_class.format_help):
            if not _shows_help():
                return None
            from mmgen.cli.options import closed_stdout
            from mmgen.errors import UsageError

            if why := closed_stdout("the help"):  # as --version and every command that only prints
                raise UsageError(why)
            set_up()
            with _panels_laid_out_alike():
                return shown(self, ctx, formatter)

        command_class.format_help = format_help


def _shows_help() -> bool:
    """Whether this process prints a help (--help, or `mmgen` alone): every process of a torchrun job parsed the one
    command line, so rank 0 alone prints it, as it alone says the line's mistakes (torchrun.says_command_line_errors)."""
    from mmgen.cli import command_named

    return torchrun.says_command_line_errors(command_named(arguments.get()))


_help_tables: ContextVar[list | None] = ContextVar("help_tables", default=None)  # of the --help being printed


@contextmanager
def _panels_laid_out_alike() -> Iterator[None]:
    """A --help whose panels are laid out alike: typer prints each panel as it builds it, so each table chose its
    layout alone (_help_tables_never_cut). Its console here holds what is printed until the last panel is built,
    then prints it all: each table, drawn then, knows every other of its --help (HelpTable.panels). The console is
    as wide as mmgen's tables' (`window_sized`: COLUMNS or the window on a dumb terminal too, where rich took 80),
    and each text it is given is what its stream can hold (`held_by`: … as ...) before it is measured: the boxes
    of an ASCII stream's help stay in line."""
    import typer.rich_utils

    from mmgen.held_text import held_by
    from mmgen.terminal_size import window_sized

    made, text_made = typer.rich_utils._get_rich_console, typer.rich_utils._make_rich_text
    held: list[tuple[object, tuple, dict]] = []
    encoding: list[str] = []  # the console's, once typer has made it (before any text)

    def holding(stderr: bool = False):
        console = made(stderr) if typer.rich_utils.MAX_WIDTH else window_sized(made(stderr))
        encoding[:] = [console.encoding]
        console.print = lambda *objects, printing=console.print, **options: held.append((printing, objects, options))
        return console

    def held_text(*, text: str, **options):
        return text_made(text=held_by(text, encoding[0] if encoding else None), **options)

    typer.rich_utils._get_rich_console, tables = holding, _help_tables.set([])
    typer.rich_utils._make_rich_text = held_text
    try:
        yield
    finally:
        typer.rich_utils._get_rich_console, typer.rich_utils._make_rich_text = made, text_made
        _help_tables.reset(tables)
    for printing, objects, options in held:
        printing(*objects, **options)


_help_set_up_on_first_use()

invoked: ContextVar[str | None] = ContextVar("invoked", default=None)  # the subcommand being run
arguments: ContextVar[tuple[str, ...]] = ContextVar("arguments", default=())  # the command line after `mmgen`
# What runs with an environment variable whose value means nothing: doctor, where a user goes to find out what is
# wrong, reports each one (mmgen.environment.problems); every other command is refused before it starts.
REPORTS_ENVIRONMENT = frozenset({"doctor"})


def debug_enabled() -> bool:
    """--debug or MMGEN_DEBUG=1. Never an error itself (it is asked while one is being reported): a value that
    means nothing is off here, and refused by the root callback (mmgen.environment.check)."""
    from mmgen import environment

    with environment.as_unset():
        return bool(environment.flag(environment.DEBUG))


def hide_library_warnings() -> None:
    """Python warnings (torch's UserWarnings, deprecations, ...) are for developers: without --debug they do not
    reach the user's terminal, where mmgen's own one-line errors and progress are all that should appear."""
    if debug_enabled():
        warnings.resetwarnings()
    else:
        warnings.simplefilter("ignore")


def _version(wanted: bool) -> None:
    """`mmgen --version`: the installed package's version (its metadata, as pip knows it), then exit 0; refused
    (exit 2) with stdout closed, as every command that only prints is."""
    if wanted:
        from importlib.metadata import PackageNotFoundError, version

        from mmgen import __version__
        from mmgen.cli.options import closed_stdout
        from mmgen.errors import UsageError

        if why := closed_stdout("the version"):
            raise UsageError(why)

        try:
            installed = version("mmgen")
        except PackageNotFoundError:  # run from a source tree that was never installed
            installed = __version__
        print(f"mmgen {installed}")
        raise typer.Exit()


def _debug(on: bool) -> None:
    """The --debug switch, taken before the subcommand (`mmgen --debug generate`) or anywhere after it (`mmgen
    generate … --debug`, `mmgen models list --debug`): the same option on every command (`command`)."""
    if on:
        os.environ["MMGEN_DEBUG"] = "1"  # and every process the command starts (torchrun's, a batch's)
        hide_library_warnings()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", callback=_debug, help="Show full tracebacks and library warnings on "
                               "errors (or set MMGEN_DEBUG=1); taken before or after the command."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print mmgen's version and exit."),
) -> None:
    from mmgen import environment

    shows_help = "--help" in arguments.get()  # `mmgen CMD --help` prints and runs nothing: no command, no settings
    invoked.set(None if shows_help else ctx.invoked_subcommand)
    if not shows_help:
        _check_working_folder()
        torchrun.check(ctx.invoked_subcommand)  # before torch loads: a bad job, or a command run once per process
        torchrun.follow_launcher()  # a torchrun process whose launcher was killed stops (SIGTERM), not an orphan
        answer_stuck_stops()  # a stop that a worker stuck in a collective cannot take ends it, with a line
    if not shows_help and ctx.invoked_subcommand not in REPORTS_ENVIRONMENT:
        environment.check()


def _check_working_folder() -> None:
    """MmgenError (exit 1: no input of the command's is wrong) if the current folder was removed: torch cannot load
    there (oneMKL's `FATAL ERROR: Cannot load libtorch_cpu.so`, exit 2, and nothing else said) and no relative path
    means anything. Every command is refused before it imports torch — doctor too, which would die loading it."""
    from mmgen.errors import MmgenError

    try:
        os.getcwd()
    except FileNotFoundError:
        raise MmgenError("the current folder no longer exists", hint="cd to an existing folder") from None


def command():
    """The `mmgen` command as click runs it, with the root's --debug on every subcommand too (not passed to it: the
    switch acts as it is parsed), so the advice "run with --debug" holds wherever it is added; and each subcommand's
    line in its group's list (`short_help`) and each paragraph of its own --help as one paragraph that the terminal
    wraps: typer's rich help keeps the line breaks of a docstring's first paragraph in the list (`mmgen models --help`
    broke "the weights file mmgen⏎ loads") and of every later one on the command's --help (animate's "lasts exactly
    as long as the⏎ input", a half-empty line at 80 columns)."""
    import copy

    root = typer.main.get_command(app)
    debug = next(param for param in root.params if param.name == "debug")

    def give(group) -> None:
        for sub in getattr(group, "commands", {}).values():
            sub.help = _one_line_paragraphs(sub.help)
            first = (sub.help or "").split("\n\n")[0]
            if sub.short_help is None and not first.startswith("\b"):  # \b: a paragraph kept as written
                sub.short_help = " ".join(first.split())
            if not any(param.name == "debug" for param in sub.params):
                switch = copy.copy(debug)
                switch.expose_value = False
                sub.params.append(switch)
            give(sub)

    give(root)
    return root


def _one_line_paragraphs(text: str | None) -> str | None:
    """A docstring's paragraphs, each on one line for the terminal to wrap; one marked \\b is kept as written."""
    if text is None:
        return None
    import inspect

    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)
