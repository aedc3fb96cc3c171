"""The torchrun job the environment describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) is checked
before torch loads: a bad one is refused in one line (exit 2), and a command that runs as one process is refused
under torchrun, said by rank 0 alone — else every process did the whole work and wrote the same files at once.
Joining the job: a process that waits for the others says so, and a stop ends that wait (mmgen.runtime.processes)."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cli_here import run_here
from mmgen_cli import mmgen_env
from two_ranks import every_rank_reads_alike

JOB = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


def _job(monkeypatch: pytest.MonkeyPatch, **given: str) -> None:
    for name in JOB:
        monkeypatch.delenv(name, raising=False)
    for name, value in given.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(("given", "said"), [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 but RANK, MASTER_ADDR, MASTER_PORT are not set"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, "WORLD_SIZE=2 but MASTER_ADDR, MASTER_PORT are not set"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}, "RANK=2 with WORLD_SIZE=2"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two': takes an integer"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "x", "MASTER_ADDR": "h", "MASTER_PORT": "1"},
     "LOCAL_RANK='x': takes an integer"),
])
def test_a_bad_job_environment_is_one_line_before_torch_loads(tmp_path, monkeypatch, given, said):
    """`WORLD_SIZE=2 mmgen batch …` failed with `KeyError: 'RANK'`, and without MASTER_ADDR with torch's own
    ValueError, both exit 1: now one line naming the variables and who sets them, exit 2, nothing written."""
    (tmp_path / "jobs.yaml").write_text("jobs:\n  - kind: generate\n    model: demo\n")
    _job(monkeypatch, **given)
    loaded = "torch" in sys.modules
    result = run_here("batch", tmp_path / "jobs.yaml", "-o", tmp_path / "out", env=mmgen_env(tmp_path))
    assert result.returncode == 2, result
    assert result.stderr.startswith(f"mmgen: error: {said}") and result.stderr.count("\n") == 1, result.stderr
    assert "set by torchrun" in result.stderr
    assert not (tmp_path / "out").exists()
    if not loaded:  # (a test before this one in the same process may have loaded it)
        assert "torch" not in sys.modules


@pytest.mark.parametrize("command", [["generate", "-m", "demo", "--steps", "2", "-o"], ["soundtrack", "x.mp4", "-o"]])
def test_a_command_of_one_process_is_refused_under_torchrun_by_rank_0_alone(tmp_path, monkeypatch, command):
    """`torchrun --nproc_per_node 2 -m mmgen generate …` ran the whole command in each process: the same file written
    twice at once (one failed "already exists"). Refused, exit 2 on every rank, said once (rank 0)."""
    args = [*command, tmp_path / "out"] if command[-1] == "-o" else command
    said = {}
    for rank in (0, 1):
        _job(monkeypatch, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
             MASTER_PORT="29500")
        said[rank] = run_here(*args, env=mmgen_env(tmp_path))
    assert [said[r].returncode for r in (0, 1)] == [2, 2], said
    assert said[0].stderr == (f"mmgen: error: {command[0]} runs as one process, not under torchrun (WORLD_SIZE=2): "
                              "only batch and finetune split their work over several processes\n"), said[0].stderr
    assert said[1].stderr == "" and said[0].stdout == said[1].stdout == ""
    assert not list(tmp_path.glob("out*"))


@pytest.mark.parametrize(("args", "said"), [
    (["batch", "jobs.yaml", "--nope"], "No such option: --nope"),
    (["batch", "jobs.yaml", "--precision", "xx"], "--precision: 'xx' is not one of 'auto', 'fp32', 'fp16', 'bf16'."),
    (["bach", "jobs.yaml"], "No such command 'bach'. Did you mean 'batch'?"),
    (["finetune", "clips", "--steps", "0"], "--steps: must be at least 1, got 0"),
])
def test_a_mistake_in_the_command_line_under_torchrun_is_said_by_rank_0_alone(tmp_path, monkeypatch, args, said):
    """`torchrun --nproc_per_node 2 -m mmgen batch jobs.yaml --nope`: every process parsed the one command line, and
    each said `No such option: --nope`. Rank 0 says it; every rank exits 2. (`models` and `doctor` run as they are in
    any process, a worker script's own line: each says its own.)"""
    from mmgen.runtime import torchrun

    (tmp_path / "jobs.yaml").write_text("jobs:\n  - kind: generate\n    model: demo\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torchrun, "RANK_0_SAYS_WITHIN_S", 0.0)  # rank 1's wait for rank 0 to say it (played first)
    every_rank_reads_alike(monkeypatch)
    result = {}
    for rank in (0, 1):
        _job(monkeypatch, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
             MASTER_PORT="29500", TORCHELASTIC_RUN_ID="job")
        result[rank] = run_here(*args, env=mmgen_env(tmp_path))
    assert [result[r].returncode for r in (0, 1)] == [2, 2], result
    assert result[0].stderr == f"mmgen: error: {said}\n" and result[1].stderr == "", result
    assert not (tmp_path / "runs").exists()
    own = run_here("models", "list", "--nope", env=mmgen_env(tmp_path))  # rank 1's
    assert (own.returncode, own.stderr) == (2, "mmgen: error: No such option: --nope\n")


@pytest.mark.parametrize(("args", "code"), [([], 2), (["batch", "--help"], 0), (["--help"], 0)])
def test_the_help_under_torchrun_is_printed_by_rank_0_alone(tmp_path, monkeypatch, args, code):
    """`torchrun --nproc_per_node 2 -m mmgen` (no command) printed the whole help once per process, one after the
    other (and so did --help): every process parsed the one command line. Rank 0 prints it; the exit codes stay.
    (`models --help` is any process's own, as the models commands are.)"""
    from mmgen.runtime import torchrun

    monkeypatch.setattr(torchrun, "RANK_0_SAYS_WITHIN_S", 0.0)
    result = {}
    for rank in (0, 1):
        _job(monkeypatch, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
             MASTER_PORT="29500", TORCHELASTIC_RUN_ID="job")
        result[rank] = run_here(*args, env=mmgen_env(tmp_path))
    assert [result[r].returncode for r in (0, 1)] == [code, code], result
    assert "Usage: mmgen" in result[0].stdout and result[0].stderr == "", result[0]
    assert result[1].stdout in ("", "\n") and result[1].stderr == "", result[1]  # (--help: click's line end after it)
    own = run_here("models", "--help", env=mmgen_env(tmp_path))  # rank 1's
    assert own.returncode == 0 and "Usage: mmgen models" in own.stdout, own


def test_a_silent_rank_waits_for_rank_0_to_say_the_mistake_until_torchrun_stops_it(tmp_path, monkeypatch):
    """`torchrun --nproc_per_node 2 -m mmgen finetune … --log-every 1`: rank 1 exited 2 at once, in silence, and
    torchrun stopped rank 0 (SIGTERM) before it had said `No such option`: the user saw only `interrupted (SIGTERM)`
    and torchrun's traceback. A silent rank waits until torchrun stops it (rank 0 has ended), then exits 2 in
    silence still: no stop line of its own."""
    from mmgen.runtime import torchrun

    monkeypatch.setattr(torchrun, "RANK_0_SAYS_WITHIN_S", 60.0)
    _job(monkeypatch, WORLD_SIZE="2", RANK="1", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500",
         TORCHELASTIC_RUN_ID="job")
    stops, ended = [], threading.Event()

    def torchrun_stops_the_rest() -> None:  # as rank 0 has ended, while rank 1 waits (if it does)
        while not ended.wait(0.05):
            if getattr(signal.getsignal(signal.SIGTERM), "__qualname__", "").endswith("leave_the_word_to_rank_0"
                                                                                      ".<locals>.ended"):
                stops.append("SIGTERM")
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=torchrun_stops_the_rest, daemon=True).start()
    done = run_here("batch", "jobs.yaml", "--nope", env=mmgen_env(tmp_path))
    ended.set()
    assert (done.returncode, done.stdout, done.stderr) == (2, "", ""), done
    assert stops == ["SIGTERM"]  # it was still waiting when torchrun stopped it


def test_a_job_s_variables_left_in_a_shell_silence_no_mistake_and_no_help(tmp_path, monkeypatch):
    """WORLD_SIZE=2 RANK=1 MASTER_ADDR/PORT left in a shell (or ranks started by hand, each in a terminal of its own):
    no torchrun stands behind the process, and nobody else would say its mistakes or print its help."""
    _job(monkeypatch, WORLD_SIZE="2", RANK="1", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")
    done = run_here("batch", "jobs.yaml", "--nope", env=mmgen_env(tmp_path))
    assert (done.returncode, done.stderr) == (2, "mmgen: error: No such option: --nope\n"), done
    shown = run_here("--help", env=mmgen_env(tmp_path))
    assert shown.returncode == 0 and "Usage: mmgen" in shown.stdout, shown


@pytest.mark.parametrize("environment", [{"WORLD_SIZE": "2"}, {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1",
                                                                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}])
def test_models_and_doctor_run_in_any_process_whatever_the_job_environment(tmp_path, monkeypatch, environment):
    """A WORLD_SIZE left over (or a torchrun worker's script listing models) refused `mmgen doctor` — where a user
    goes to find out what is wrong — and `mmgen models list`: they read, or write the cache under its locks."""
    _job(monkeypatch, **environment)
    for command in (["models", "list"], ["doctor"]):
        done = run_here(*command, env=mmgen_env(tmp_path))
        assert done.returncode == 0 and "demo" in done.stdout and "torchrun" not in done.stderr, (command, done)


def test_a_job_of_one_is_a_plain_run(tmp_path, monkeypatch):
    """WORLD_SIZE=1 (`torchrun --nproc_per_node 1`) runs every command as it is."""
    _job(monkeypatch, WORLD_SIZE="1")
    assert run_here("models", "list", env=mmgen_env(tmp_path)).returncode == 0


@pytest.mark.parametrize("rank", [0, 1])
def test_a_process_waiting_for_its_job_says_so_and_a_stop_ends_it(tmp_path, monkeypatch, rank):
    """A plain `mmgen batch` with a stale WORLD_SIZE=2 RANK=0 MASTER_ADDR MASTER_PORT in its environment waited in
    torch's rendezvous for a second process that never came: silently, for 30 minutes, and neither SIGTERM nor
    Ctrl-C ended it (only kill -9). It says what it waits for, and a stop ends it: 143 for SIGTERM (130 for Ctrl-C,
    the same way: stop_signals), nothing written. Rank 1 says its stop's line too (it was silent: in a job rank 0
    says it for every process, but a process waiting to join is alone). Played in this process (one of its own took
    ~4 s to start, 15 s under load): the SIGTERM is a real one, to this process; torch's wait, deaf to it, would
    hold the main thread, so a watchdog ends the process instead of a hang. The test then plays the other rank, which
    ends the rendezvous left waiting on its thread."""
    import faulthandler
    from datetime import timedelta

    import torch.distributed as dist

    from mmgen.runtime import torchrun

    stop = signal.SIGTERM
    (tmp_path / "jobs.yaml").write_text("jobs:\n  - kind: generate\n    model: demo\n    steps: 2\n")
    with socket.socket() as s:  # a free port (taken by no one else between here and the rendezvous, as a rule)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _job(monkeypatch, WORLD_SIZE="2", RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    monkeypatch.setattr(torchrun, "waiting", False)  # (a stop leaves it set: back as it was afterwards)
    stopped = []

    def stop_once_it_waits() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not torchrun.waiting:
            time.sleep(0.02)
        if torchrun.waiting:
            time.sleep(0.2)  # (the main thread back in its wait)
            stopped.append(stop)
            os.kill(os.getpid(), stop)

    stopper = threading.Thread(target=stop_once_it_waits, daemon=True)
    stopper.start()
    faulthandler.dump_traceback_later(60, exit=True)  # (torch's own wait is 30 minutes, deaf to the stop)
    try:
        done = run_here("batch", tmp_path / "jobs.yaml", "-o", tmp_path / "out", env=mmgen_env(tmp_path))
    finally:
        faulthandler.cancel_dump_traceback_later()
        stopper.join()
        other = dist.TCPStore("127.0.0.1", port, 2, rank == 1, timeout=timedelta(seconds=20))  # the other rank
        for waiting in [t for t in threading.enumerate() if t.name == "mmgen-rendezvous"]:
            waiting.join(20)
        del other
    assert stopped == [stop] and done.returncode == 128 + stop, done
    said = done.stderr
    assert said.startswith(f"mmgen: waiting for 2 processes to join (WORLD_SIZE=2, RANK={rank}, at 127.0.0.1:{port}); "
                           "Ctrl-C to stop\n"), said
    assert said.splitlines()[-1].startswith(f"mmgen: rank {rank}: interrupted") and said.endswith("nothing written\n"), said
    assert not (tmp_path / "out").exists()
    assert not [t for t in threading.enumerate() if t.name == "mmgen-rendezvous" and t.is_alive()]  # met, and gone


def test_finetune_s_process_with_no_gpu_of_its_own_says_so_itself_before_joining(monkeypatch):
    """`torchrun --nproc_per_node 4` on a machine with 2 GPUs: rank 3 failed in torch.cuda.set_device(3); now it
    says why, as its own line (each process that meets it says it; rank 0's GPU is there)."""
    import torch

    from mmgen.errors import UsageError
    from mmgen.runtime import processes

    for name, value in {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "3", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UsageError, match=r"^LOCAL_RANK=3, but this machine has 2 GPUs .*--nproc_per_node 2 or") as e:
        processes.start("cuda")
    assert not e.value.every_process


_ORPHAN = """
import os, signal, sys, time
from mmgen.runtime import torchrun
signal.signal(signal.SIGTERM, lambda *_: (print("SIGTERM", flush=True), os._exit(0)))
torchrun.follow_launcher(0.05)
print("started", os.getpid(), flush=True)
time.sleep(20)
print("still running", flush=True)
"""


@pytest.mark.parametrize("torchrun_s", [True, False])
def test_a_torchrun_process_whose_launcher_was_killed_stops(tmp_path, torchrun_s):
    """`kill -9` of the torchrun launcher left both workers training as orphans (torchrun starts them in sessions of
    their own: no signal reached them), holding the run folder's lock. A process torchrun started now sends itself
    SIGTERM once its parent is gone: the ordinary stop (a checkpoint, exit 143). One not started by torchrun (a
    shell's child, under nohup) is left alone."""
    env = {k: v for k, v in mmgen_env(tmp_path).items() if not k.startswith(("TORCHELASTIC", *JOB))}
    if torchrun_s:
        env["TORCHELASTIC_RUN_ID"] = "none"
    launcher = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                                 f"subprocess.Popen([sys.executable, '-c', {_ORPHAN!r}]); time.sleep(20)"],
                                env=env, stdout=subprocess.PIPE, text=True)
    orphan = None
    try:
        started, orphan = launcher.stdout.readline().split()
        assert started == "started"
        launcher.kill()
        launcher.wait()
        if torchrun_s:
            assert launcher.stdout.readline() == "SIGTERM\n"  # (the orphan holds the pipe open until then)
        else:
            ready, _, _ = select.select([launcher.stdout], [], [], 0.5)
            assert not ready  # still running, as an orphan: not ours to stop
    finally:
        launcher.kill()
        if orphan is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(orphan), signal.SIGKILL)


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize(("error", "code", "said"), [
    (OSError(errno.EIO, "Input/output error", "clips/a.mp4"), 1,
     "OSError: [Errno 5] Input/output error: 'clips/a.mp4' (run with --debug for the traceback)"),
    (MemoryError(), 1, "out of memory"),
])
def test_an_error_one_rank_met_and_shared_is_said_by_rank_0_alone_with_its_exit_code(monkeypatch, capsys, rank,
                                                                                       error, code, said):
    """An error that one process of a job met and handed to every process (processes.gather_or_fail: a rank's share
    of the clips failed to decode) ends every process alike: rank 0 says its line, the others are silent, all with
    the exit code the failing process would have had — whatever the error (not only mmgen's own)."""
    from mmgen.cli import _failed

    _job(monkeypatch, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
         MASTER_PORT="29500")
    error.every_process = True
    assert _failed(error) == code
    err = capsys.readouterr().err
    assert (said in err and err.count("\n") == 1) if rank == 0 else err == "", err


