"""Ctrl-C is never a success: a command stopped by SIGINT exits 130 with one line saying what it kept, no
traceback — a batch first prints its summary of what finished — and leaves nothing half-written. SIGTERM
(`docker stop`, a cluster's preemption) and SIGHUP do the same, exiting 143 and 129.

Each test starts the real `mmgen` command, waits until it is really working (a progress line on stderr),
then sends SIGINT the way a terminal does.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from finetune_clips import write_clip_folder, write_recipe
from media_factory import write_test_audio, write_test_video
from mmgen_cli import REPO, mmgen_command, mmgen_env
from two_ranks import in_a_torchrun_job

from mmgen.train.step_folders import latest_checkpoint

FAST = ("--steps", "2")


def interrupt_when(args: list, env: dict, started: str, timeout: float = 600,
                   sig: int = signal.SIGINT) -> tuple[int, str]:
    """Run `mmgen ARGS`, send `sig` once a stderr line starts with `started`; (exit code, all of stderr)."""
    process = subprocess.Popen(mmgen_command(*args), env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith(started):
            process.send_signal(sig)
            break
    else:
        process.wait()
        raise AssertionError(f"it ended before {started!r}:\n{''.join(seen)}")
    rest = process.stderr.read()
    return process.wait(timeout=timeout), "".join(seen) + rest


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def assert_interrupted(code: int, stderr: str, says: str, expected: int = 130) -> None:
    assert code == expected, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.splitlines()[-1] == f"mmgen: {says}", stderr


@pytest.fixture(scope="module")
def thirty_seconds(tmp_path_factory) -> dict[str, Path]:
    """A 30 s clip and a 30 s song, written once for the tests that stop them: 25 windows of the tiny model, so
    the stop lands long before the end however loaded the machine is. Each test works on its own copy."""
    folder = tmp_path_factory.mktemp("thirty_seconds")
    return {"holiday.mp4": write_test_video(folder / "holiday.mp4", seconds=30.0).path,
            "song.m4a": write_test_audio(folder / "song.m4a", seconds=30.0).path}


def copy_of(inputs: dict[str, Path], name: str, folder: Path) -> Path:
    return Path(shutil.copy2(inputs[name], folder / name))


def test_ctrl_c_during_a_soundtrack_exits_130_and_writes_nothing(tiny, tmp_path, thirty_seconds):
    folder = tmp_path / "work"
    folder.mkdir()
    clip = copy_of(thirty_seconds, "holiday.mp4", folder)
    before = files_in(folder)

    code, stderr = interrupt_when(["soundtrack", clip, "-m", tiny, *FAST], mmgen_env(tmp_path), "windows: 1/")

    assert_interrupted(code, stderr, "interrupted; nothing written")
    assert files_in(folder) == before


def test_a_closed_terminal_sighup_stops_a_soundtrack_like_ctrl_c_with_129(tiny, tmp_path, thirty_seconds):
    folder = tmp_path / "work"
    folder.mkdir()
    clip = copy_of(thirty_seconds, "holiday.mp4", folder)
    before = files_in(folder)

    code, stderr = interrupt_when(["soundtrack", clip, "-m", tiny, *FAST], mmgen_env(tmp_path), "windows: 1/",
                                  sig=signal.SIGHUP)

    assert_interrupted(code, stderr, "interrupted (SIGHUP); nothing written", expected=129)
    assert files_in(folder) == before


def test_ctrl_c_during_animate_exits_130_and_writes_nothing(tiny, tmp_path, thirty_seconds):
    folder = tmp_path / "work"
    folder.mkdir()
    song = copy_of(thirty_seconds, "song.m4a", folder)
    before = files_in(folder)

    code, stderr = interrupt_when(["animate", song, "-m", tiny, *FAST], mmgen_env(tmp_path), "windows: 1/")

    assert_interrupted(code, stderr, "interrupted; nothing written")
    assert files_in(folder) == before


def test_ctrl_c_during_a_retake_exits_130_and_writes_nothing(tiny, tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    clip = write_test_video(folder / "holiday.mp4", seconds=6.0).path
    before = files_in(folder)

    code, stderr = interrupt_when(["retake", clip, "--range", "0.5:5.5", "-m", tiny, *FAST], mmgen_env(tmp_path),
                                  "windows: 1/")  # fmt: skip

    assert_interrupted(code, stderr, "interrupted; nothing written")
    assert files_in(folder) == before


@pytest.mark.parametrize(("sig", "code", "says"), [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "interrupted (SIGTERM)")])
def test_ctrl_c_or_sigterm_during_generate_keeps_the_clips_already_finished(tiny, tmp_path, sig, code, says):
    out = tmp_path / "out"

    exit_code, stderr = interrupt_when(["generate", "-n", "20", "-o", out, "-m", tiny, "--no-previews", *FAST],
                                       mmgen_env(tmp_path), "clips: 1/20", sig=sig)

    kept = sorted(p.name for p in out.glob("*.mp4"))
    assert kept and kept[0] == "clip_0000.mp4" and len(kept) < 20
    assert sorted(p.name for p in out.iterdir()) == sorted([*kept, *(k.replace(".mp4", ".json") for k in kept)])
    assert exit_code == code and "Traceback" not in stderr, stderr
    last = stderr.splitlines()[-1]
    assert last.startswith(f"mmgen: {says}; kept the ") and str(out / "clip_0000.mp4") in last, stderr


# Runs `mmgen ARGS` as `mmgen` does, sending itself SIGINT once the command has ended: `returned` right after,
# `shutdown` from an atexit handler — as if Ctrl-C came while torch's own atexit handlers run.
STOP_AFTER_THE_COMMAND = """
import atexit, os, signal, sys, time
import mmgen.cli as cli

