"""Progress on a terminal: rich bars for clips and sampling steps; piped, plain lines (tests/test_cli_generate.py
checks those)."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import time

from mmgen_cli import TIMEOUT_S, mmgen_command, mmgen_env
from rich.console import Console

from mmgen.cli.progress import progress_display
from mmgen.pipelines.events import ProgressEvent

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours, cursor moves and line clears


def test_bars_show_each_task_with_its_count(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)  # which asks for plain lines, as TERM=dumb does
    monkeypatch.setenv("TERM", "xterm")
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=80)
    with progress_display(console) as show:
        show(ProgressEvent("clips", 0, 2))
        for step in range(1, 26):
            show(ProgressEvent("steps", step, 25))
        show(ProgressEvent("clips", 2, 2))
    drawn = ANSI.sub("", screen.getvalue())
    assert "clips" in drawn and "sampling" in drawn and "━" in drawn  # a labelled bar per task
    assert "25/25" in drawn and "2/2" in drawn  # with its count, drawn once more as the bars stop
    assert "clips: " not in drawn  # no plain lines on a terminal


def test_generate_on_a_terminal_draws_bars_and_ends_with_the_summary(tiny, tmp_path):
    controller, terminal = pty.openpty()
    command = mmgen_command("generate", "-m", tiny, "-n", "2", "--steps", "2", "-o", tmp_path / "out")
    env = {**mmgen_env(tmp_path), "COLUMNS": "100", "TERM": "xterm"}
    env.pop("NO_COLOR", None)  # which asks for plain lines
    with subprocess.Popen(command, env=env, stdin=terminal, stdout=terminal, stderr=terminal) as process:
        os.close(terminal)
        screen, deadline = b"", time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            if not select.select([controller], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the command exited
                break
            if not chunk:
                break
            screen += chunk
        assert process.wait(timeout=60) == 0, screen.decode(errors="replace")
    os.close(controller)
    text = ANSI.sub("", screen.decode(errors="replace"))
    assert "sampling" in text and "━" in text  # rich bars were drawn ...
    assert "clips: 1/2" not in text  # ... instead of the plain lines of a pipe
    assert "wrote " in text and "seed " in text  # and the summary stays on screen
    assert (tmp_path / "out" / "clip_0001.mp4").is_file()


def on_a_terminal(monkeypatch, *args, env: dict[str, str]) -> tuple[int, bytes]:
    """`mmgen ARGS` in this process with stdout and stderr on a pseudo-terminal: its exit code and what it drew."""
    from mmgen.cli import run

    controller, side = pty.openpty()
    screen = open(side, "w", encoding="utf-8", closefd=True)  # noqa: SIM115 (closed below, once read)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("sys.stdout", screen)
    monkeypatch.setattr("sys.stderr", screen)
    try:
        code = run([str(a) for a in args])
    finally:
        screen.flush()
        monkeypatch.undo()
        screen.close()
    drawn = b""
    while select.select([controller], [], [], 0.2)[0]:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(controller)
    return code, drawn


def test_no_color_on_a_terminal_is_plain_text_without_one_escape_sequence(tmp_path, monkeypatch):
    """NO_COLOR: an error drew the bars' cursor hide and show around its line, and tables their bold headers."""
    env = {**mmgen_env(tmp_path), "COLUMNS": "100", "TERM": "xterm", "NO_COLOR": "1"}
    code, drawn = on_a_terminal(monkeypatch, "generate", "-m", "ghost", "-o", tmp_path / "out", env=env)
    assert code == 2 and drawn == b"mmgen: error: unknown model 'ghost' (see `mmgen models list`)\r\n"


def test_no_color_on_a_terminal_draws_tables_without_bold(tmp_path, monkeypatch):
    env = {**mmgen_env(tmp_path), "COLUMNS": "100", "TERM": "xterm", "NO_COLOR": "1"}
    code, drawn = on_a_terminal(monkeypatch, "models", "list", env=env)
    assert code == 0 and b"demo" in drawn and b"\x1b" not in drawn, drawn
    code, drawn = on_a_terminal(monkeypatch, "generate", "--help", env=env)
    assert code == 0 and b"--steps" in drawn and b"\x1b" not in drawn, drawn


def test_a_json_line_printed_while_the_bars_show_stays_on_stdout(monkeypatch, capsys):
    """Rich sends stdout through the bars' console (stderr) while they show: `generate --json | jq` on a terminal
    got its lines on the terminal instead, now that each is printed as its clip is kept."""
    from mmgen.cli._results import print_json

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    screen = io.StringIO()
    with progress_display(Console(file=screen, force_terminal=True, width=80)) as show:
        show(ProgressEvent("clips", 0, 2))
        print_json({"mp4": "clip_0000.mp4"})
    assert capsys.readouterr().out == '{"mp4": "clip_0000.mp4"}\n' and "clip_0000" not in screen.getvalue()
