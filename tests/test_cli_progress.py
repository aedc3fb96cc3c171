"""Progress on a terminal: rich bars for clips and sampling steps; piped, plain lines (tests/test_cli_generate.py
checks those)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import termios
import threading

import pytest
from mmgen_cli import TIMEOUT_S, mmgen_env
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


def test_a_narrow_terminal_drops_the_bar_then_the_label_never_cutting_a_number(monkeypatch):
    """At 20 columns (`COLUMNS=20`) rich cut the count and the time left to `1…` and `0:…`: a row leaves out whole
    columns instead — the bar first (30 columns: label, count, time), then the label (20: count and time)."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    rows = {}
    for width in (20, 30):
        screen = io.StringIO()
        with progress_display(Console(file=screen, force_terminal=True, width=width)) as show:
            show(ProgressEvent("clips", 0, 2))
            for step in range(1, 13):
                show(ProgressEvent("steps", step, 25))
        drawn = ANSI.sub("", screen.getvalue()).replace("\r", "\n").splitlines()
        rows[width] = [re.sub(r"\d:\d\d:\d\d", "H:MM:SS", row).split() for row in drawn if row.strip()][-2:]
    assert "…" not in str(rows) and "━" not in str(rows), rows
    assert rows[30] == [["clips", "0/2", "-:--:--"], ["sampling", "12/25", "H:MM:SS"]], rows
    assert rows[20] == [["0/2", "-:--:--"], ["12/25", "H:MM:SS"]], rows


def test_a_line_printed_while_the_bars_show_stays_one_line(monkeypatch):
    """In a 40-column terminal a --json line printed while the bars ran came out folded at that width with real
    newlines (10 lines of invalid JSON), and a note on stderr had its file name split in two: each is one line, which
    the terminal wraps on screen only."""
    import json
    import sys

    from mmgen.cli._results import print_json
    from mmgen.terminal import say

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(sys, "stdout", Terminal())  # stdout on the terminal too: printed above the bars
    record = {"mp4": "o/clip_0000.mp4", "model": "demo", "model_sha256": "1f3e2458ede028be" * 4, "steps": 3}
    note = "note: a_very_long_recording_name_from_the_field_recorder.wav is read as mono"
    screen = io.StringIO()
    with progress_display(Console(file=screen, force_terminal=True, width=40)) as show:
        show(ProgressEvent("clips", 0, 1))
        print_json(record)
        say(note)
        show(ProgressEvent("clips", 1, 1))
    lines = ANSI.sub("", screen.getvalue()).replace("\r", "\n").splitlines()
    assert json.loads(next(line for line in lines if line.startswith("{"))) == record, lines
    assert note in lines, lines


def test_generate_on_a_terminal_draws_bars_and_ends_with_the_summary(tiny, tmp_path, monkeypatch):
    env = {**mmgen_env(tmp_path), "COLUMNS": "100", "TERM": "xterm"}
    env.pop("NO_COLOR", None)  # which asks for plain lines
    monkeypatch.delenv("NO_COLOR", raising=False)
    code, screen = on_a_terminal(
        monkeypatch, "generate", "-m", tiny, "-n", "2", "--steps", "2", "--no-previews", "-o", tmp_path / "out", env=env
    )
    text = ANSI.sub("", screen.decode(errors="replace"))
    assert code == 0, text
    assert "sampling" in text and "━" in text  # rich bars were drawn ...
    assert "clips: 1/2" not in text  # ... instead of the plain lines of a pipe
    assert "wrote " in text and "seed " in text  # and the summary stays on screen
    assert (tmp_path / "out" / "clip_0001.mp4").is_file()