command, when = cli.run, sys.argv.pop(1)

def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)  # where Python runs the handler

def run_then_ctrl_c(argv=None):
    code = command(argv)
    ctrl_c() if when == "returned" else atexit.register(ctrl_c)
    return code

cli.run = run_then_ctrl_c
cli.main()
"""


@pytest.mark.parametrize("when", ["returned", "shutdown"])
def test_ctrl_c_after_the_outputs_are_written_is_130_not_a_traceback_or_0(tiny, tmp_path, when):
    out = tmp_path / "out"
    script = tmp_path / "stop_after.py"
    script.write_text(STOP_AFTER_THE_COMMAND)

    done = subprocess.run([sys.executable, script, when, "generate", "-n", "1", "-o", out, "-m", tiny,
                           "--no-previews", "--steps", "1"], env=mmgen_env(tmp_path), capture_output=True, text=True,
                          timeout=600)  # fmt: skip

    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == f"mmgen: interrupted; kept the finished output: {out / 'clip_0000.mp4'}"
    assert {p.name for p in out.glob("clip_0001*")} == set() and (out / "clip_0000.json").is_file()
    assert {p.name for p in out.glob("*.mp4")} == {"clip_0000.mp4"}


STOP_BEFORE_THE_COMMAND = """
import os, signal, sys

import mmgen.cli as cli
import mmgen.runtime.stop_signals as stop_signals

sig, when = getattr(signal, sys.argv[1]), sys.argv[2]
sys.argv = ["mmgen", *sys.argv[3:]]


def stop_then(call):
    def stopped_first(*args):
        os.kill(os.getpid(), sig)  # delivered before the next line: deterministic
        return call(*args)
    return stopped_first


if when == "loading":  # handlers in place, the command not started yet
    cli.run = stop_then(cli.run)
else:  # before mmgen's handlers: Python's own raises KeyboardInterrupt
    stop_signals.own_process = stop_then(stop_signals.own_process)
