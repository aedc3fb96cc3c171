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


def test_bars_show_each_task_with_its_count():
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