def on_a_terminal(monkeypatch, *args, env: dict[str, str], columns: int = 0) -> tuple[int, bytes]:
    """`mmgen ARGS` in this process with stdout and stderr on a pseudo-terminal (`columns` wide, where given): its
    exit code and what it drew, read as it is drawn (a thread drains the terminal, so a command that draws more than
    its buffer holds goes on)."""
    from mmgen.cli import run

    controller, side = pty.openpty()
    if columns:
        fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    screen = open(side, "w", encoding="utf-8", closefd=True)  # noqa: SIM115 (closed below, once read)
    drawn: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other end is closed: all was read
                return
            if not chunk:
                return
            drawn.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
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
    reader.join(timeout=TIMEOUT_S)
    os.close(controller)
    return code, b"".join(drawn)


def test_no_color_on_a_terminal_is_plain_text_without_one_escape_sequence(tmp_path, monkeypatch):
    """NO_COLOR: an error drew the bars' cursor hide and show around its line, and tables their bold headers."""
    env = {**mmgen_env(tmp_path), "COLUMNS": "100", "TERM": "xterm", "NO_COLOR": "1"}
    code, drawn = on_a_terminal(monkeypatch, "generate", "-m", "ghost", "-o", tmp_path / "out", env=env)
    assert code == 2 and drawn == b"mmgen: error: unknown model 'ghost' (see `mmgen models list`)\r\n"