_STUCK_IN_A_COLLECTIVE = """
import ctypes
from mmgen.runtime import stop_signals
from mmgen.runtime.stuck_stops import answer_stuck_stops
with stop_signals.stops_interrupt():  # as a command runs: a stop raises KeyboardInterrupt, once Python sees it
    answer_stuck_stops(0.2)
    mutex, lock = ctypes.create_string_buffer(64), ctypes.CDLL(None).pthread_mutex_lock
    lock(mutex)
    print("waiting for rank 1", flush=True)
    lock(mutex)  # a wait in C that no signal ends, as gloo's for a peer that never answers
"""


def rank_0_of_two_running(script: str, tmp_path: Path) -> subprocess.Popen:
    """`script` run as rank 0 of a 2-process torchrun job would be (its environment; no rendezvous), pipes open."""
    env = {**mmgen_env(tmp_path), "TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    return subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


_BUSY_IN_ONE_C_CALL = """
import hashlib, sys
from mmgen.runtime import stop_signals
from mmgen.runtime.stuck_stops import answer_stuck_stops
try:
    with stop_signals.stops_interrupt():
        answer_stuck_stops(0.2)
        print("computing", flush=True)
        hashlib.pbkdf2_hmac("sha256", b"x", b"y", 1_500_000)  # one C call longer than the grace, a core busy
except KeyboardInterrupt:
    print("stopped by its own handler", flush=True)
    sys.exit(143)
"""


def in_its_long_op(worker: subprocess.Popen) -> None:
    """Wait until `worker`'s main thread has computed 50 ms since it said "computing": it is inside the C call then
    (a stop before it is taken by the ordinary handler, and tests nothing)."""

    def cpu_ticks() -> int:  # utime + stime of the main thread, in clock ticks (proc(5))
        fields = Path(f"/proc/{worker.pid}/task/{worker.pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12])

    start, deadline = cpu_ticks(), time.monotonic() + 20
    while cpu_ticks() - start < 0.05 * os.sysconf("SC_CLK_TCK") and time.monotonic() < deadline:
        time.sleep(0.005)


def test_a_worker_busy_in_one_long_op_takes_its_stop_when_the_op_returns_not_cut_short(tmp_path):
    """A CPU step of the paper's model holds Python's handlers for tens of seconds inside one C++ op: a stop meanwhile
    is no stuck peer, and the process must get to its own stop (its checkpoint) instead of being ended without one."""
    worker = rank_0_of_two_running(_BUSY_IN_ONE_C_CALL, tmp_path)
    try:
        assert worker.stdout.readline() == "computing\n"
        in_its_long_op(worker)
        worker.send_signal(signal.SIGTERM)
        out, said = worker.communicate(timeout=20)
    finally:
        worker.kill()
    assert (worker.returncode, out, said) == (143, "stopped by its own handler\n", "")


def test_a_busy_worker_starved_of_cpu_by_other_work_is_not_taken_for_a_stuck_one(tmp_path):
    """A user's machine busy with other work: the worker computing in one long op is runnable but gets almost no
    CPU time (here its thread is SCHED_IDLE, on a core four other programs spin on: under 5% of it). Judged by CPU
    time alone it looked like a wait for a peer and was ended without its checkpoint; it takes its own stop once
    the op returns."""
    core = min(os.sched_getaffinity(0))
    spin = f"import os, sys\nos.sched_setaffinity(0, {{{core}}})\nsys.stdin.read(1)\nwhile True: pass\n"
    spinners = [subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE, text=True) for _ in range(4)]
    worker = rank_0_of_two_running(_BUSY_IN_ONE_C_CALL, tmp_path)
    try:
        assert worker.stdout.readline() == "computing\n"
        in_its_long_op(worker)
        os.sched_setaffinity(worker.pid, {core})  # its main thread, in the op
        os.sched_setscheduler(worker.pid, os.SCHED_IDLE, os.sched_param(0))
        for spinner in spinners:
            spinner.stdin.write("go")
            spinner.stdin.flush()
        worker.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):  # grace windows of 0.2 s, starved (ended: cut short)
            worker.wait(timeout=1)
        for spinner in spinners:
            spinner.kill()
        with contextlib.suppress(PermissionError, ProcessLookupError):  # the rest of its op at its old share
            os.sched_setscheduler(worker.pid, os.SCHED_OTHER, os.sched_param(0))
        out, said = worker.communicate(timeout=20)
    finally:
        for process in [*spinners, worker]:
            process.kill()
            process.wait()
    assert (worker.returncode, out, said) == (143, "stopped by its own handler\n", "")


def test_a_worker_stuck_waiting_for_a_peer_that_never_answers_stops_on_sigterm_with_a_line(tmp_path):
    """`kill -STOP` of rank 1, then `kill -TERM` of torchrun: rank 0, waiting in C++ for rank 1 (a gradient
    all-reduce), never ran its SIGTERM handler — no line, no checkpoint — until torchrun SIGKILLed it 30 s later. A
    stop no handler takes ends it (exit 143), saying why no checkpoint was saved."""
    worker = rank_0_of_two_running(_STUCK_IN_A_COLLECTIVE, tmp_path)
    try:
        assert worker.stdout.readline() == "waiting for rank 1\n"
        time.sleep(0.2)  # into the wait: a stop a bytecode before it would be taken by the ordinary handler
        worker.send_signal(signal.SIGTERM)
        _, said = worker.communicate(timeout=5)
    finally:
        worker.kill()
    assert worker.returncode == 143
    assert said == ("mmgen: stopped (SIGTERM) while waiting for another process of the job, which does not answer "
                    "(stopped or hung); no checkpoint saved\n")