cli.main()
"""


@pytest.mark.parametrize(("sig", "when", "code", "says"), [
    ("SIGTERM", "loading", 143, "interrupted (SIGTERM)"),
    ("SIGINT", "loading", 130, "interrupted"),
    ("SIGHUP", "loading", 129, "interrupted (SIGHUP)"),
    ("SIGINT", "unhandled", 130, "interrupted"),
])  # fmt: skip
def test_a_stop_before_the_command_starts_is_not_lost(tmp_path, sig, when, code, says):
    """A stop that came once `mmgen` had its handlers but before the command began was recorded, then forgotten as
    the command began: it ran to exit 0. And a Ctrl-C before the handlers were in place is one line, not a
    traceback. (Before mmgen's code runs at all — Python's own start-up — only Python can answer.)"""
    script = tmp_path / "stop_before.py"
    script.write_text(STOP_BEFORE_THE_COMMAND)
    done = subprocess.run([sys.executable, script, sig, when, "--version"], env=mmgen_env(tmp_path),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == "", done.stderr
    assert done.stderr.splitlines()[-1] == f"mmgen: {says}"


def test_ctrl_c_during_a_batch_prints_its_summary_then_exits_130(tiny, tmp_path):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(textwrap.dedent(f"""
        defaults: {{model: {tiny}, steps: 2, device: cpu, previews: false}}
        jobs:
          - {{kind: generate, name: first, seed: 1}}
          - {{kind: generate, name: second, seed: 2, num: 30}}
        """))

    code, stderr = interrupt_when(["batch", jobs, "-o", tmp_path / "out"], mmgen_env(tmp_path), "done job 1/31 ")

    assert "Batch summary" in stderr and "not run" in stderr
    summary = [line for line in stderr.splitlines() if line.startswith("31 jobs: ")]
    assert summary and "done" in summary[0] and "not run" in summary[0], stderr
    assert (tmp_path / "out" / "first.mp4").is_file() and (tmp_path / "out" / "first.json").is_file()
    assert code == 130 and "Traceback" not in stderr, stderr
    assert stderr.splitlines()[-1].startswith("mmgen: interrupted; kept the ")
    assert str(tmp_path / "out" / "first.mp4") in stderr.splitlines()[-1]


def start_endless_training(tmp_path: Path) -> subprocess.Popen:
    """A from-scratch finetune of two clips into tmp_path/run that would run for 100000 steps, logging every step
    on its stderr (a pipe), saving no checkpoint unless stopped."""
    data = tmp_path / "clips"
    write_clip_folder(data, good=2, seconds=1.2)
    recipe = write_recipe(tmp_path / "recipe.yaml", log_every=1)
    args = ["finetune", data, "--scratch", "--config", recipe, "-o", tmp_path / "run", "--steps", "100000",
            "--batch-size", "16", "--save-every", "100000"]
    return subprocess.Popen(mmgen_command(*args), env=mmgen_env(tmp_path, OMP_NUM_THREADS="1"),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def test_a_second_ctrl_c_aborts_finetune_with_130(tmp_path):
    process = start_endless_training(tmp_path)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("step 1/"):
            process.send_signal(signal.SIGINT)  # the first: "save after this step"
        if "Ctrl-C again to abort" in line:
            process.send_signal(signal.SIGINT)  # the second: abort now
            break
    rest = process.stderr.read()
    code, stderr = process.wait(timeout=120), "".join(seen) + rest

    assert_interrupted(code, stderr, "interrupted")
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_sigterm_stops_finetune_like_ctrl_c_saving_a_checkpoint_to_resume_and_exits_143(tmp_path):
    """A cluster's preemption or `docker stop`: the step finishes, a checkpoint is saved, the resume command is
    printed; a second SIGTERM (torchrun forwarding the scheduler's) does not abort the save."""
    run_dir = tmp_path / "run"
    process = start_endless_training(tmp_path)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("step 1/"):
            process.send_signal(signal.SIGTERM)
            process.send_signal(signal.SIGTERM)
            break
    rest = process.stderr.read()
    code, stderr = process.wait(timeout=120), "".join(seen) + rest

    assert_interrupted(code, stderr, "interrupted (SIGTERM)", expected=143)
    saved = latest_checkpoint(run_dir / "checkpoints")
    assert saved is not None and saved.step >= 1
    (resume,) = [line.split("resume with:", 1)[1] for line in stderr.splitlines() if "resume with:" in line]
    assert shlex.split(resume)[-1] == "--resume"
    assert not (run_dir / "model.safetensors").exists()


def test_ctrl_c_while_mmgen_starts_up_is_one_line(tmp_path):
    """SIGINT while the command is still importing (before any subcommand runs): no traceback either. It waited
    for torch's import, which `models list` no longer makes (6cd878c): it then ran to its end, exit 0, and the test
    said nothing of why. rich (its console, the bars) is imported by every command as its subcommands register,
    after mmgen records stops (PyAV no longer is: it loads only for media)."""
    process = subprocess.Popen(mmgen_command("models", "list"), env=mmgen_env(tmp_path, PYTHONVERBOSE="1"),
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen, sent = [], False
    for line in process.stderr:  # -v import lines: interrupt while rich is being imported
        seen.append(line)
        if line.startswith("import 'rich."):
            process.send_signal(signal.SIGINT)
            sent = True
            break
    rest = process.stderr.read()
    code = process.wait(timeout=120)
    stderr = "".join(seen) + rest
    assert sent, "mmgen models list imported no rich module at startup: interrupt it while another loads"
    assert code == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-2000:]
    assert "\nmmgen: interrupted\n" in stderr, stderr[-2000:]


def console_script() -> list[str]:
    """The `mmgen` command as pip installs it: a script that imports [project.scripts]'s function and calls it."""
    module, function = re.search(r'^mmgen = "([\w.]+):(\w+)"$', (REPO / "pyproject.toml").read_text(), re.M).groups()
    return [sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())"]


@pytest.mark.parametrize("command", [mmgen_command(), console_script()], ids=["python -m mmgen", "console script"])
def test_ctrl_c_the_moment_mmgen_begins_to_load_is_one_line(tmp_path, command):
    """Ctrl-C while `mmgen` imported its package and its command line (logging, mmgen.cli: 10–20 ms, far more on a
    busy machine) came before mmgen took its signals: Python's KeyboardInterrupt traceback, and a death by SIGINT.
    The entry point takes them before it imports anything (mmgen.entry). (A Ctrl-C still earlier, in Python's own
    start-up, before any of mmgen's code runs, only Python can answer.)"""
    for loading, delay in (("/logging/", 0.0), ("/mmgen/cli/", 0.0), ("/mmgen/cli/", 0.003)):
        process = subprocess.Popen([*command, "--version"], env=mmgen_env(tmp_path, PYTHONVERBOSE="1"),
                                   stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        seen = []
        for line in process.stderr:  # -v: "# code object from PATH" comes as a module's code is about to run
            seen.append(line)
            if line.startswith("# code object from") and loading in line:
                time.sleep(delay)
                process.send_signal(signal.SIGINT)
                break
        stderr = "".join(seen) + process.stderr.read()
        code = process.wait(timeout=60)
        assert loading in seen[-1], f"{loading} was never imported:\n{stderr[-2000:]}"
        assert code == 130, (loading, delay, stderr[-2000:])
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-2000:]
        assert "\nmmgen: interrupted\n" in stderr, stderr[-2000:]


def test_a_reader_that_stops_reading_is_exit_141_with_one_line_and_the_clips_stay(tiny, tmp_path):
    """`mmgen generate --json | head -1` where head is gone before the JSON comes: not a silent exit 1. Each line is
    printed as its clip is kept, so the run stops at the first line nobody reads (as a pipe's writer does), keeping
    that clip whole; it makes no clip that nobody would hear of."""
    out = tmp_path / "out"
    process = subprocess.Popen(mmgen_command("generate", "-m", tiny, "-n", 2, *FAST, "-o", out, "--json"),
                               env=mmgen_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader leaves at once
    stderr = process.stderr.read()
    assert process.wait(timeout=600) == 141, stderr
    assert stderr.strip().splitlines()[-1] == ("mmgen: error: stdout was closed by the program reading it "
                                               f"(broken pipe); kept the finished output: {out / 'clip_0000.mp4'}")
    assert "Traceback" not in stderr
    assert {p.name for p in out.glob("clip_0001*")} == set() and (out / "clip_0000.json").is_file()
    assert {p.name for p in out.glob("*.mp4")} == {"clip_0000.mp4"}


def test_json_with_stdout_closed_is_refused_before_any_work(tiny, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(mmgen_command("generate", "-m", tiny, *FAST, "-o", out, "--json"), env=mmgen_env(tmp_path),
                          capture_output=True, text=True, preexec_fn=lambda: os.close(1))
    assert done.returncode == 2
    assert done.stderr.strip() == "mmgen: error: --json: standard output is closed: there is nowhere to print the JSON"
    assert not out.exists()


def test_a_command_that_only_prints_exits_141_quietly_when_its_reader_goes(tmp_path, monkeypatch, capsys):
    """`mmgen models list --json | head -c1` (and `mmgen batch --example | true`, batch's mode that only prints): the
    broken-pipe line spoke of "the files written", and it wrote none; the reader chose to stop, and a command that
    only prints says nothing (as `yes | head`)."""
    import errno
    import io

    from mmgen.cli import run

    class GoneReader(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "stdout", GoneReader())
    monkeypatch.setattr(sys, "stderr", sys.stderr)  # click wraps both; put them back after
    for command in (["models", "list", "--json"], ["batch", "--example"]):
        assert run(command) == 141, command
        assert capsys.readouterr().err == "", command


def test_help_whose_reader_has_gone_is_141_without_a_word(tmp_path):
    """`mmgen generate --help | head -1`: rich, printing the help, met EPIPE and exited 1 (then mmgen said the
    broken-pipe line: the reader's own choice needs none)."""
    reader, writer = os.pipe()
    os.close(reader)  # the reader has gone before the first line: every write is EPIPE
    try:
        done = subprocess.run(mmgen_command("generate", "--help"), env=mmgen_env(tmp_path), stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(writer)
    assert done.returncode == 141
    assert done.stderr == ""  # no line, no traceback, no "Exception ignored"


def full_pipe() -> tuple[int, int]:
    """A pipe whose reader has read nothing yet and whose buffer is full: the next write to it waits."""
    reader, writer = os.pipe()
    fcntl.fcntl(writer, fcntl.F_SETPIPE_SZ, 4096)  # the smallest buffer: a page
    os.set_blocking(writer, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(writer, b"x" * 512)
    os.set_blocking(writer, True)
    return reader, writer


@pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"), reason="needs Linux pipes and /proc/PID/wchan")
def test_ctrl_c_while_json_waits_for_a_reader_that_stopped_reading_exits_130(tmp_path):
    """`mmgen ... --json | reader`, the reader stalled and the pipe full: Ctrl-C stopped the print, then Python's
    flush of stdout at exit waited for the same reader — with the stops ignored by then, so no Ctrl-C could end it.
    What a stopped command had yet to print is dropped: exit 130 at once."""
    reader, writer = full_pipe()
    env = {key: value for key, value in mmgen_env(tmp_path).items() if key != "PYTHONUNBUFFERED"}  # a user's stdout
    try:
        process = subprocess.Popen(mmgen_command("models", "list", "--json"), env=env, stdout=writer,
                                   stderr=subprocess.PIPE, text=True)
    finally:
        os.close(writer)
    try:
        deadline = time.monotonic() + 300
        while "pipe_write" not in Path(f"/proc/{process.pid}/wchan").read_text():  # its first line waits
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(reader)
    assert code == 130
    assert process.stderr.read() == "mmgen: interrupted\n"


def test_doctor_with_stdout_closed_is_refused_as_json_is(tmp_path, monkeypatch, capsys):
    """`mmgen doctor >&-` printed its report nowhere and exited 0; now it is refused as `generate --json >&-` is,
    and so is `models list --json >&-`."""
    from mmgen.cli import run

    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "stdout", None)  # what Python makes of a closed descriptor 1
    for args, says in [(["doctor"], "the report"), (["doctor", "--json"], "the report"),
                       (["models", "list", "--json"], "the JSON"), (["models", "list"], "the table"),
                       (["models", "info", "demo"], "the details"), (["models", "verify", "demo"], "the verdicts")]:
        assert run(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("mmgen: error: ") and err.endswith(f"standard output is closed: there is nowhere to "
                                                                 f"print {says}\n"), err


def test_the_startup_interrupt_line_goes_where_every_line_goes_and_never_to_stdout(monkeypatch, capsys):
    """Ctrl-C before a command starts: its line is written as every other (mmgen.terminal.say), in one write;
    with stderr closed (`2>&-`) it is dropped — not printed into stdout, where `--json` readers parse lines."""
    import mmgen.cli

    def stopped(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(mmgen.cli, "_run", stopped)
    assert mmgen.cli.run(["models", "list"]) == 130
    assert capsys.readouterr() == ("", "mmgen: interrupted\n")

    monkeypatch.setattr(sys, "stderr", None)
    assert mmgen.cli.run(["models", "list"]) == 130
    assert capsys.readouterr().out == ""


def test_with_stderr_closed_an_error_keeps_its_exit_status(tmp_path, monkeypatch, capsys):
    """`mmgen models info nosuch 2>&-`: still exit 2 (the line has nowhere to go), not 1 from failing to say it."""
    from mmgen.cli import run

    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "stderr", None)
    assert run(["models", "info", "nosuch"]) == 2
    assert capsys.readouterr().out == ""


def stop_inside(sig: int, then: str):
    """A stand-in for work that a stop lands in: it signals this process, and the KeyboardInterrupt the signal raises
    is then lost the ways a library loses it — `error`: a module whose import it cut short fails as it loads again
    (numpy's "module 'numpy._core' has no attribute '_multiarray_umath'"); `swallowed`: a bare `except:` eats it."""

    def work(*args, **kwargs):
        try:
            os.kill(os.getpid(), sig)
            time.sleep(5)
        except KeyboardInterrupt:
            if then == "error":
                raise AttributeError("module 'numpy._core' has no attribute '_multiarray_umath'") from None
            return []
        raise AssertionError("the stop signal never came")

    return work


@pytest.mark.parametrize("where", ["command", "startup"])
@pytest.mark.parametrize(("sig", "then", "code", "says"), [
    (signal.SIGINT, "error", 130, "interrupted"),
    (signal.SIGTERM, "error", 143, "interrupted (SIGTERM)"),
    (signal.SIGINT, "swallowed", 130, "interrupted"),
])  # fmt: skip
def test_once_a_stop_came_whatever_ends_the_command_it_exits_as_stopped(tmp_path, monkeypatch, capsys, where, sig,
                                                                        then, code, says):
    """Ctrl-C in `generate`'s first seconds landed in the lazy `import pyloudnorm` (scipy) and exited 1 with
    "AttributeError: module 'numpy._core' …" or a RecursionError; a stop swallowed on the way must not exit 0."""
    import mmgen.cli
    import mmgen.weights.catalog

    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    if where == "command":
        monkeypatch.setattr(mmgen.weights.catalog, "catalog", stop_inside(sig, then))
    else:  # while the subcommands are imported
        monkeypatch.setattr(mmgen.cli, "_register", stop_inside(sig, then))

    assert mmgen.cli.run(["models", "list"]) == code
    if (where, then) == ("command", "swallowed"):  # the listing went on into held stdout, dropped at the stop
        says += "; nothing written to standard output"
    assert capsys.readouterr().err.splitlines()[-1] == f"mmgen: {says}"


def test_a_stop_while_the_first_batch_is_built_ends_finetune_at_once(tmp_path, monkeypatch, capsys):
    """`finetune --batch-size 9999999` on a big machine builds its first batch for long: the first SIGTERM said
    "stopping after this step to save a checkpoint" and waited for a step that was far off. Before the first step
    there is nothing new to save: the stop ends the run at once, exit 143."""
    import mmgen.cli
    from mmgen.train.order import BatchOrder

    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    write_clip_folder(tmp_path / "clips", good=1, seconds=0.4)
    recipe = write_recipe(tmp_path / "recipe.yaml", sample_every=0)
    monkeypatch.setattr(BatchOrder, "global_batch", stop_inside(signal.SIGTERM, "waited"))

    code = mmgen.cli.run(["finetune", str(tmp_path / "clips"), "--scratch", "--config", str(recipe), "-o",
                          str(tmp_path / "run"), "--steps", "1"])

    stderr = capsys.readouterr().err
    assert code == 143, stderr
    assert stderr.splitlines()[-1] == "mmgen: interrupted (SIGTERM)"
    assert "stopping after this step" not in stderr
    assert latest_checkpoint(tmp_path / "run" / "checkpoints") is None


@pytest.mark.parametrize(("sig", "then", "code"), [(signal.SIGTERM, "raised", 143), (signal.SIGINT, "swallowed", 130)])
def test_finetune_json_says_what_a_run_stopped_before_its_first_step_kept(tmp_path, monkeypatch, capsys, sig, then,
                                                                          code):
    """`finetune --json` stopped during its setup printed nothing, while --help promised one object "when the run
    ends or stops" (a stop after a step printed it): its line says the run kept nothing — step 0, no checkpoints,
    nothing to resume — with the stop's exit code (143 SIGTERM, 130 Ctrl-C) and last line, as after a step; also
    where a library swallowed the stop and failed instead (stop_inside)."""
    import mmgen.cli
    from mmgen.train.order import BatchOrder

    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    write_clip_folder(tmp_path / "clips", good=1, seconds=0.4)
    recipe = write_recipe(tmp_path / "recipe.yaml", sample_every=0)

    def stop(*args, **kwargs):
        os.kill(os.getpid(), sig)
        time.sleep(5)
        raise AssertionError("the stop signal never came")

    monkeypatch.setattr(BatchOrder, "global_batch", stop if then == "raised" else stop_inside(sig, then))
    run_dir = tmp_path / "run"

    assert mmgen.cli.run(["finetune", str(tmp_path / "clips"), "--scratch", "--config", str(recipe), "-o",
                          str(run_dir), "--steps", "5", "--json"]) == code
    out, err = capsys.readouterr()
    assert json.loads(out) == {"run_dir": str(run_dir), "step": 0, "steps": 5, "interrupted": True, "model": None,
                               "checkpoints": None, "resume": None, "device": None, "precision": None,
                               "data": None}
    assert err.splitlines()[-1].startswith("mmgen: interrupted") and not run_dir.exists()


def test_finetune_json_comes_for_a_stop_while_torch_loads(tmp_path, monkeypatch, capsys):
    """A Ctrl-C as finetune's command line was read, while torch loads (seconds, in every torchrun worker): --json
    printed nothing, though --help promises its line whenever the stop comes (once mmgen has read its settings).
    torch loads as the call imports mmgen.train.trainer (train.run.finetune): the stop lands inside that import,
    waits for it to end (stop_signals.first_imports_held: a half-loaded torch fails every later call), and stops the
    run there, before it trains — exit 130, its --json line, `interrupted`, nothing written."""
    import importlib.abc
    import importlib.util

    import mmgen.cli
    import mmgen.train
    import mmgen.train.trainer

    class TorchLoading(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        """mmgen.train.trainer, whose import loads torch, with a stop landing while it loads."""

        loaded_whole = trained = False

        def find_spec(self, name, path, target=None):
            return importlib.util.spec_from_loader(name, self) if name == "mmgen.train.trainer" else None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, torch half loaded

            def run_training(*args):
                loading.trained = True

            module.run_training = run_training
            loading.loaded_whole = True

    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    recipe = write_recipe(tmp_path / "recipe.yaml", sample_every=0)
    loading = TorchLoading()
    monkeypatch.setattr(mmgen.train, "trainer", mmgen.train.trainer)  # the import sets it: the real one comes back
    monkeypatch.delitem(sys.modules, "mmgen.train.trainer")
    monkeypatch.setattr(sys, "meta_path", [loading, *sys.meta_path])
    run_dir = tmp_path / "run"

    assert mmgen.cli.run(["finetune", str(tmp_path), "--scratch", "--config", str(recipe), "-o", str(run_dir),
                          "--steps", "5", "--json"]) == 130
    out, err = capsys.readouterr()
    assert (loading.loaded_whole, loading.trained) == (True, False)  # the stop waited for the import, then stopped it
    assert json.loads(out) == {"run_dir": str(run_dir), "step": 0, "steps": 5, "interrupted": True, "model": None,
                               "checkpoints": None, "resume": None, "device": None, "precision": None,
                               "data": None}
    assert err.splitlines()[-1] == "mmgen: interrupted" and not run_dir.exists()


# Runs `mmgen models list` as `python -m mmgen` does (runpy), with a stop that lands while C code runs Python code
# through the C API (PyRun_String, as pybind11's py::exec does while torch loads): CPython then remembers "a
# KeyboardInterrupt went unhandled" and, unless told otherwise, ends the process by SIGINT, whatever sys.exit said.
STOP_INSIDE_PYRUN_STRING = """
import ctypes, signal, sys

import mmgen.cli as cli

sig = getattr(signal, sys.argv[1])
sys.argv = ["mmgen", "models", "list"]


def register():
    scope = {}
    code = f"import os; os.kill(os.getpid(), {int(sig)})".encode()
    ctypes.pythonapi.PyRun_String(code, 257, ctypes.py_object(scope), ctypes.py_object(scope))  # 257: Py_file_input


cli._register = register
cli.main()
"""


@pytest.mark.parametrize(("sig", "code", "says"), [("SIGTERM", 143, "interrupted (SIGTERM)"),
                                                   ("SIGHUP", 129, "interrupted (SIGHUP)")])
def test_the_exit_code_is_the_stops_even_where_python_saw_the_keyboardinterrupt_go_unhandled(tmp_path, sig, code,
                                                                                             says):
    """SIGTERM 2.5–3 s into `generate` (torch loading) said "interrupted (SIGTERM)" but exited 130 (3 runs in 45)."""
    (tmp_path / "stop_in_pyrun.py").write_text(STOP_INSIDE_PYRUN_STRING)
    done = subprocess.run([sys.executable, "-m", "stop_in_pyrun", sig], cwd=tmp_path, capture_output=True, text=True,
                          env=mmgen_env(tmp_path, PYTHONPATH=f"{tmp_path}{os.pathsep}{mmgen_env(tmp_path)['PYTHONPATH']}"),
                          timeout=600)  # fmt: skip
    assert done.stderr.splitlines()[-1] == f"mmgen: {says}", done.stderr
    assert done.returncode == code, done.stderr


def after_a_swallowed_stop(sig: int, call):
    """`call`, after a stop that Python swallowed: signalled inside a weakref callback, as when SIGHUP landed in
    importlib's module-lock `cb` — "Exception ignored in: <function _get_module_lock.<locals>.cb …> …
    KeyboardInterrupt", and `retake` ran to its end and wrote its output."""
    import weakref

    def swallowed_first(*args, **kwargs):
        class Lock:
            pass

        lock = Lock()
        ref = weakref.ref(lock, lambda _: signal.raise_signal(sig))  # the handler runs inside the callback
        del lock
        assert ref() is None
        return call(*args, **kwargs)

    return swallowed_first


@pytest.mark.parametrize(("where", "sig", "code", "says"), [
    ("startup", signal.SIGHUP, 129, "interrupted (SIGHUP); nothing written"),  # a writing command, stopped as it loads
    ("loading", signal.SIGHUP, 129, "interrupted (SIGHUP); nothing written"),
    ("loading", signal.SIGTERM, 143, "interrupted (SIGTERM); nothing written"),
    ("writing", signal.SIGINT, 130, "interrupted; nothing written"),
])  # fmt: skip
def test_a_stop_that_python_swallowed_still_stops_the_command_before_it_writes(tiny, tmp_path, monkeypatch, where, sig,
                                                                                code, says):
    from cli_here import run_here

    import mmgen.cli
    import mmgen.media.encode
    import mmgen.weights.load

    if where == "startup":  # as torch and the subcommands are imported
        monkeypatch.setattr(mmgen.cli, "_register", after_a_swallowed_stop(sig, mmgen.cli._register))
    elif where == "loading":
        monkeypatch.setattr(mmgen.weights.load, "describe", after_a_swallowed_stop(sig, mmgen.weights.load.describe))
    else:  # sampled, the clip about to be encoded
        monkeypatch.setattr(mmgen.media.encode, "check_audio", after_a_swallowed_stop(sig, mmgen.media.encode.check_audio))
    out = tmp_path / "out"
    done = run_here("generate", "-m", tiny, "-n", "1", "--steps", "1", "--no-previews", "-o", out,
                    env=mmgen_env(tmp_path))

    assert done.returncode == code, done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == f"mmgen: {says}"
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize(("sig", "then", "says"), [
    (signal.SIGINT, "swallowed", "interrupted; nothing written"),
    (signal.SIGTERM, "error", "interrupted (SIGTERM); nothing written"),
])  # fmt: skip
def test_a_command_that_writes_stopped_while_mmgen_loads_says_it_wrote_nothing(tmp_path, monkeypatch, capsys, sig,
                                                                              then, says):
    """`mmgen generate` stopped before its first clip, while its subcommands were imported, said only
    `mmgen: interrupted`; every stop of a command that writes says what it kept, whenever it lands."""
    import mmgen.cli

    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(mmgen.cli, "_register", stop_inside(sig, then))

    assert mmgen.cli.run(["generate", "-o", str(tmp_path / "out")]) == 128 + sig
    assert capsys.readouterr().err.splitlines()[-1] == f"mmgen: {says}"
    assert not (tmp_path / "out").exists()


def test_under_torchrun_a_stop_while_mmgen_loads_is_said_by_rank_0_alone(tmp_path, monkeypatch, capsys):
    """Ctrl-C to torchrun as its workers start reaches each while mmgen loads: each said `mmgen: interrupted`. Every
    process was stopped alike and began nothing of its own: rank 0 says it once, as a refused command line."""
    import mmgen.cli

    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    in_a_torchrun_job(monkeypatch, 2)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")  # torchrun's workers (a job's variables left in a shell: each says)
    said = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        monkeypatch.setattr(mmgen.cli, "_register", stop_inside(signal.SIGINT, "swallowed"))
        assert mmgen.cli.run(["finetune", str(tmp_path), "-o", str(tmp_path / "run"), "--json"]) == 130
        said[rank] = capsys.readouterr()
    assert said[0].err.splitlines() == ["mmgen: interrupted"] and said[1].err == ""


def test_under_torchrun_finetune_s_stop_lines_are_said_once_by_rank_0(monkeypatch, capsys):
    """A stop reaches every rank of `torchrun … finetune`: each said `stopping after this step to save a checkpoint`,
    then `interrupted` (rank 1's naming nothing; rank 0's saying how to resume). Rank 0 alone says them; a rank that
    names outputs of its own (a batch's share it finished) still says its line."""
    from mmgen.cli import _interrupted
    from mmgen.train import interrupt

    in_a_torchrun_job(monkeypatch, 2)
    from mmgen.runtime import stop_signals

    # the test's own handlers stay; what StopRequest replaces is the command's (mmgen.cli.run's), not a caller's
    monkeypatch.setattr(signal, "signal", lambda *args: stop_signals._on_stop)
    monkeypatch.setattr(interrupt, "record", lambda signum: None)  # no stop of the test's own process
    monkeypatch.setattr(_interrupted, "_finished", [])
    monkeypatch.setattr(_interrupted, "invoked", contextvars.ContextVar("invoked", default="finetune"))
    said = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        with interrupt.StopRequest() as stop:
            stop.stepped = True
            stop._handle(signal.SIGINT, None)
        _interrupted.say_interrupted(130)
        said[rank] = capsys.readouterr().err
    assert "mmgen: stopping after this step to save a checkpoint" in said[0] and "mmgen: interrupted" in said[0]
    assert said[1] == ""
    monkeypatch.setattr(_interrupted, "_finished", [Path("out/x.mp4")])
    _interrupted.say_interrupted(130)
    assert capsys.readouterr().err == "mmgen: interrupted; kept the finished output: out/x.mp4\n"


@pytest.mark.parametrize("launcher", ["torchrun", "none"])
def test_a_stop_says_a_second_ctrl_c_aborts_only_where_it_does(monkeypatch, capsys, launcher):
    """`stopping after this step to save a checkpoint (Ctrl-C again to abort without saving)` was said under
    torchrun too, where it is untrue: torchrun passes a second Ctrl-C on as SIGTERM, which asks for the same
    checkpoint. There the line says what is true, without the hint."""
    from mmgen.runtime import stop_signals
    from mmgen.train import interrupt

    in_a_torchrun_job(monkeypatch, 2)
    monkeypatch.setenv("RANK", "0")
    if launcher == "torchrun":
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    else:
        monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr(signal, "signal", lambda *args: stop_signals._on_stop)  # (the test's own handlers stay)
    monkeypatch.setattr(interrupt, "record", lambda signum: None)  # no stop of the test's own process
    with interrupt.StopRequest() as stop:
        stop.stepped = True
        stop._handle(signal.SIGINT, None)
    said = capsys.readouterr().err.splitlines()[-1]
    if launcher == "torchrun":
        assert said == "mmgen: stopping after this step to save a checkpoint"
    else:
        assert said == "mmgen: stopping after this step to save a checkpoint (Ctrl-C again to abort without saving)"


def test_a_stop_that_ended_a_python_finetune_does_not_stop_the_next_command_of_the_process(tmp_path, capsys):
    """A Python program's finetune stopped by one Ctrl-C returns `interrupted=True`; the stop it recorded (for the
    command line's exit code) was left for the process, so the program's next `mmgen.cli.run([...])` was stopped as
    it began: 130 at once, `mmgen: interrupted`. The call that took the stop answers it."""
    from cli_here import run_here

    from mmgen.train import interrupt

    with interrupt.StopRequest() as stop:  # as finetune's training loop holds it, its first step done
        stop.stepped = True
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, to this process
        for _ in range(100):
            if stop.requested:
                break
            time.sleep(0.01)
    assert stop.requested
    capsys.readouterr()
    listed = run_here("models", "list", env=mmgen_env(tmp_path))
    assert (listed.returncode, listed.stderr) == (0, "")


def test_a_torchrun_process_that_learns_of_a_sigterm_from_another_exits_as_stopped_by_sigterm(monkeypatch):
    """`kill -TERM` to one worker of a 2-process finetune: both saved and stopped at the same step, but the other
    worker, which got no signal itself, exited 130 as if stopped by Ctrl-C (and torchrun's "Root Cause" could name
    it). It takes the signal the job's stop came with: the same 143 and `interrupted (SIGTERM)`."""
    from mmgen.runtime import stop_signals
    from mmgen.train import interrupt

    monkeypatch.setattr(stop_signals, "_received", [])  # this test process's own stops stay its own
    with interrupt.StopRequest() as stop:  # as finetune's training loop holds it, its first step done
        stop.stepped = True
        assert not stop.shared(0)  # no process was stopped: the run goes on
        assert stop.shared(signal.SIGTERM)  # the other process got SIGTERM
    assert stop.requested
    assert stop_signals.stop_code() == 143
    assert stop_signals.stop_name(stop_signals.stop_code()) == " (SIGTERM)"
