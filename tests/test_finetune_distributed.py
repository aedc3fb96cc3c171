"""`torchrun --nproc_per_node 2 -m mmgen finetune …` on CPU (gloo): two processes train one model on halves of
each batch, end with identical weights, and write one set of outputs between them. Ctrl-C stops the job with a
checkpoint and prints the torchrun command that resumes it, and the resumed job ends bitwise where an
uninterrupted one does."""

from __future__ import annotations

import errno
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from finetune_clips import write_clip_folder, write_recipe
from mmgen_cli import mmgen_env
from safetensors.torch import load_file
from two_ranks import run_as_two_ranks

from mmgen.models import build_model
from mmgen.train.runlog import read_log
from mmgen.train.step_folders import latest_checkpoint
from mmgen.train.trainer import parameters_digest
from mmgen.weights import load_model

STEPS = 4
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # what the `torchrun` script runs


@dataclass(frozen=True)
class Job:
    data: Path
    recipe: Path
    env: dict[str, str]
    run_dir: Path  # the uninterrupted 2-process run
    stderr: str

    def finetune(self, run_dir: Path) -> list[str]:
        return ["-m", "mmgen", "finetune", str(self.data), "--scratch", "--config", str(self.recipe),
                "-o", str(run_dir), "--steps", str(STEPS), "--batch-size", "4", "--sample-every", "0",
                "--save-every", "0"]  # fmt: skip