@pytest.mark.parametrize("told", ["the window", "COLUMNS"])
def test_a_dumb_terminal_is_as_wide_as_its_window(tmp_path, monkeypatch, told):
    """TERM=dumb (Emacs's M-x shell, often 200 wide): rich took 80 columns whatever the window was, and whatever
    COLUMNS said (Emacs sets it) unless LINES was set too: a table fit for 200 columns was a model a line."""
    for name in ("COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)
    env = {**mmgen_env(tmp_path), "TERM": "dumb", **({"COLUMNS": "200"} if told == "COLUMNS" else {})}
    code, drawn = on_a_terminal(monkeypatch, "models", "list", env=env, columns=200 if told == "the window" else 80)
    lines = drawn.decode().splitlines()
    assert code == 0 and any(line.startswith("│ demo ") and "1f3e2458ede0" in line for line in lines), drawn


@pytest.mark.parametrize(("window", "columns"), [(40, ""), (80, "200")])
def test_help_on_a_dumb_terminal_is_as_wide_as_its_window(tmp_path, monkeypatch, window, columns):
    """`TERM=dumb mmgen generate --help` was 80 columns wide whatever the window or COLUMNS said, as mmgen's tables
    were: in a 40-column window each box's lines wrapped into garbage. Its help is as wide as its tables."""
    for name in ("COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)
    env = {**mmgen_env(tmp_path), "TERM": "dumb", **({"COLUMNS": columns} if columns else {})}
    code, drawn = on_a_terminal(monkeypatch, "generate", "--help", env=env, columns=window)
    widths = {len(line) for line in drawn.decode().splitlines() if line.startswith("╭")}
    assert code == 0 and widths == {int(columns or window)}, drawn.decode()


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


def test_whether_a_stream_is_a_terminal_is_asked_one_way_everywhere():
    """terminal.is_tty answers for the bars' stdout as for the console's stream and the held stdout (progress.py had
    its own copy): by the stream's own isatty; none (a process started without stdout) or a closed one is no terminal."""
    from mmgen import terminal

    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as screen:
        assert terminal.is_tty(screen)
    os.close(leader)
    closed = io.StringIO()
    closed.close()
    assert not any(terminal.is_tty(stream) for stream in (None, closed, io.StringIO(), screen))


def test_the_training_bar_fits_80_columns_and_shows_the_loss_split_where_there_is_room(monkeypatch):
    """At 80 columns the bar's loss text with its video and audio parts pushed rich to cut the times short
    (`37/200 loss 0.0889 (video 0.0712, audio 0.0177) 0:00:… 0:02:32`): there it shows the loss alone."""
    from mmgen.cli._finetune_display import display
    from mmgen.train.events import TrainEvent

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    values = {"loss": 0.0889, "loss_video": 0.0712, "loss_audio": 0.0177, "clips_per_s": 1.0}
    drawn = {}
    for width in (80, 120):
        screen = io.StringIO()
        with display(Console(file=screen, force_terminal=True, width=width)) as show:
            show(TrainEvent("start", 0, 20000, message="fine-tuning"))
            show(TrainEvent("step", 12345, 20000, values=values))
        drawn[width] = ANSI.sub("", screen.getvalue()).replace("\r", "\n").splitlines()[-1]
    assert "…" not in drawn[80] and re.search(r" 12345/20000 loss 0\.0889 \d+:\d\d:\d\d \S+$", drawn[80]), drawn[80]
    assert " loss 0.0889 (video 0.0712, audio 0.0177) " in drawn[120] and "…" not in drawn[120]


def test_a_narrow_terminal_drops_the_training_bars_loss_then_its_time_taken_never_cutting_a_number(monkeypatch):
    """At 30 columns the training bar cut its count and times (` 120… loss 0.1234 0:00… -:--:…`): it leaves out
    whole columns as the sampling bars do — after the bar and the label, the loss, then the time taken."""
    from mmgen.cli._finetune_display import display
    from mmgen.train.events import TrainEvent

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    values = {"loss": 0.1234, "loss_video": 0.1, "loss_audio": 0.0234, "clips_per_s": 1.0}
    rows = {}
    for width in (24, 30, 40):
        screen = io.StringIO()
        with display(Console(file=screen, force_terminal=True, width=width)) as show:
            show(TrainEvent("start", 0, 1000, message="go"))
            show(TrainEvent("step", 120, 1000, values=values))
        last = ANSI.sub("", screen.getvalue()).replace("\r", "\n").splitlines()[-1]
        rows[width] = re.sub(r"\d:\d\d:\d\d", "H:MM:SS", last).split()
    assert "…" not in str(rows), rows
    assert rows[40] == ["120/1000", "loss", "0.1234", "H:MM:SS", "-:--:--"], rows
    assert rows[30] == ["120/1000", "H:MM:SS", "-:--:--"], rows
    assert rows[24] == ["120/1000", "-:--:--"], rows


def test_plain_lines_say_the_time_left_as_the_bar_does_once_it_is_known(capsys):
    """Piped, `windows: 2/4` had the count but no ETA, which the bar shows; and with rich's 30 s window a bar whose
    items take longer (a batch job, a training log step) never had one either."""
    from mmgen.cli.progress import PlainLines

    now = [0.0]
    show = PlainLines(clock=lambda: now[0])
    for done, seconds in ((0, 0), (1, 40), (2, 80), (4, 160)):
        now[0] = seconds
        show(ProgressEvent("windows", done, 4))
    assert capsys.readouterr().err.splitlines() == [  # none while one window gives no rate, nor once all are done
        "windows: 1/4", "windows: 2/4, ETA 0:01:20", "windows: 4/4"]
    for done, seconds in ((0, 200), (1, 250), (2, 300)):  # a count without a line (a batch's jobs): its job lines
        now[0] = seconds                                    # say the ETA themselves
        show.track(ProgressEvent("jobs", done, 3))
    assert (show.eta_of("jobs"), show.eta_of("clips"), capsys.readouterr().err) == (", ETA 0:00:50", "", "")


def test_the_plain_training_line_says_the_time_left(monkeypatch):
    """`finetune` in a log: `step 20/100  loss …  clips/s` had no ETA, which its bar shows."""
    from mmgen.cli._finetune_display import display
    from mmgen.train.events import TrainEvent

    now = [0.0]
    screen = io.StringIO()
    values = {"loss": 0.0889, "loss_video": 0.0712, "loss_audio": 0.0177, "clips_per_s": 1.0}
    with display(Console(file=screen, force_terminal=False, width=120, get_time=lambda: now[0])) as show:
        show(TrainEvent("start", 0, 100, message="fine-tuning"))
        for step in (10, 20):
            now[0] = step * 6.0  # 10 steps a minute
            show(TrainEvent("step", step, 100, values=values))
    lines = screen.getvalue().splitlines()
    assert lines[-2].startswith("step 10/100  loss 0.0889") and "ETA" not in lines[-2]
    assert lines[-1] == "step 20/100  loss 0.0889 (video 0.0712, audio 0.0177)  1.0 clips/s, ETA 0:08:00"


def test_plain_training_lines_are_a_few_however_many_log_steps_and_every_note_is_said(monkeypatch):
    """`finetune` in a log printed a line at every log step (`log_every: 1` over 100,000 steps: 100,000 lines), where
    the other commands' plain progress says a few (progress_bars.PlainPace): the first, each quarter, the last, and
    every 30 s. A note (a probe's av_gap, a preview written) is still said each time; log.jsonl has every step."""
    from mmgen.cli._finetune_display import display
    from mmgen.train.events import TrainEvent

    now = [0.0]
    screen = io.StringIO()
    values = {"loss": 0.5, "loss_video": 0.25, "loss_audio": 0.25, "clips_per_s": 100.0}
    with display(Console(file=screen, force_terminal=False, width=120, get_time=lambda: now[0])) as show:
        show(TrainEvent("start", 0, 1000, message="fine-tuning"))
        for step in range(1, 1001):
            now[0] = step * 0.01 + 5.0 * min(max(step - 400, 0), 10)  # steps 401-410 take 5 s each
            show(TrainEvent("step", step, 1000, values=values))
            if step % 300 == 0:
                show(TrainEvent("note", step, message=f"step {step}: av_gap +0.01000"))
    steps = [line.split("  ")[0] for line in screen.getvalue().splitlines() if line.startswith("step ")]
    assert steps == ["step 1/1000", "step 250/1000", "step 300: av_gap +0.01000",
                     "step 406/1000",  # 30 s after step 250's line
                     "step 500/1000", "step 600: av_gap +0.01000", "step 750/1000", "step 900: av_gap +0.01000",
                     "step 1000/1000"]


def test_plain_lines_are_a_few_however_many_windows_as_a_download_s_are(capsys):
    """In a log, 12 windows were 12 lines (a long clip's filled it): the first, each quarter, the last, and one at
    least every 30 s between them, as a download's plain lines are spaced (progress_bars.PlainPace)."""
    from mmgen.cli.progress import PlainLines

    now = [0.0]
    show = PlainLines(clock=lambda: now[0])
    for done in range(13):
        now[0] = done * 2.0
        show(ProgressEvent("windows", done, 12))
    said = [line.split(",")[0] for line in capsys.readouterr().err.splitlines()]
    assert said == ["windows: 1/12", "windows: 3/12", "windows: 6/12", "windows: 9/12", "windows: 12/12"]
    for done in range(13):  # the next clip's windows, each 20 s: a line at least every 30 s as well
        now[0] = 100.0 + done * 20.0
        show(ProgressEvent("windows", done, 12))
    said = [line.split(",")[0] for line in capsys.readouterr().err.splitlines()]
    assert said == ["windows: 1/12", "windows: 3/12", "windows: 5/12", "windows: 6/12", "windows: 8/12",
                    "windows: 9/12", "windows: 11/12", "windows: 12/12"]


def test_plain_lines_say_a_slow_clip_s_steps_every_30_s(capsys):
    """`mmgen generate --steps 650 2>&1 | ts` said nothing for 113 s, then `clips: 1/1`: the steps inside a clip had
    no line, and the 30 s rule waited for a count of clips to move. A slow clip's steps are said once 30 s pass
    without a line (a batch's job line too); a fast clip's are not."""
    from mmgen.cli.progress import PlainLines

    now = [0.0]
    show = PlainLines(clock=lambda: now[0])
    show(ProgressEvent("clips", 0, 2))
    for step in range(1, 26):  # the first clip: 25 steps in 0.25 s
        now[0] = step * 0.01
        show(ProgressEvent("steps", step, 25))
    now[0] = 1.0
    show(ProgressEvent("clips", 1, 2))
    for step in range(1, 651):  # the second: 650 steps of 0.25 s
        now[0] = 1.0 + step * 0.25
        show(ProgressEvent("steps", step, 650))
    show(ProgressEvent("clips", 2, 2))
    said = [re.sub(r", ETA .*", "", line) for line in capsys.readouterr().err.splitlines()]
    assert said == ["clips: 1/2", "clip 2/2: step 120/650", "clip 2/2: step 240/650", "clip 2/2: step 360/650",
                    "clip 2/2: step 480/650", "clip 2/2: step 600/650", "clips: 2/2"], said
    # a batch's: no line of clips, a slow clip's steps still, naming the job as its line does (`clip 1/1: step 446/650`
    # said not which job), with the time left (an animate job's steps, after a generate job's, had none: their count
    # went on from the last job's end)
    batch = PlainLines(clock=lambda: now[0])
    for job, (kind, item) in enumerate((("generate", "clips"), ("animate", "windows"))):
        batch.inner(ProgressEvent("jobs", job, 2))
        label = f"job {job + 1}/2 ({kind}) {kind}.mp4"
        batch.inner(ProgressEvent(item, 0, 3, job=label))
        for step in range(1, 26):  # 2 s each
            now[0] += 2.0
            batch.inner(ProgressEvent("steps", step, 25, job=label))
    assert capsys.readouterr().err.splitlines() == [  # 30 s after the job's own line
        "job 1/2 (generate) generate.mp4: clip 1/3: step 15/25, ETA 0:00:20",
        "job 2/2 (animate) animate.mp4: window 1/3: step 15/25, ETA 0:00:20"]


def animation_upscaled(show, now: list[float], seconds: float, until: int = 6) -> None:
    """The counts of an upscaled animation: 2 windows of 1 step, then 4 upscaling steps on 20 frames, one count
    of 6 steps (conditional.make_matching), a step each `seconds`, up to step `until`."""
    show(ProgressEvent("windows", 0, 2))
    show(ProgressEvent("upscale", 0, 20))
    for step in range(1, until + 1):
        now[0] = seconds * step
        show(ProgressEvent("steps", step, 6))
        if step <= 2:
            show(ProgressEvent("windows", step, 2))
        elif step in (4, 6):
            show(ProgressEvent("upscale", 10 * (step - 2) // 2, 20))


def test_an_animation_s_upscaling_is_said_as_upscaling_not_as_its_last_window(capsys):
    """Piped, an animation's upscaling steps said `window 2/2: step 5/6`, though every window was done: they say
    `upscaling: step 5/6`, as the upscale's own line says `upscaling 10/20`."""
    from mmgen.cli.progress import PlainLines

    now = [0.0]
    animation_upscaled(PlainLines(clock=lambda: now[0]), now, 40.0)  # 40 s a step: each step's line is due
    said = [re.sub(r", ETA .*", "", line) for line in capsys.readouterr().err.splitlines()]
    assert said == ["window 1/2: step 1/6", "windows: 1/2", "window 2/2: step 2/6", "windows: 2/2",
                    "upscaling: step 3/6", "upscaling: step 4/6", "upscaling: step 5/6"], said


def test_an_animation_s_windows_bar_says_the_time_left_of_its_upscaling_too(monkeypatch):
    """On a terminal the `windows` bar's time left counted the windows alone (0:00:00 once they were sampled)
    while the `sampling` bar's counts on into the upscaling after them: the windows bar says the longer, as the
    plain `windows: 2/2, ETA …` line does."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    now = [0.0]
    screen = io.StringIO()
    with progress_display(Console(file=screen, force_terminal=True, width=80, get_time=lambda: now[0])) as show:
        animation_upscaled(show, now, 10.0, until=3)  # 3 of 6 steps in 30 s, the windows done: 30 s to go
    rows = [row.split() for row in ANSI.sub("", screen.getvalue()).replace("\r", "\n").splitlines() if row.strip()]
    last = {row[0]: row[-2:] for row in rows}
    assert last["windows"] == ["2/2", "0:00:30"] and last["sampling"] == ["3/6", "0:00:30"], last


def test_a_windows_bar_says_no_time_left_before_its_first_window_ends(monkeypatch):
    """Without upscaling each window's steps are a count of their own: half of the first of 5 windows sampled in
    50 s, the `windows` bar said 0:00:50 (that window's time left, the `sampling` bar's) for the whole 5. It says
    none until a window has ended and its own pace is known, as before the upscaling's time was counted in."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    now = [0.0]
    screen = io.StringIO()
    with progress_display(Console(file=screen, force_terminal=True, width=80, get_time=lambda: now[0])) as show:
        show(ProgressEvent("windows", 0, 5))
        for step in range(1, 6):
            now[0] = 10.0 * step
            show(ProgressEvent("steps", step, 10))
    rows = [row.split() for row in ANSI.sub("", screen.getvalue()).replace("\r", "\n").splitlines() if row.strip()]
    last = {row[0]: row[-2:] for row in rows}
    assert last["windows"] == ["0/5", "-:--:--"] and last["sampling"] == ["5/10", "0:00:50"], last


def test_force_color_into_a_pipe_or_a_file_adds_colour_only(tmp_path, monkeypatch):
    """FORCE_COLOR=1 with stderr to a log drew live bars there (carriage returns, cursor moves, the cursor hidden:
    rich's is_terminal, which FORCE_COLOR turns on), and a piped table was laid out for 80 columns with the 'wider
    terminal' hint. A pipe or a file gets plain lines and whole tables, coloured."""
    import sys

    from cli_here import run_here

    from mmgen.terminal import WIDTH_WHEN_PIPED, table_console

    for name in ("NO_COLOR", "TTY_COMPATIBLE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("FORCE_COLOR", "1")
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    with progress_display() as show:
        show(ProgressEvent("clips", 0, 2))
        show(ProgressEvent("steps", 1, 25))
        show(ProgressEvent("clips", 1, 2))
    said = log.getvalue()
    assert "clips: 1/2" in said and "\r" not in said and "━" not in said, said
    assert all(code.endswith("m") for code in ANSI.findall(said)), said  # colours only: no cursor control
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert table_console(stderr=False).width == WIDTH_WHEN_PIPED
    monkeypatch.undo()
    listed = run_here("models", "list", env={**mmgen_env(tmp_path), "FORCE_COLOR": "1", "TERM": "xterm"})
    assert listed.returncode == 0 and "wider terminal" not in listed.stderr and "sha256" in listed.stdout, listed
    assert not any(line.endswith(" ") for line in ANSI.sub("", listed.stdout).splitlines()), listed.stdout


@pytest.mark.parametrize("environment", [{"TTY_COMPATIBLE": "0"}, {"FORCE_COLOR": ""}])
def test_a_terminal_rich_will_not_draw_on_gets_plain_lines(monkeypatch, environment):
    """TTY_COMPATIBLE=0 (or FORCE_COLOR set empty) on a real terminal: mmgen chose bars by the terminal's own isatty,
    rich drew none (its is_terminal is off there), and no progress showed at all. Plain lines, as on a pipe."""
    import sys

    for name in ("NO_COLOR", "TTY_COMPATIBLE", "FORCE_COLOR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    reader, writer = pty.openpty()
    with os.fdopen(writer, "w", buffering=1) as screen:
        monkeypatch.setattr(sys, "stderr", screen)
        with progress_display() as show:
            show(ProgressEvent("clips", 0, 2))
            show(ProgressEvent("clips", 1, 2))
            show(ProgressEvent("clips", 2, 2))
    said = b""
    while True:  # all that was drawn, the other end closed: one read may come before the terminal passed all on
        try:
            chunk = os.read(reader, 65536)
        except OSError:  # EIO: the other end is closed and all was read
            break
        if not chunk:
            break
        said += chunk
    os.close(reader)
    said = said.decode()
    assert "clips: 1/2" in said and "clips: 2/2" in said and "\x1b[?25l" not in said, said
