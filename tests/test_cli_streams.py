"""Standard output and error that cannot take what mmgen writes: an encoding without "×" or "✓", a full disk, a
closed stderr. The result's stream failing fails the command, in one line; a message that cannot be shown does
not."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys

from cli_here import run_here
from mmgen_cli import mmgen_env


def ascii_stream() -> io.TextIOWrapper:
    """A stream as LC_ALL=C PYTHONIOENCODING=ascii gives: strict ASCII."""
    return io.TextIOWrapper(io.BytesIO(), encoding="ascii", write_through=True)


def test_an_ascii_stdout_gets_stand_ins_for_what_it_cannot_hold(tmp_path):
    """`LC_ALL=C PYTHONIOENCODING=ascii mmgen models list`: exit 1 on the "×" of "64×64" (a UnicodeEncodeError and a
    second line of rich's); doctor likewise on its "✓". Then they came as escapes ("64\\xd764", "1f3e…" as
    "1f3e2458ede0\\u2026"), a table's columns pushed out of line by each. Now as ASCII stand-ins, measured as the table
    is laid out; a file name's other characters keep their bytes (escaped), not their code points."""
    env = mmgen_env(tmp_path)
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("defaults: {model: demo}\njobs:\n  - {kind: generate, name: café}\n", encoding="utf-8")
    for command, shown in ((["models", "list"], "64x64"), (["doctor"], "  + ok "),
                           (["batch", jobs, "--dry-run", "-o", tmp_path / "out"], "caf\\xc3\\xa9.mp4 | demo  | ddim - 25")):
        stdout, stderr = ascii_stream(), ascii_stream()
        done = run_here(*command, env=env, stdout=stdout, stderr=stderr)
        assert done.returncode == 0, stderr.buffer.getvalue()
        said = stdout.buffer.getvalue().decode("ascii")
        assert shown in said and "\\u" not in said and "\\xd7" not in said, said
        framed = [line for line in said.splitlines() if line.startswith("|")]  # models list's and batch's table rows
        assert len({len(line) for line in framed}) <= 1, said


class Refusing(io.StringIO):
    """A stream the OS refuses every write to with `code` (/dev/full: ENOSPC; a closed descriptor: EBADF)."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    def write(self, text: str) -> int:
        raise OSError(self.code, os.strerror(self.code))


def test_a_full_stdout_is_one_line_and_exit_1(tmp_path):
    """`mmgen models list > /dev/full`: "OSError: [Errno 28] ... (run with --debug ...)", as if mmgen had a bug."""
    done = run_here("models", "list", env=mmgen_env(tmp_path), stdout=Refusing(errno.ENOSPC))
    assert done.returncode == 1
    assert done.stderr == "mmgen: error: cannot write to standard output: No space left on device\n"


def test_a_run_that_did_its_work_is_exit_0_with_stderr_closed(tiny, tmp_path):
    """`mmgen generate ... 2>&-`: the clip was written, then "wrote ..." met EBADF and the run exited 1."""
    out = tmp_path / "out"
    done = run_here("generate", "-m", tiny, "-n", "1", "--steps", "1", "-o", out, env=mmgen_env(tmp_path),
                    stderr=Refusing(errno.EBADF))
    assert done.returncode == 0
    assert (out / "clip_0000.mp4").is_file() and (out / "clip_0000.json").is_file()


def test_a_closed_stderr_never_becomes_a_file_mmgen_writes(tmp_path):
    """With `2>&-`, the first file opened took descriptor 2: a message written there by FFmpeg, oneDNN or a child
    process went into that file (an output being written). mmgen holds the closed stream open on /dev/null first."""
    out = tmp_path / "out.bin"
    code = ("import os, sys; from mmgen.cli import hold_standard_descriptors; hold_standard_descriptors(); "
            f"fd = os.open({str(out)!r}, os.O_WRONLY | os.O_CREAT); os.write(fd, b'output'); "
            "os.write(2, b'a library message'); os.close(fd)")
    done = subprocess.run([sys.executable, "-c", code], preexec_fn=lambda: os.close(2), timeout=60)
    assert done.returncode == 0
    assert out.read_bytes() == b"output"


class Writes(io.StringIO):
    """A pipe's end as the OS sees it: each write() call kept apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        if text:
            self.writes.append(text)
        return super().write(text)


def test_a_report_is_written_to_a_pipe_in_one_write(tmp_path):
    """`mmgen models list | head -1` exited 141: rich flushed each print (and --json each line), so `head` had its
    line and was gone before the rest came. The whole output is one write, as the command ends."""
    env = mmgen_env(tmp_path)
    for command in (["models", "list"], ["models", "list", "--json"], ["--help"], ["models"]):
        stdout = Writes()
        run_here(*command, env=env, stdout=stdout)
        assert len(stdout.writes) == 1 and stdout.writes[0].count("\n") > 3, (command, stdout.writes[:3])


def test_a_reader_that_takes_one_line_and_goes_leaves_a_short_output_exit_0(tmp_path):
    """README: output that fits the pipe's buffer is all in it before the reader goes, so `mmgen models list --json |
    head -1` exits 0 (it was 141 on every try)."""
    env = mmgen_env(tmp_path)
    for _ in range(2):
        reader, writer = os.pipe()
        process = subprocess.Popen([sys.executable, "-m", "mmgen", "models", "list", "--json"], env=env,
                                   stdout=writer, stderr=subprocess.PIPE, text=True)
        os.close(writer)
        with os.fdopen(reader, "rb") as pipe:
            assert pipe.readline().startswith(b"{")  # head -1: one line, then gone
        assert process.wait(timeout=60) == 0, process.stderr.read()
        process.stderr.close()


def test_a_stop_while_a_report_is_printed_to_a_pipe_says_nothing_was_written_there(tmp_path, monkeypatch):
    """`mmgen doctor | cat` (or `> report.txt`) holds the report to write it in one write as it ends; Ctrl-C while it
    was printed dropped what was held (exit 130) with the line `mmgen: interrupted`, as if an empty report were the
    whole one. The line says nothing was written to standard output."""
    import signal

    from rich.console import Console

    printed, real_print = [], Console.print

    def print_then_stop(console, *objects, **options):
        real_print(console, *objects, **options)
        printed.append(objects)
        if len(printed) == 2:  # the report's first lines held: Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Console, "print", print_then_stop)
    stdout = Writes()
    done = run_here("doctor", env=mmgen_env(tmp_path), stdout=stdout)
    assert done.returncode == 130 and stdout.writes == [], (done, stdout.writes)
    assert done.stderr == "mmgen: interrupted; nothing written to standard output\n"


def test_a_stdout_that_fails_after_a_clip_names_the_clips_kept_as_a_stop_does(tiny, tmp_path):
    """`generate --json > /dev/full` said only 'cannot write to standard output', naming no file; a Ctrl-C's line
    lists the outputs kept, and so does this (a broken pipe's: test_cli_interrupt)."""
    out = tmp_path / "out"
    done = run_here("generate", "-m", tiny, "-n", "1", "--steps", "1", "-o", out, "--json",
                    env=mmgen_env(tmp_path), stdout=Refusing(errno.ENOSPC))
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == ("mmgen: error: cannot write to standard output: No space left on "
                                                    f"device; kept the finished output: {out / 'clip_0000.mp4'}")