def torchrun(*args: str) -> list[str]:
    return [*TORCHRUN, "--standalone", "--nproc_per_node", "2", *args]


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Job:
    base = tmp_path_factory.mktemp("torchrun")
    data = base / "clips"
    write_clip_folder(data, good=2, seconds=2.0)
    recipe = write_recipe(base / "recipe.yaml", log_every=1, ema_decay=0.9)
    env = mmgen_env(base, OMP_NUM_THREADS="1")
    straight = Job(data, recipe, env, base / "straight", "")
    result = subprocess.run(
        torchrun(*straight.finetune(straight.run_dir)), env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return Job(data, recipe, env, straight.run_dir, result.stderr)


def test_two_processes_train_one_model_and_write_one_set_of_outputs(job):
    # Rank 0 alone speaks and writes: one data report, one log history, one checkpoint, one model.
    assert job.stderr.count("data: 20 clips from 2 of 4 files") == 1
    assert job.stderr.count(f"done: {STEPS} steps") == 1
    assert ", 2 processes" in job.stderr
    run_dir = job.run_dir
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "log.jsonl",
        "model.json",
        "model.safetensors",
    ]
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == [f"step-{STEPS:07d}"]
    log = read_log(run_dir / "log.jsonl")
    assert [e["event"] for e in log] == ["data", "start"] + ["train"] * STEPS + ["checkpoint", "done"]

    # Both ranks' weights, hashed by each process at the end, are identical — and are the weights rank 0 saved.
    digests = log[-1]["process_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    raw = load_model(run_dir / "checkpoints" / f"step-{STEPS:07d}" / "model.safetensors")
    assert parameters_digest(raw.model) == digests[0]
    assert (
        load_file(run_dir / "model.safetensors").keys()
        == build_model("mm-unet", raw.config).state_dict().keys()
    )


def test_ctrl_c_stops_the_job_with_a_checkpoint_and_the_printed_torchrun_command_resumes_it(job, tmp_path):
    # Ctrl-C in a terminal reaches torchrun alone (its workers run in their own sessions); torchrun passes one
    # SIGINT to each worker, which finish the step, save together and exit.
    run_dir = tmp_path / "stopped"
    process = subprocess.Popen(
        torchrun(*job.finetune(run_dir)),
        env=job.env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith(f"step 1/{STEPS} "):
            break
    else:
        process.wait()
        raise AssertionError("the job ended before step 1:\n" + "".join(seen))
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    process.wait(timeout=120)  # torchrun itself then reports the signal: its exit status is its own affair
    stopped = latest_checkpoint(run_dir / "checkpoints")
    assert stopped is not None and 1 <= stopped.step < STEPS, rest
    assert rest.count(f"stopped at step {stopped.step}/{STEPS}; checkpoint saved") == 1, rest
    assert not (run_dir / "model.safetensors").exists()
    (command,) = [line.split("resume with:", 1)[1] for line in rest.splitlines() if "resume with:" in line]
    argv = shlex.split(command)
    assert argv[:4] == ["torchrun", "--standalone", "--nproc_per_node", "2"] and argv[-1] == "--resume", rest

    resumed = subprocess.run([*TORCHRUN, *argv[1:]], env=job.env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {stopped.step}" in resumed.stderr
    assert "random streams restarted" not in resumed.stderr  # each rank got its own generators back
    for name in ("model.safetensors", f"checkpoints/step-{STEPS:07d}/model.safetensors"):
        ours, theirs = load_file(run_dir / name), load_file(job.run_dir / name)
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name
    log = read_log(run_dir / "log.jsonl")
    assert [e["step"] for e in log if e["event"] == "train"] == list(range(1, STEPS + 1))



def test_a_job_without_o_trains_in_one_run_folder_whenever_its_processes_start(tmp_path, monkeypatch, capsys):
    """Without -o each process named the run folder from its own clock (runs/finetune-DATE-TIME): the processes of
    a job that started in different seconds looked at different folders (a process whose name was taken by a
    non-empty folder refused to start while the others trained; rank 1 named a folder that never existed in the clip
    cache's skip records). The job's folder is rank 0's (Processes.as_main). The ranks are played in this process
    (tests/two_ranks.py), rank 1's clock a minute later, up to where the run looks at its folder."""
    import importlib

    from mmgen.cli import run
    from mmgen.errors import UsageError
    from mmgen.train import trainer

    data = tmp_path / "clips"
    write_clip_folder(data, good=1, seconds=1.0)
    recipe = write_recipe(tmp_path / "recipe.yaml", log_every=1)
    monkeypatch.chdir(tmp_path)
    for name, value in mmgen_env(tmp_path).items():
        if name.startswith(("MMGEN_", "XDG_")):
            monkeypatch.setenv(name, value)

    started = time.time()

    def clock_name(rank: int, form: str = "finetune-%Y%m%d-%H%M%S") -> str:  # rank 1 started a minute later
        return time.strftime(form, time.localtime(started + 60 * rank))

    monkeypatch.setattr(importlib.import_module("mmgen.cli.finetune"), "time",
                        SimpleNamespace(strftime=lambda form: clock_name(int(os.environ["RANK"]), form)))
    looked_at = {}

    def looks_at_its_folder(data_dir, run_dir, *args, **kwargs):  # (where training would begin)
        looked_at[int(os.environ["RANK"])] = run_dir
        raise UsageError("seen")

    monkeypatch.setattr(trainer, "prepare", looks_at_its_folder)
    said = run_as_two_ranks(monkeypatch, capsys, lambda: run(
        ["finetune", str(data), "--scratch", "--config", str(recipe), "--steps", "1", "--sample-every", "0"]))
    assert [said[rank][0] for rank in (0, 1)] == [2, 2], said
    assert clock_name(1) != clock_name(0)
    assert looked_at == {0: Path("runs") / clock_name(0), 1: Path("runs") / clock_name(0)}, said


def test_a_run_resumed_with_other_processes_says_how_many_in_words():
    """`resumed with 1 processes instead of 2`: the count and its noun as every other count (terminal.counted)."""
    from mmgen.train.state import streams_restarted

    assert streams_restarted(1, 2) == "resumed with 1 process instead of 2: random streams restarted"
    assert streams_restarted(4, 2) == "resumed with 4 processes instead of 2: random streams restarted"


def played_as_two_ranks(data, tmp_path, monkeypatch, capsys, *, rank_1_says=None, cache_of_each_rank=False) -> dict:
    """{rank: (exit code, stderr)} of `mmgen finetune` over the clips in `data`, its two ranks played in this
    process (tests/two_ranks.py): each machine's own clip cache (--cache-dir on a local disk) where asked."""
    from mmgen.cli import run

    recipe = write_recipe(tmp_path / "recipe.yaml", log_every=1)
    for name, value in mmgen_env(tmp_path).items():
        if name.startswith(("MMGEN_", "XDG_")):
            monkeypatch.setenv(name, value)

    def finetune() -> int:
        cache = ["--cache-dir", str(tmp_path / f"cache-of-rank-{os.environ['RANK']}")] if cache_of_each_rank else []
        return run(["finetune", str(data), "--scratch", "--config", str(recipe), "-o", str(tmp_path / "run"),
                    "--steps", "1", "--sample-every", "0", *cache])

    return run_as_two_ranks(monkeypatch, capsys, finetune, rank_1_says)


def test_a_rank_that_fails_while_indexing_the_clips_stops_every_rank_said_once_by_rank_0(
    tmp_path, monkeypatch, capsys
):
    """After the job's decoding each rank indexes every file, and decodes itself one its own clip cache lacks (each
    machine's --cache-dir on a local disk). A failure there was that rank's alone: rank 1 said it and ended while
    rank 0 went on to wait at the job's next collective. Every rank now stops there with it: said once, by rank 0,
    each rank exiting 1."""
    from mmgen.data.clip_cache import ClipCache
    from mmgen.data.clips import scan_media
    from mmgen.disk_failures import read_failure

    data = tmp_path / "clips"
    write_clip_folder(data, good=2, seconds=1.0)
    files = scan_media(data)[0]
    decode = ClipCache._decode

    def rank_1_cannot_read_rank_0s_share(self, path):  # its machine's mount of the folder fails on those files
        if os.environ["RANK"] == "1" and files.index(path) % 2 == 0:
            raise read_failure(path, OSError(errno.EIO, "Input/output error", str(path)))
        return decode(self, path)

    def rank_1_says(word):  # at the gather after indexing (each says only whether it failed): rank 1's failure
        return (None, read_failure(files[0], OSError(errno.EIO, "Input/output error"))) if word == (None, None) else word

    monkeypatch.setattr(ClipCache, "_decode", rank_1_cannot_read_rank_0s_share)
    said = played_as_two_ranks(data, tmp_path, monkeypatch, capsys, rank_1_says=rank_1_says, cache_of_each_rank=True)
    line = (f"mmgen: error: cannot read {files[0]}: Input/output error (the disk holding it failed; copy it from a good "
            "one and run it again)\n")
    assert said == {0: (1, line), 1: (1, "")}


def test_a_folder_with_no_usable_clips_is_said_once_by_rank_0(tmp_path, monkeypatch, capsys):
    """Every rank indexes every file, so each one finds that none yields a clip, and each said so: the same line
    once per process. It is about the one folder all of them look at, said once, as its other refusals are."""
    data = tmp_path / "clips"
    data.mkdir()
    write_clip_folder(data, good=0)  # a corrupt mp4, one with no sound, two that are not videos
    said = played_as_two_ranks(data, tmp_path, monkeypatch, capsys)
    assert said[0][0] == said[1][0] == 2, said
    assert said[0][1].startswith(f"mmgen: error: {data}: no usable clips in 2 video files; 2 skipped"), said
    assert said[1][1] == "", said


@pytest.mark.parametrize("raised, line", [
    ("DistBackendError: NCCL communicator was aborted on rank 1.",
     "a collective operation of the job failed (NCCL communicator was aborted on rank 1): another process may have "
     "ended, or the network between them failed (each process's own output says why)"),
    ("RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting "
     "1800000ms for recv operation to complete",
     "another process of the job did not answer within 30 min, the job's timeout: it hangs or is stuck (its own "
     "output says why)"),
], ids=["nccl-aborted", "gloo-timed-out"])
def test_a_collective_that_fails_in_the_backend_is_one_line_naming_the_rank_and_what_happened(
    tmp_path, monkeypatch, capsys, raised, line
):
    """A collective that failed in torch.distributed's backend (DistBackendError: NCCL's communicator aborted as
    another rank died) or timed out (gloo's, as another rank hung) was `DistBackendError: <NCCL's text> (run with
    --debug …)` or gloo's raw `[…/unbound_buffer.cc:81] …` line. Each rank that meets it now says one line of its
    own, naming itself (the rank that failed may be rank 0), and exits 1; --debug still shows torch's traceback."""
    import torch.distributed as dist

    kind, text = raised.split(": ", 1)

    def fails_at_the_collective(word):
        raise getattr(dist, kind, RuntimeError)(text)

    data = tmp_path / "clips"
    write_clip_folder(data, good=1, seconds=1.0)
    said = played_as_two_ranks(data, tmp_path, monkeypatch, capsys, rank_1_says=fails_at_the_collective)
    assert said == {rank: (1, f"mmgen: error: rank {rank} of 2: {line}\n") for rank in (0, 1)}
    monkeypatch.setenv("MMGEN_DEBUG", "1")
    debug = played_as_two_ranks(data, tmp_path, monkeypatch, capsys, rank_1_says=fails_at_the_collective)
    assert f"{kind}: {text}" in debug[0][1] and "Traceback" in debug[0][1]
    assert debug[0][1].endswith(f"mmgen: error: rank 0 of 2: {line}\n")


@pytest.mark.parametrize("raised", ["Socket Timeout", "Connection reset by peer"])
def test_a_library_s_socket_error_outside_torchrun_is_its_own_not_another_process_s(monkeypatch, capsys, raised):
    """Outside a torchrun job, a library's `RuntimeError: Socket Timeout` or `Connection reset by peer` (a model
    listing's, here) was said as `another process of the job did not answer …` — no job, no other process. Only a
    job of several processes reads gloo's words so; torch.distributed's own errors are its failures anywhere."""
    import torch.distributed as dist

    from mmgen.cli import run
    from mmgen.weights import catalog

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)

    def fails(error):
        def listing(**_):
            raise error
        return listing

    monkeypatch.setattr(catalog, "catalog", fails(RuntimeError(raised)))
    assert run(["models", "list", "--json"]) == 1
    assert capsys.readouterr().err == (f"mmgen: error: RuntimeError: {raised} (run with --debug for the "
                                       "traceback)\n")
    monkeypatch.setattr(catalog, "catalog", fails(dist.DistNetworkError(raised)))
    assert run(["models", "list", "--json"]) == 1
    assert capsys.readouterr().err == "mmgen: error: another process of the job ended (its own output says why)\n"


def two_ranks_given(tmp_path, monkeypatch, capsys, rank_1_flags: list[str], rank_1_says, rank_1_data=None) -> dict:
    """{rank: (exit code, stderr)} of `mmgen finetune`, its two ranks played in this process (tests/two_ranks.py),
    rank 1 given `rank_1_flags` besides the command line both were given, and `rank_1_data` for its clips where
    given (a launcher script's mistake); rank 0, played first, hears rank 1 say `rank_1_says` of its own word (a
    settings_agreement.Word, or None with a refusal) at the gather before they join."""
    from mmgen.cli import run
    from mmgen.train.settings_agreement import Word

    data = tmp_path / "clips"
    write_clip_folder(data, good=1, seconds=1.0)
    recipe = write_recipe(tmp_path / "recipe.yaml", log_every=1)
    for name, value in mmgen_env(tmp_path).items():
        if name.startswith(("MMGEN_", "XDG_")):
            monkeypatch.setenv(name, value)

    def finetune() -> int:
        rank_1 = os.environ["RANK"] == "1"
        return run(["finetune", str(rank_1_data if rank_1 and rank_1_data else data), "--scratch", "--config",
                    str(recipe), "-o", str(tmp_path / "run"), "--steps", "2", "--sample-every", "0",
                    *rank_1_flags * rank_1])

    return run_as_two_ranks(monkeypatch, capsys, finetune,
                            lambda word: rank_1_says(word) if isinstance(word[0], Word) else word)


def test_a_setting_only_one_rank_refuses_is_said_by_rank_0_and_every_rank_exits_2(tmp_path, monkeypatch, capsys):
    """`--steps 0` given to rank 1 alone: rank 1 exited 2 in silence (its refusal left to rank 0, as if every rank
    met it), while rank 0 waited in init_process_group for it until torchrun killed it 30 s later: no line at all.
    Now every rank gathers its refusal before they join: rank 0 says rank 1's, every rank exits 2, nothing trained."""
    from mmgen.errors import InvalidSetting
    from mmgen.train.config import FinetuneConfig

    def rank_1_refuses(word):  # what rank 1, given --steps 0, says at the gather: its refusal, as its check raised it
        with pytest.raises(InvalidSetting) as refused:
            FinetuneConfig(steps=0)
        return None, refused.value

    said = two_ranks_given(tmp_path, monkeypatch, capsys, ["--steps", "0"], rank_1_refuses)
    assert said == {0: (2, "mmgen: error: --steps: must be at least 1, got 0\n"), 1: (2, "")}
    assert not (tmp_path / "run").exists()


def test_help_given_to_one_rank_is_said_by_rank_0_and_every_rank_exits_2(tmp_path, monkeypatch, capsys):
    """`--help` given to rank 1 alone (a launcher script's): rank 1 exited 0, rank 0 waited at the settings agreement
    for it, silent, for half an hour. Rank 1 hands it over there, as a refusal of its command line."""
    from mmgen.train.settings_agreement import ShownInstead

    given = ShownInstead("rank 1 of this torchrun job was given --help, the others a run",
                         hint="give every process the same command line")
    said = two_ranks_given(tmp_path, monkeypatch, capsys, ["--help"], lambda word: (None, given))
    assert said == {0: (2, "mmgen: error: rank 1 of this torchrun job was given --help, the others a run (give every "
                           "process the same command line)\n"), 1: (2, "")}
    assert not (tmp_path / "run").exists()


def test_ranks_given_different_settings_refuse_at_once_naming_the_setting_and_each_rank_s_value(
    tmp_path, monkeypatch, capsys
):
    """`--lr 5e-4` given to rank 1 alone: the job trained to the end, then failed with `RuntimeError: processes
    ended with different weights` (exit 1, hours later). Now the ranks compare their settings before they join."""
    said = two_ranks_given(tmp_path, monkeypatch, capsys, ["--lr", "5e-4"],
                           lambda word: (word[0]._replace(settings={**word[0].settings, "lr": 5e-4}), None))
    line = ("mmgen: error: the processes of this torchrun job were given different lr (rank 0: 0.0001, rank 1: "
            "0.0005) (give every process the same command line and config file)\n")
    assert said == {0: (2, line), 1: (2, "")}
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("given", ["-o", "DATA_DIR"])
def test_ranks_given_different_run_or_clip_folders_refuse_at_once_naming_each_rank_s_folder(
    tmp_path, monkeypatch, capsys, given
):
    """Rank 1 given another clips folder trained apart and failed after decoding with `IndexError: list index out of
    range` (exit 1); given another -o, it was silently put in rank 0's. Ranks on one machine now compare the folders
    they were given before they join, as absolute paths, as they compare their settings."""
    other = tmp_path / "other"
    other.mkdir()
    if given == "-o":
        said = two_ranks_given(tmp_path, monkeypatch, capsys, ["-o", str(other)],
                               lambda word: (word[0]._replace(folders={**word[0].folders, "-o": str(other)}), None))
        values = tmp_path / "run", other
    else:
        said = two_ranks_given(tmp_path, monkeypatch, capsys, [],
                               lambda word: (word[0]._replace(folders={**word[0].folders, "DATA_DIR": str(other)}),
                                             None), rank_1_data=other)
        values = tmp_path / "clips", other
    line = (f"mmgen: error: the processes of this torchrun job were given different {given} (rank 0: "
            f"'{values[0]}', rank 1: '{values[1]}') (give every process the same command line and config file)\n")
    assert said == {0: (2, line), 1: (2, "")}
    assert not (tmp_path / "run").exists() and not list(other.iterdir())


def test_ranks_on_other_machines_may_see_the_shared_folders_at_other_paths(monkeypatch):
    """Two machines of a job mount the shared file system at /shared and at /mnt/shared: their folders are not
    compared, as no path of one names anything on the other. Two ranks of one machine given other clips still are,
    and every rank refuses alike, naming that machine's ranks."""
    from mmgen.errors import UsageError
    from mmgen.runtime import processes
    from mmgen.train.config import FinetuneConfig
    from mmgen.train.settings_agreement import Word, agree, shared_settings

    settings = shared_settings(FinetuneConfig())

    def on(machine: str, shared: str, clips: str = "clips") -> Word:
        return Word({"-o": f"{shared}/run", "DATA_DIR": f"{shared}/{clips}"}, machine, settings)

    def job_of(*heard: Word) -> None:
        class Heard(processes.Processes):
            def gather(self, obj):
                return [(word, None) for word in heard]

        monkeypatch.setattr(processes, "before_joining", lambda: Heard(0, len(heard), 0))

    job_of(on("node 0", "/shared"), on("node 0", "/shared"), on("node 1", "/mnt/shared"), on("node 1", "/mnt/shared"))
    agree(None, FinetuneConfig(), {"-o": "/shared/run", "DATA_DIR": "/shared/clips"})
    job_of(on("node 0", "/shared"), on("node 0", "/shared"), on("node 1", "/mnt/shared"),
           on("node 1", "/mnt/shared", "other"))
    with pytest.raises(UsageError) as refused:
        agree(None, FinetuneConfig(), {"-o": "/shared/run", "DATA_DIR": "/shared/clips"})
    assert refused.value.message == ("the processes of this torchrun job were given different DATA_DIR (rank 2: "
                                     "'/mnt/shared/clips', rank 3: '/mnt/shared/other')")


def test_a_command_line_mistake_one_rank_alone_meets_is_said_by_rank_0_and_every_rank_exits_2(tmp_path):
    """A launcher script that gives rank 1 alone `--steps abc`: rank 1 left its mistake to rank 0 to say, as if
    every rank had met it, and exited 2; rank 0, whose command line was fine, waited for it at the settings
    agreement until torchrun stopped it: `mmgen: interrupted (SIGTERM)`, exit 143, and the mistake said by nobody.
    Now rank 1 hands it over at the agreement: rank 0 says it, every rank exits 2. A real torchrun job."""
    data = tmp_path / "clips"
    write_clip_folder(data, good=1, seconds=1.0)
    recipe = write_recipe(tmp_path / "recipe.yaml", log_every=1)
    launcher = tmp_path / "launch.py"
    launcher.write_text(textwrap.dedent(f"""
        import os, runpy, sys
        sys.argv[1:] = ["finetune", {str(data)!r}, "--scratch", "--config", {str(recipe)!r}, "-o",
                        {str(tmp_path / "run")!r}, "--steps", "abc" if os.environ["RANK"] == "1" else "2"]
        try:
            runpy.run_module("mmgen", run_name="__main__")
        except SystemExit as ended:
            with open(f"{tmp_path}/rank-{{os.environ['RANK']}}.code", "w") as code:
                code.write(str(ended.code))
            raise
    """))
    job = subprocess.run(torchrun(str(launcher)), env=mmgen_env(tmp_path, OMP_NUM_THREADS="1"), capture_output=True,
                         text=True, timeout=300)
    said = [line for line in job.stderr.splitlines() if line.startswith("mmgen")]
    assert said == ["mmgen: error: --steps: expected an integer, got 'abc'"], job.stderr
    assert [(tmp_path / f"rank-{rank}.code").read_text() for rank in (0, 1)] == ["2", "2"]
    assert not (tmp_path / "run").exists()
