"""A creator's batch, run for real with the tiny model at 2 steps: six jobs end to end, a SIGKILL halfway and
a resume that redoes nothing finished, two torchrun processes sharing the work, and a job that fails while
the others carry on.

Every run uses one CPU thread (as torchrun's workers do), so the outputs of different runs can be compared
byte for byte."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cli_here import run_here
from media_factory import write_test_audio, write_test_video
from mmgen_cli import mmgen_command, mmgen_env, run_mmgen
from tiny_model import save_tiny_model, save_tiny_upsampler
from two_ranks import run_as_two_ranks

from mmgen import files
from mmgen.cli import run
from mmgen.disk_failures import writing
from mmgen.errors import UsageError
from mmgen.files import sha256_file
from mmgen.media import probe
from mmgen.pipelines import session
from mmgen.pipelines.batch import MANIFEST_NAME, BatchInvalid, plan_batch, run_batch, run_plan
from mmgen.pipelines.batch import run as batch_run
from mmgen.pipelines.batch.manifest import FileRecord, Manifest, Record
from mmgen.pipelines.batch.written import Written
from mmgen.pipelines.events import ProgressEvent
from mmgen.weights import ModelCache, load_registry
from mmgen.weights.identity import model_sha256s

SIX_JOBS = """
    defaults:
      model: models/tiny.safetensors
      steps: 2
      device: cpu
    jobs:
      - kind: generate
        name: sunrise
        seed: 1
      - kind: generate
        name: sunset
        seed: 2
        previews: false
      - kind: soundtrack
        inputs: clips/*.mp4
        seed: 3
      - kind: animate
        input: music/beat.m4a
        name: dance
    """
OUTPUTS = ["sunrise.mp4", "sunset.mp4", "clip0_soundtrack.mp4", "clip1_soundtrack.mp4", "clip2_soundtrack.mp4",
           "dance.mp4"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder: the tiny model, three clips to soundtrack, a sound to animate, and the batch file."""
    root = tmp_path_factory.mktemp("batch")
    (root / "models").mkdir()
    save_tiny_model(root / "models" / "tiny.safetensors")
    (root / "clips").mkdir()
    for k, tone in enumerate((330.0, 440.0, 550.0)):
        write_test_video(root / "clips" / f"clip{k}.mp4", size=(32, 32), tone_hz=tone)
    (root / "music").mkdir()
    write_test_audio(root / "music" / "beat.m4a", click_at=0.5)
    (root / "jobs.yaml").write_text(textwrap.dedent(SIX_JOBS).lstrip())
    return root


def env_for(workspace: Path) -> dict[str, str]:
    return mmgen_env(workspace, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def uninterrupted(workspace: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """The batch run once, start to finish, into its own folder: what every other run must reproduce."""
    out = workspace / "uninterrupted"
    return out, run_mmgen("batch", workspace / "jobs.yaml", "-o", out, env=env_for(workspace), timeout=900)


def records(out: Path) -> list[dict]:
    path = out / MANIFEST_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def finished(out: Path) -> dict[str, dict]:
    """The last record of each output, if it says done."""
    last = {r["output"]: r for r in records(out)}
    return {name: r for name, r in last.items() if r["state"] == "done"}


def media_files(out: Path) -> dict[str, str]:
    """sha256 of every mp4/png/wav: the sidecars hold paths and wall times, so they differ between runs."""
    return {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.suffix in (".mp4", ".png", ".wav")}


def with_a_tiny_model_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's cache and config under `tmp_path` (as mmgen_env gives a subprocess), and a tiny model file there
    for in-process batches."""
    for name, value in mmgen_env(tmp_path).items():
        if name.startswith(("MMGEN_", "XDG_")):
            monkeypatch.setenv(name, value)
    save_tiny_model(tmp_path / "tiny.safetensors")


def test_six_jobs_run_end_to_end_with_sidecars_and_manifest(workspace: Path, uninterrupted):
    out, result = uninterrupted
    assert result.returncode == 0, result.stderr
    assert "6 jobs: 6 done" in result.stderr
    expected = {*OUTPUTS, *(n.replace(".mp4", ".json") for n in OUTPUTS), "sunrise_frames.png",
                "sunrise_spectrogram.png", MANIFEST_NAME}
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == expected

    sidecars = {name: json.loads((out / name).with_suffix(".json").read_text()) for name in OUTPUTS}
    model_sha256 = sha256_file(workspace / "models" / "tiny.safetensors")
    for name, sidecar in sidecars.items():
        assert sidecar["mp4"] == str(out / name)
        assert (sidecar["model_sha256"], sidecar["sampler"], sidecar["steps"]) == (model_sha256, "dpm++", 2)
        info = probe(out / name)
        assert info.has_video and info.has_audio and info.duration == pytest.approx(1.6, abs=0.07)
    assert [sidecars[n]["seed"] for n in OUTPUTS[:5]] == [1, 2, 3, 3, 3]
    assert sidecars["clip1_soundtrack.mp4"]["input"] == str(workspace / "clips" / "clip1.mp4")
    assert sidecars["dance.mp4"]["input"] == str(workspace / "music" / "beat.m4a")
    assert sidecars["sunset.mp4"]["mp4"] and "frames_png" not in sidecars["sunset.mp4"]

    done = finished(out)
    assert sorted(done) == sorted(OUTPUTS)
    assert [r["job"] for r in records(out) if r["state"] == "started"] == [1, 2, 3, 4, 5, 6]  # one model: file order
    for name, record in done.items():
        assert record["seed"] == sidecars[name]["seed"]
        for file in record["files"].values():
            assert sha256_file(out / file["path"]) == file["sha256"]


def test_a_killed_batch_resumes_without_redoing_finished_jobs(workspace: Path, uninterrupted):
    """Killed for real (SIGKILL, a subprocess); resumed in this process (tests/cli_here.py), on one thread as
    every run here, for speed: what the resume skips and makes is the point."""
    out = workspace / "resumed"
    env = env_for(workspace)
    batch = subprocess.Popen(mmgen_command("batch", workspace / "jobs.yaml", "-o", out), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while len(finished(out)) < 2:
        assert batch.poll() is None, batch.stderr.read()
        assert time.monotonic() < deadline, "the batch did not finish two jobs in time"
        time.sleep(0.02)
    batch.send_signal(signal.SIGKILL)
    batch.wait()
    batch.stderr.close()

    done_before = finished(out)
    assert 2 <= len(done_before) < 6
    stamps = {f["path"]: (out / f["path"]).stat().st_mtime_ns for r in done_before.values() for f in r["files"].values()}
    count_before = len(records(out))

    result = run_here("batch", workspace / "jobs.yaml", "-o", out, env=env)
    assert result.returncode == 0, result.stderr
    assert f"{len(done_before)} of 6 jobs already done: skipped" in result.stderr
    assert {path: (out / path).stat().st_mtime_ns for path in stamps} == stamps
    new_records = records(out)[count_before:]
    assert not {r["output"] for r in new_records} & set(done_before)  # finished jobs were not touched
    assert sorted(finished(out)) == sorted(OUTPUTS)
    assert not [p.name for p in out.iterdir() if ".partial" in p.name]  # the killed job's temporary is gone
    assert media_files(out) == media_files(uninterrupted[0])


def test_a_changed_input_or_option_redoes_only_its_job(workspace: Path, uninterrupted):
    """Planning against the uninterrupted run's manifest (a dry run: nothing is written)."""
    out = uninterrupted[0]
    assert set(plan_batch(workspace / "jobs.yaml", out).status.values()) == {"done"}
    clip, output = workspace / "clips" / "clip1.mp4", out / "sunset.mp4"
    stat, content = clip.stat(), output.read_bytes()
    try:
        clip.touch()
        output.write_bytes(content[:-10])  # damaged: not as the batch wrote it, so replaced only with --overwrite
        with pytest.raises(BatchInvalid) as refused:
            plan_batch(workspace / "jobs.yaml", out)
        (problem,) = refused.value.problems
        assert "sunset.mp4 exists and was changed since this batch wrote it" in problem.message
        plan = plan_batch(workspace / "jobs.yaml", out, overwrite=True)
        assert {job.output: plan.status[job.number] for job in plan.todo()} == {
            "sunset.mp4": "damaged", "clip1_soundtrack.mp4": "changed"}
        output.unlink()  # gone: redone without --overwrite
        assert plan_batch(workspace / "jobs.yaml", out).status[2] == "damaged"
    finally:  # the other tests compare against this run
        os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        output.write_bytes(content)


def test_torchrun_splits_the_jobs_between_two_processes(workspace: Path, uninterrupted):
    out = workspace / "sharded"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mmgen", "batch", str(workspace / "jobs.yaml"), "-o", str(out)]
    result = subprocess.run(command, env=env_for(workspace), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    started = [r for r in records(out) if r["state"] == "started"]
    assert sorted(r["output"] for r in started) == sorted(OUTPUTS)  # each output made exactly once
    assert {r["job"]: r["rank"] for r in started} == {1: 0, 2: 1, 3: 0, 4: 1, 5: 0, 6: 1}
    assert sorted(finished(out)) == sorted(OUTPUTS)
    assert "6 jobs: 6 done" in result.stderr
    assert media_files(out) == media_files(uninterrupted[0])


def test_a_failing_job_is_recorded_and_the_others_go_on(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    """A clip that goes bad after the batch was checked (deleted or overwritten while it ran). The jobs that
    succeed share one model, loaded once."""
    for name, value in env_for(workspace).items():
        if name.startswith(("MMGEN_", "XDG_")):
            monkeypatch.setenv(name, value)
    doomed = workspace / "clips_doomed.mp4"
    write_test_video(doomed, size=(32, 32))
    jobs = workspace / "fragile.yaml"
    jobs.write_text(textwrap.dedent("""
        output_dir: fragile
        defaults: {model: models/tiny.safetensors, steps: 2, device: cpu}
        jobs:
          - kind: soundtrack
            input: clips_doomed.mp4
          - kind: generate
            name: survivor
            seed: 5
          - kind: soundtrack
            input: clips/clip0.mp4
        """).lstrip())
    plan = plan_batch(jobs)
    doomed.write_bytes(b"not a video any more")

    stopped = run_plan(plan, fail_fast=True)
    assert [(o.output, o.ending) for o in stopped] == [("clips_doomed_soundtrack.mp4", "failed"),
                                                      ("survivor.mp4", "not run"),
                                                      ("clip0_soundtrack.mp4", "not run")]
    assert "clips_doomed.mp4" in stopped[0].error

    loads = []
    real_load_model = session.load_model
    monkeypatch.setattr(session, "load_model", lambda *args, **kw: loads.append(args) or real_load_model(*args, **kw))
    carried_on = run_plan(plan)
    assert [o.ending for o in carried_on] == ["failed", "done", "done"]
    assert len(loads) == 1
    last = {r["output"]: r for r in records(workspace / "fragile")}
    assert last["clips_doomed_soundtrack.mp4"]["state"] == "failed" and last["survivor.mp4"]["state"] == "done"
    assert not (workspace / "fragile" / "clips_doomed_soundtrack.mp4").exists()

    write_test_video(doomed, size=(32, 32))  # fixed: the next run retries it and skips the survivor
    assert [plan_batch(jobs).status[n] for n in (1, 2, 3)] == ["failed", "done", "done"]


def one_job(workspace: Path, folder: Path) -> Path:
    jobs = folder / "jobs.yaml"
    jobs.write_text(textwrap.dedent(f"""
        defaults: {{model: {workspace / "models" / "tiny.safetensors"}, steps: 2, device: cpu}}
        jobs:
          - {{kind: generate, name: one, seed: 4, previews: false}}
        """).lstrip())
    return jobs


def test_json_prints_a_line_per_job_on_stdout_as_generate_does_per_clip(workspace: Path, tmp_path: Path):
    """`batch --json`: one object per job on stdout (a done job's carries its sidecar, as `generate --json`
    prints it), the human lines on stderr; a re-run's line says skipped."""
    jobs, out = one_job(workspace, tmp_path), tmp_path / "out"
    first = run_here("batch", jobs, "-o", out, "--json", env=env_for(workspace))
    assert first.returncode == 0, first.stderr
    (line,) = first.stdout.splitlines()
    record = json.loads(line)
    assert record == {"job": 1, "kind": "generate", "output": "one.mp4", "result": "done",
                      "seconds": record["seconds"], **json.loads((out / "one.json").read_text())}
    assert record["mp4"] == str(out / "one.mp4") and record["seed"] == 4
    assert "done job 1/1 (generate) one.mp4" in first.stderr and "{" not in first.stderr

    again = run_here("batch", jobs, "-o", out, "--json", env=env_for(workspace))
    assert again.returncode == 0, again.stderr
    assert [json.loads(line) for line in again.stdout.splitlines()] == [
        {"job": 1, "kind": "generate", "output": "one.mp4", "result": "skipped", "mp4": str(out / "one.mp4")}]


def test_json_of_a_dry_run_is_a_line_per_job_and_with_stdout_closed_it_is_refused(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """`batch --dry-run --json` prints what the table shows, a line per job; `batch --json >&-` is exit 2 before
    anything is written, as `generate --json >&-` is."""
    jobs, out = one_job(workspace, tmp_path), tmp_path / "out"
    dry = run_here("batch", jobs, "-o", out, "--json", "--dry-run", env=env_for(workspace))
    assert dry.returncode == 0, dry.stderr
    (planned,) = map(json.loads, dry.stdout.splitlines())
    assert planned == {"job": 1, "line": 3, "kind": "generate", "input": None, "output": "one.mp4",
                       "mp4": str(out / "one.mp4"), "model": str(workspace / "models" / "tiny.safetensors"),
                       "sampler": planned["sampler"], "steps": 2, "seed": 4, "status": "new"}
    assert "1 job: 1 to run, 0 done (dry run: nothing was run)" in dry.stderr

    monkeypatch.setattr("sys.stdout", None)  # `>&-`
    for name, value in env_for(workspace).items():
        monkeypatch.setenv(name, value)
    assert run(["batch", str(jobs), "-o", str(out), "--json"]) == 2
    assert capsys.readouterr().err.strip().endswith("standard output is closed: there is nowhere to print the JSON")
    assert not out.exists()


def test_the_command_exits_1_when_a_job_fails(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    """A file put where a job's folder goes after the batch was checked (planning refuses one there before)."""
    out = workspace / "blocked"
    jobs = workspace / "blocked.yaml"
    jobs.write_text(textwrap.dedent("""
        output_dir: blocked
        defaults: {model: models/tiny.safetensors, steps: 2, device: cpu}
        jobs:
          - kind: generate
            name: renders/take
        """).lstrip())
    real_replanned = batch_run.replanned

    def blocked_while_starting(plan, *args):
        (out / "renders").write_text("a file where the job needs a folder")
        return real_replanned(plan, *args)

    monkeypatch.setattr(batch_run, "replanned", blocked_while_starting)
    result = run_here("batch", jobs, env=env_for(workspace))
    assert result.returncode == 1, result.stderr
    assert "failed job 1/1 (generate) renders/take.mp4: FileExistsError" in result.stderr
    assert f"mmgen: error: 1 of 1 job failed (errors above and in {out / MANIFEST_NAME})" in result.stderr
    assert "Traceback" not in result.stderr
    assert [r["state"] for r in records(out)] == ["started", "failed"]


def test_a_job_that_runs_out_of_memory_says_so_in_its_row_and_record(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    """A MemoryError (empty: Python's own) in one job was `MemoryError: ` in the table and the manifest; its hint
    said `--batch-size`, a setting no batch job takes: it names what the job's batch file can set."""
    out = workspace / "starved"
    jobs = workspace / "starved.yaml"
    jobs.write_text("output_dir: starved\ndefaults: {model: models/tiny.safetensors, steps: 2, device: cpu}\n"
                    "jobs:\n  - kind: generate\n    name: take\n")

    def out_of_memory(*args):
        raise MemoryError()

    monkeypatch.setattr(batch_run, "load", out_of_memory)
    result = run_here("batch", jobs, env=env_for(workspace))
    assert result.returncode == 1, result.stderr
    assert "failed job 1/1 (generate) take.mp4: out of memory (close other programs, or have the job need less: a " \
           "smaller `model:`, or `upscale: false`)" in result.stderr, result.stderr
    assert [(r["state"], r.get("error")) for r in records(out)] == [("started", None), ("failed", "out of memory")]


def test_a_hand_edited_manifest_keeps_its_good_records_and_skips_the_rest(tmp_path: Path):
    """Lines a kill tore, an editor mangled or another tool wrote are not this batch's records: re-running the
    batch skips them (it crashed on a JSON list, a record with a list of files, or bytes that are not UTF-8)."""
    manifest = Manifest(tmp_path)
    good = Record("a.mp4", "done", "h1", 1, "generate", 7,
                  files={"mp4": FileRecord("a.mp4", 10, "0" * 64)})  # fmt: skip
    manifest.append(good)
    with open(manifest.path, "ab") as f:
        f.write(b'[1, 2]\n{"state": "done", "job": 2, "hash": 5, "files": []}\n\xff\xfe\n{"output": 5}\n')
        f.write(b'{"output": "b.mp4", "state": "done", "hash": "h2", "job": 2, "kind": "generate", "seed": 1,'
                b' "files": {"mp4": {"path": 7, "size": 1, "sha256": "x"}}}\n{"output": "c.mp4", "sta')

    assert {k: dataclasses.replace(r, at="") for k, r in manifest.latest().items()} == {"a.mp4": good}



def two_generate_jobs(workspace: Path, monkeypatch: pytest.MonkeyPatch, out: str) -> Path:
    """A batch file of two quick jobs into workspace/`out`, for runs in this process."""
    for name, value in env_for(workspace).items():
        if name.startswith(("MMGEN_", "XDG_")):
            monkeypatch.setenv(name, value)
    jobs = workspace / f"{out}.yaml"
    jobs.write_text(f"output_dir: {out}\ndefaults: {{model: models/tiny.safetensors, steps: 2, device: cpu}}\n"
                    "jobs:\n  - kind: generate\n    num: 2\n    previews: false\n")
    return jobs


def test_a_finished_batch_is_checked_without_reading_its_outputs_and_an_edit_is_still_seen(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
):
    """Re-running a finished batch of thousands of clips must not read them all again: each file's stamp (size,
    mtime, inode), recorded with its sha256, says it is as written. An edit that keeps the size still moves the
    mtime: that one file is read and found changed, and its job is redone."""
    jobs = two_generate_jobs(workspace, monkeypatch, "stamped")
    jobs.write_text(jobs.read_text().replace("num: 2", "num: 1"))
    assert run(["batch", str(jobs)]) == 0
    read = []  # the outputs that files.sha256_file opens

    def counted(path, *args):
        if Path(path).name.startswith("generate_"):
            read.append(Path(path).name)
        return open(path, *args)

    monkeypatch.setattr(files, "open", counted, raising=False)
    assert set(plan_batch(jobs).status.values()) == {"done"}
    assert read == []

    output = workspace / "stamped" / "generate_1.mp4"
    content = output.read_bytes()
    output.write_bytes(content[:100] + bytes([content[100] ^ 1]) + content[101:])  # one bit, same size
    plan = plan_batch(jobs, overwrite=True)
    assert {job.output: plan.status[job.number] for job in plan.todo()} == {"generate_1.mp4": "damaged"}
    assert read == ["generate_1.mp4"]


def test_a_model_given_by_path_is_read_once_while_it_stays_as_it_is(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    """A batch names a model file by its sha256, and read the whole file (gigabytes for the paper's) at every plan.
    Its stamp, kept with the sha256 in the cache (mmgen.stamps.HashMemo), now says it is unchanged; a file whose
    stamp moved (here only its mtime) is read again, once."""
    jobs = two_generate_jobs(workspace, monkeypatch, "model_by_path")
    model = workspace / "models" / "tiny.safetensors"
    first = plan_batch(jobs)  # hashes the model, unless an earlier plan here has already
    sha256 = sha256_file(model)
    read = []

    def counted(path, *args):
        if Path(path).name == model.name:
            read.append(Path(path).name)
        return open(path, *args)

    monkeypatch.setattr(files, "open", counted, raising=False)
    again = plan_batch(jobs)
    assert read == []
    assert [job.hash for job in again.jobs] == [job.hash for job in first.jobs]
    assert model_sha256s(str(model), load_registry(), ModelCache()) == (sha256,)
    assert read == []

    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        touched = plan_batch(jobs)
        plan_batch(jobs)
    finally:
        os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert read == [model.name]  # the touched file, once
    assert [job.hash for job in touched.jobs] == [job.hash for job in first.jobs]  # the same bytes


def test_a_remembered_sha256_holds_only_while_its_stamp_does_and_a_broken_memo_costs_only_time(tmp_path: Path):
    """An edit of the same size moves the mtime: the file is read again. A memo that is not JSON, or one that cannot
    be written (its folder is a file), gives the same sha256s; it only saves reading."""
    from mmgen.stamps import HashMemo

    file, where = tmp_path / "weights.bin", tmp_path / "memo.json"
    file.write_bytes(b"a" * 64)
    memo = HashMemo(where)
    assert memo.sha256(file) == sha256_file(file) and str(file) in json.loads(where.read_text())
    stat = file.stat()
    file.write_bytes(b"b" * 64)
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as a later write would (not the same tick)
    assert memo.sha256(file) == sha256_file(file)
    where.write_text("not JSON")
    assert memo.sha256(file) == sha256_file(file) and str(file) in json.loads(where.read_text())
    (tmp_path / "a-file").write_text("")
    assert HashMemo(tmp_path / "a-file" / "memo.json").sha256(file) == sha256_file(file)


def test_a_second_batch_into_a_folder_in_use_is_refused_before_any_work(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """Two shells, one output folder: while the first batch runs its first job, a second one is told the folder
    is in use (exit 2, one line) and writes nothing; the first ends as if alone (it used to see its own jobs
    fail as "exists")."""
    jobs = two_generate_jobs(workspace, monkeypatch, "shared")
    out = workspace / "shared"
    second = []

    def first_job_running(job, replace, inputs, progress):
        monkeypatch.setitem(batch_run.RUNNERS, "generate", generate)  # the second batch and the next job: as usual
        capsys.readouterr()
        second.append((run(["batch", str(jobs)]), capsys.readouterr().err, records(out)))
        return generate(job, replace, inputs, progress)

    generate = batch_run.RUNNERS["generate"]
    monkeypatch.setitem(batch_run.RUNNERS, "generate", first_job_running)
    assert run(["batch", str(jobs)]) == 0, capsys.readouterr().err
    (code, said, manifest_then), = second
    assert (code, said) == (2, f"mmgen: error: {out} is in use: another mmgen batch (pid {os.getpid()}) is writing "
                               "into it (wait for it to end, or choose another output folder with the file's "
                               "`output_dir:` or -o)\n")
    assert records(out)[:1] == manifest_then  # only the first batch's "started" of job 1, then its own records
    assert [(r["job"], r["state"]) for r in records(out)] == [(1, "started"), (1, "done"), (2, "started"), (2, "done")]


def test_under_torchrun_the_folder_in_use_is_said_once_by_rank_0_and_every_rank_exits_2(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """`torchrun --nproc_per_node 2 -m mmgen batch` into a folder another batch holds: rank 0 finds it in use and
    tells the others; it said so once per process. The ranks are played in this process
    (tests/two_ranks.py)."""
    from mmgen.locks import sole_holder

    jobs = two_generate_jobs(workspace, monkeypatch, "ranked")
    out = workspace / "ranked"
    out.mkdir(exist_ok=True)
    with sole_holder(Manifest(out).run_lock, lambda holder: RuntimeError("the test's own lock")):  # another batch
        said = run_as_two_ranks(monkeypatch, capsys, lambda: run(["batch", str(jobs)]))
    assert said[0] == (2, f"mmgen: error: {out} is in use: another mmgen batch (pid {os.getpid()}) is writing into it "
                          "(wait for it to end, or choose another output folder with the file's `output_dir:` or -o)\n")
    assert said[1] == (2, "")
    assert not (out / MANIFEST_NAME).exists()


def test_a_batch_of_another_container_or_host_holding_the_folder_is_said_so_never_by_a_pid_here(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """A batch in a container sharing the output folder is pid 1 in its own process table: the refusal on the host
    named `another mmgen batch (pid 1)` (init). Its lock file's line says whose table its pid is."""
    from mmgen.locks import sole_holder
    from mmgen.temporaries import owner

    jobs = two_generate_jobs(workspace, monkeypatch, "contained")
    out = workspace / "contained"
    out.mkdir(exist_ok=True)
    lock = Manifest(out).run_lock
    with sole_holder(lock, lambda holder: RuntimeError("the test's own lock")):
        lock.write_text(f"{'0badf00d' if owner() != '0badf00d' else '0badf00e'}-1 mmgen batch\n")  # as it wrote itself
        capsys.readouterr()
        assert run(["batch", str(jobs)]) == 2
    assert capsys.readouterr().err == (
        f"mmgen: error: {out} is in use: another mmgen batch (in another container or host) is writing into it (wait "
        "for it to end, or choose another output folder with the file's `output_dir:` or -o)\n")


@pytest.mark.parametrize(("name", "folder"), [(".batch-running.lock", "rooted_run"),
                                              (".batch-manifest.lock", "rooted_manifest")])
def test_a_lock_file_of_the_folder_the_batch_may_not_open_is_named_before_any_job(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, name: str, folder: str
):
    """Root's lock file (chmod 600) in a folder its owner runs batches in: the batch lock's was said as `cannot write
    into OUT` (the folder, which takes files), the manifest lock's was a job failed with a raw PermissionError, exit 1.
    Each is named, with what to do, before any job runs: exit 2, one line."""
    jobs = two_generate_jobs(workspace, monkeypatch, folder)
    out = workspace / folder
    out.mkdir(exist_ok=True)
    (out / name).write_text("")
    real = os.open

    def refusing(path, flags, *args, **kwargs):  # as the mode refuses it to a user (the suite may run as root)
        if Path(path).name == name:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    capsys.readouterr()
    assert run(["batch", str(jobs)]) == 2
    assert capsys.readouterr().err == (
        f"mmgen: error: cannot open the lock file {out / name}: Permission denied (if no mmgen is running in {out}, "
        "delete it: it holds nothing)\n")
    assert sorted(os.listdir(out)) == sorted({".batch-running.lock", name})  # no job ran, nothing recorded


def test_ranks_that_planned_different_jobs_all_refuse_said_once_and_run_nothing(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """Each torchrun rank plans the batch file before they join: a file rewritten while they started gave the ranks
    different jobs (both made x.mp4, y.mp4 was never made, "2 done", exit 0). Rank 1 read it otherwise here; every
    rank refuses, said once by rank 0, before taking the folder (tests/two_ranks.py)."""
    jobs = two_generate_jobs(workspace, monkeypatch, "toggled")
    out = workspace / "toggled"
    said = run_as_two_ranks(monkeypatch, capsys, lambda: run(["batch", str(jobs)]),
                            rank_1_says=lambda word: "rank 1's plan")
    assert said[0] == (2, f"mmgen: error: {jobs} changed while the processes started; run again\n")
    assert said[1] == (2, "")
    assert not out.exists()


def test_under_torchrun_a_batch_file_s_problems_and_failed_jobs_are_said_once_by_rank_0(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """Every rank plans the batch file, and every rank gathers every job's outcome: `JOBS: 1 problem found, nothing
    was run` and `1 of 1 job failed (…)` were said once per rank. Rank 0 alone says them (tests/two_ranks.py)."""
    jobs = two_generate_jobs(workspace, monkeypatch, "said_once")
    jobs.write_text(jobs.read_text().replace("num: 2", "num: 2\n    stepz: 3"))
    said = run_as_two_ranks(monkeypatch, capsys, lambda: run(["batch", str(jobs)]))
    assert said[0][0] == 2 and said[0][1].endswith(f"mmgen: error: {jobs}: 1 problem found, nothing was run\n")
    assert said[1] == (2, "")

    out = workspace / "said_once"
    jobs.write_text(f"output_dir: {out.name}\ndefaults: {{model: models/tiny.safetensors, steps: 2, device: cpu}}\n"
                    "jobs:\n  - {kind: generate, name: renders/take}\n")
    real_replanned = batch_run.replanned

    def blocked_while_starting(plan, *args):  # a file where the job's folder goes: job 1 (rank 0's) fails
        out.mkdir(exist_ok=True)
        (out / "renders").write_text("a file where the job needs a folder")
        return real_replanned(plan, *args)

    monkeypatch.setattr(batch_run, "replanned", blocked_while_starting)
    said = run_as_two_ranks(monkeypatch, capsys,  # each rank plans with the folder free, as they do together
                            lambda: (out / "renders").unlink(missing_ok=True) or run(["batch", str(jobs)]),
                            rank_1_says=lambda word: [] if isinstance(word, list) else word)  # no job of its own
    failed = f"mmgen: error: 1 of 1 job failed (errors above and in {out / MANIFEST_NAME})"
    assert said[0][0] == 1 and said[0][1].count(failed) == 1, said[0][1]
    assert said[1] == (1, "")


def test_under_torchrun_a_stopped_batch_s_summaries_say_whose_jobs_they_are(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """Ctrl-C stops every process of `torchrun --nproc_per_node 2 -m mmgen batch`, and each sums up its own share
    of the jobs (rank 0 cannot hear the others' counts: a collective could wait for ever on a rank the stop has
    not reached): two tables titled "Batch summary", read as one said twice. Each says whose jobs it counts
    (tests/two_ranks.py)."""
    jobs = two_generate_jobs(workspace, monkeypatch, "stopped_ranks")

    def ctrl_c(job, *args):  # in each rank's first job
        raise KeyboardInterrupt

    monkeypatch.setitem(batch_run.RUNNERS, "generate", ctrl_c)
    said = run_as_two_ranks(monkeypatch, capsys, lambda: run(["batch", str(jobs)]))
    out = workspace / "stopped_ranks"
    for rank in (0, 1):
        code, stderr = said[rank]
        assert code == 130, stderr
        assert f"Batch summary of rank {rank}'s jobs" in stderr, stderr
        assert f"rank {rank}: 1 job: 1 not run · outputs in {out}" in " ".join(stderr.split()), stderr
    assert said[0][1].endswith("mmgen: rank 0: interrupted; nothing written\n") and "interrupted" not in said[1][1]


def test_a_batch_planned_while_another_wrote_skips_what_that_one_did(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    """The second shell's batch was checked while the first one still held the folder; by the time it gets the
    folder (free again once a batch ends), the first has done every job."""
    jobs = two_generate_jobs(workspace, monkeypatch, "raced")
    early = plan_batch(jobs)
    assert [o.ending for o in run_batch(plan_batch(jobs))] == ["done", "done"]
    assert [o.ending for o in run_batch(early)] == ["skipped", "skipped"]


def test_a_long_batch_stopped_early_sums_up_its_unrun_jobs_in_a_row_each_run(workspace: Path):
    """Ctrl-C at job 4 of 100,000: the summary printed 99,997 "not run" rows (a minute of drawing). Jobs not run
    one after another are one row; a failed job keeps its own, with its error; a torchrun rank's share (every
    2nd job) is one row too."""
    from rich.console import Console

    from mmgen.cli._batch_report import show_summary
    from mmgen.pipelines.batch import Outcome

    plan = plan_batch(workspace / "jobs.yaml", workspace / "summary")
    ran = [Outcome(n, "generate", f"c{n}.mp4", "done", 0.5) for n in (1, 2)]
    ran.append(Outcome(3, "generate", "c3.mp4", "failed", 0.1, "no more disk space"))
    ran += [Outcome(n, "generate", f"c{n}.mp4", "not run") for n in range(4, 100_001)]
    ran += [Outcome(n, "soundtrack", f"s{n}.mp4", "not run") for n in range(100_002, 100_010, 2)]
    console = Console(record=True, width=200)
    show_summary(ran, plan, console)
    rows = [line for line in console.export_text().splitlines() if line.startswith("│")]
    assert [[cell.strip() for cell in row.split("│")[1:-1]] for row in rows] == [
        ["3", "generate", "c3.mp4", "failed", "0.1 s", "no more disk space"],
        ["4–100000", "generate", "c4.mp4 … c100000.mp4", "not run", "", ""],
        ["100002–100008", "soundtrack", "s100002.mp4 … s100008.mp4", "not run", "", ""],
    ]


def test_json_after_a_stop_has_a_not_run_line_for_each_job_not_run_as_fail_fast_does(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Ctrl-C in job 2 of 3: `--json` printed job 1's line and none for jobs 2 and 3 (the table said `not run`)."""
    jobs, out = tmp_path / "jobs.yaml", tmp_path / "out"
    jobs.write_text(textwrap.dedent(f"""
        defaults: {{model: {workspace / "models" / "tiny.safetensors"}, steps: 1, device: cpu, previews: false}}
        jobs:
          - {{kind: generate, name: one, seed: 1}}
          - {{kind: generate, name: two, seed: 2}}
          - {{kind: generate, name: three, seed: 3}}
        """).lstrip())
    generate = batch_run.RUNNERS["generate"]

    def ctrl_c_in_job_2(job, *args):
        if job.number == 2:
            raise KeyboardInterrupt
        return generate(job, *args)

    monkeypatch.setitem(batch_run.RUNNERS, "generate", ctrl_c_in_job_2)
    result = run_here("batch", jobs, "-o", out, "--json", env=env_for(workspace))
    assert result.returncode == 130, result.stderr
    assert [(line["job"], line["result"]) for line in map(json.loads, result.stdout.splitlines())] == [
        (1, "done"), (2, "not run"), (3, "not run")]
    assert [json.loads(line) for line in result.stdout.splitlines()][2] == {
        "job": 3, "kind": "generate", "output": "three.mp4", "result": "not run", "mp4": str(out / "three.mp4")}
    assert result.stderr.splitlines()[-1] == f"mmgen: interrupted; kept the finished output: {out / 'one.mp4'}"
    assert "not run job" not in result.stderr and "not run" in result.stderr  # the summary's rows say them


def test_a_manifest_that_can_no_longer_be_written_ends_the_batch_as_a_stop_does(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The disk fills (or `ulimit -f` is reached) under the manifest at job 1's "done" record: the error's line and
    exit 1 as before, after what a stop or --fail-fast says — job 1 failed with the disk's reason, job 2 not run
    (their --json lines too), and the summary."""
    jobs, out = tmp_path / "jobs.yaml", tmp_path / "out"
    jobs.write_text(textwrap.dedent(f"""
        defaults: {{model: {workspace / "models" / "tiny.safetensors"}, steps: 2, device: cpu, previews: false}}
        jobs:
          - {{kind: generate, name: take, num: 2, seed: 4}}
        """).lstrip())
    real_append, appends = Manifest.append, []

    def filling(manifest: Manifest, record: Record) -> None:
        appends.append(record)
        if len(appends) < 2:
            return real_append(manifest, record)
        with writing(manifest.path, manifest.lock):
            raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(Manifest, "append", filling)
    result = run_here("batch", jobs, "-o", out, "--json", env=env_for(workspace))
    assert result.returncode == 1, result.stderr
    disk = f"cannot write {out / MANIFEST_NAME}: File too large"
    assert [(line["job"], line["result"], line.get("error")) for line in map(json.loads, result.stdout.splitlines())] == [
        (1, "failed", f"{disk} (free some space, or raise the file size limit, and run it again)"), (2, "not run", None)]
    assert "Batch summary" in result.stderr and "2 jobs: 1 failed, 1 not run" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"mmgen: error: {disk}") and "Traceback" not in result.stderr
    assert [r["state"] for r in records(out)] == ["started"]  # the next run redoes it


def test_an_output_folder_removed_while_the_batch_runs_ends_it_as_a_full_disk_does(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`rm -rf OUT` while a batch ran: it made OUT again, wrote the jobs still to do and a new manifest there, and
    ended "2 jobs: 2 done", exit 0, though job 1's files had gone with the folder. The manifest knows the folder it
    found: the batch ends at the next record, as at a full disk, naming what happened (exit 1)."""
    jobs, out = tmp_path / "jobs.yaml", tmp_path / "out"
    jobs.write_text(textwrap.dedent(f"""
        defaults: {{model: {workspace / "models" / "tiny.safetensors"}, steps: 2, device: cpu, previews: false}}
        jobs:
          - {{kind: generate, name: take, num: 2, seed: 4}}
        """).lstrip())
    real_append = Manifest.append

    def removing_after_job_1(manifest: Manifest, record: Record) -> None:
        real_append(manifest, record)
        if record.state == "done":
            shutil.rmtree(manifest.folder)

    monkeypatch.setattr(Manifest, "append", removing_after_job_1)
    result = run_here("batch", jobs, "-o", out, "--json", env=env_for(workspace))
    assert result.returncode == 1, result.stderr
    gone = (f"cannot write {out / MANIFEST_NAME}: {out} is no longer there (moved, renamed or removed while the batch "
            "ran), with the outputs and records in it")
    assert [(line["job"], line["result"]) for line in map(json.loads, result.stdout.splitlines())] == [
        (1, "done"), (2, "failed")]
    assert result.stderr.splitlines()[-1].startswith(f"mmgen: error: {gone}") and "Traceback" not in result.stderr
    assert not out.exists()  # nothing written into a folder made again


def two_takes(workspace: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A batch file of one job of 2 clips (take_0000, take_0001) of the tiny model, its output folder and the name
    that folder is renamed to as the batch runs."""
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(textwrap.dedent(f"""
        defaults: {{model: {workspace / "models" / "tiny.safetensors"}, steps: 2, device: cpu, previews: false}}
        jobs:
          - {{kind: generate, name: take, num: 2, seed: 4}}
        """).lstrip())
    return jobs, tmp_path / "out", tmp_path / "out-old"


def test_an_output_folder_renamed_while_the_batch_runs_is_said_gone_from_its_name_and_its_outputs_named_inside_it(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`mv OUT OUT-old` after job 1: the batch said OUT "was removed" (it is in OUT-old), "kept the finished output:
    OUT/take_0000.mp4" (no file there) and "outputs in OUT". mmgen cannot tell a rename from a removal: it says OUT
    is no longer there, names job 1's output inside the folder, and the summary does not point at OUT."""
    jobs, out, old = two_takes(workspace, tmp_path)
    real_append = Manifest.append

    def renaming_after_job_1(manifest: Manifest, record: Record) -> None:
        real_append(manifest, record)
        if record.state == "done" and not old.exists():
            out.rename(old)

    monkeypatch.setattr(Manifest, "append", renaming_after_job_1)
    result = run_here("batch", jobs, "-o", out, env=env_for(workspace) | {"COLUMNS": "300"})  # lines unfolded
    assert result.returncode == 1, result.stderr
    said = " ".join(result.stderr.split())
    assert f"2 jobs: 1 done, 1 failed · {out} is no longer there (moved, renamed or removed), with its outputs" in said
    assert result.stderr.splitlines()[-1] == (
        f"mmgen: error: cannot write {out / MANIFEST_NAME}: {out} is no longer there (moved, renamed or removed while "
        "the batch ran), with the outputs and records in it; the finished output in it went with it: take_0000.mp4 "
        "(run the batch again: it redoes what went with it)")
    assert "was removed" not in said  # the old wording (a table may fold "renamed or | removed while")
    assert f"{out}/take_0000" not in result.stderr and f"outputs in {out}" not in said
    assert not out.exists() and {"take_0000.mp4", "take_0000.json"} <= {p.name for p in old.iterdir()}


def test_a_stop_after_the_output_folder_was_renamed_says_it_is_no_longer_there_with_its_outputs(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`mv OUT OUT-old` after job 1, then Ctrl-C: the summary said "outputs in OUT" and the stop's line "kept the
    finished output: OUT/take_0000.mp4", where nothing is. Both say what the error line says of a rename: OUT is no
    longer there, and take_0000.mp4 went with it."""
    jobs, out, old = two_takes(workspace, tmp_path)
    real_append = Manifest.append

    def renaming_then_stopped(manifest: Manifest, record: Record) -> None:
        if old.exists():
            raise KeyboardInterrupt  # as job 2 starts
        real_append(manifest, record)
        if record.state == "done":
            out.rename(old)

    monkeypatch.setattr(Manifest, "append", renaming_then_stopped)
    result = run_here("batch", jobs, "-o", out, env=env_for(workspace) | {"COLUMNS": "300"})  # lines unfolded
    assert result.returncode == 130, result.stderr
    said = " ".join(result.stderr.split())
    assert f"· {out} is no longer there (moved, renamed or removed), with its outputs" in said, said
    assert result.stderr.splitlines()[-1] == (
        f"mmgen: interrupted; {out} is no longer there (moved, renamed or removed while mmgen wrote into it); the "
        "finished output in it went with it: take_0000.mp4")
    assert f"outputs in {out}" not in said and {"take_0000.mp4", "take_0000.json"} <= {p.name for p in old.iterdir()}


def test_a_job_subfolder_swapped_for_a_link_mid_batch_ends_it_with_nothing_written_outside(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`name: sub/deep/a`, and after job 1 `mv OUT/sub OUT/sub.old; ln -s VICTIM OUT/sub`: job 2's clip went into VICTIM,
    then a ValueError (exit 1) and no summary. The subfolder found as job 1 wrote into it is the one every later
    job's files go into: the batch ends there, its summary said, then one line naming the folder (exit 1)."""
    jobs, out, victim = tmp_path / "jobs.yaml", tmp_path / "out", tmp_path / "victim"
    victim.mkdir()
    jobs.write_text(textwrap.dedent(f"""
        defaults: {{model: {workspace / "models" / "tiny.safetensors"}, steps: 2, device: cpu, previews: false}}
        jobs:
          - {{kind: generate, name: sub/deep/a, num: 3, seed: 4}}
        """).lstrip())
    real_append = Manifest.append

    def swapping_after_job_1(manifest: Manifest, record: Record) -> None:
        real_append(manifest, record)
        if record.state == "done" and not (out / "sub.old").exists():
            (out / "sub").rename(out / "sub.old")
            (out / "sub").symlink_to(victim)

    monkeypatch.setattr(Manifest, "append", swapping_after_job_1)
    result = run_here("batch", jobs, "-o", out, "--json", env=env_for(workspace) | {"COLUMNS": "300"})  # unfolded
    assert result.returncode == 1, result.stderr
    assert [(line["job"], line["result"]) for line in map(json.loads, result.stdout.splitlines())] == [
        (1, "done"), (2, "failed"), (3, "not run")]
    replaced = f"{out / 'sub' / 'deep'} was replaced while mmgen wrote into it; stopped"
    assert result.stderr.splitlines()[-1].startswith(f"mmgen: error: {replaced}"), result.stderr
    # job 1's output is not in OUT's sub/deep now: the summary says where it is
    assert (f"outputs in {out}; those in sub/deep are in the folder that was there, not in the one there now"
            in " ".join(result.stderr.split())), result.stderr
    assert "Traceback" not in result.stderr and "ValueError" not in result.stderr
    assert list(victim.iterdir()) == []  # not even its folder `deep`
    assert sorted(p.name for p in (out / "sub.old" / "deep").iterdir()) == ["a_0000.json", "a_0000.mp4"]


def test_compacting_the_manifest_keeps_what_a_resume_reads_from_it(tmp_path: Path):
    """Retries of a failing job grew the manifest by a record pair each; compacting keeps each output's last record,
    its last "started" unless it is done, and each file's last "done" record: what the next run reads from it is
    unchanged."""
    manifest, batch_file = Manifest(tmp_path), tmp_path / "jobs.yaml"

    def record(output: str, state: str, *files: str, batch: Path = batch_file) -> Record:
        described = {name: FileRecord(name, 1, "0" * 64) for name in files}
        return Record(output, state, "h", 1, "generate", 0, files=described, batch=str(batch.resolve()),
                      error="it failed" if state == "failed" else None)

    history = [record("a.mp4", "started"), record("a.mp4", "done", "a.mp4", "a.wav"),
               *[record("a.mp4", state) for _ in range(50) for state in ("started", "failed")],
               record("b.mp4", "started"), record("b.mp4", "done", "b.mp4"), record("b.mp4", "started"),
               record("c.mp4", "started"), record("c.mp4", "done", "a.wav", batch=tmp_path / "other.yaml")]
    for r in history:
        manifest.append(r)
    with open(manifest.path, "a") as f:
        f.write('{"torn": ')
    manifest.path.chmod(0o600)  # kept private: still so once compacted (it became 644)
    before = Written(manifest, batch_file)
    latest = manifest.latest()

    assert manifest.compact()
    kept = manifest.history()
    assert [(r.output, r.state) for r in kept] == [
        ("a.mp4", "done"), ("a.mp4", "started"), ("a.mp4", "failed"), ("b.mp4", "done"), ("b.mp4", "started"),
        ("c.mp4", "done")]
    after = Written(manifest, batch_file)
    assert (after.latest, after.files) == (before.latest, before.files)
    assert after.started == {k: v for k, v in before.started.items() if before.latest[k].state != "done"}
    assert manifest.latest() == latest and len(manifest.path.read_text().splitlines()) == len(kept)
    assert manifest.path.stat().st_mode & 0o777 == 0o600
    assert not manifest.compact()  # nothing more to drop: left as it is


def test_a_failed_jobs_record_keeps_its_error_not_the_advice_and_retries_do_not_grow_the_manifest(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    jobs, out = one_job(workspace, tmp_path), tmp_path / "out"

    def failing(*args):
        raise UsageError("it cannot be made", hint="a long piece of advice for the terminal")

    monkeypatch.setitem(batch_run.RUNNERS, "generate", failing)
    sizes = []
    for _ in range(3):
        result = run_here("batch", jobs, "-o", out, env=env_for(workspace))
        assert result.returncode == 1 and "it cannot be made (a long piece of advice" in result.stderr, result.stderr
        sizes.append(len(records(out)))
    assert [(r["state"], r.get("error")) for r in records(out)] == [("started", None), ("failed", "it cannot be made")] * 2
    assert sizes == [2, 4, 4]


def test_the_time_left_of_a_resumed_batch_is_from_the_jobs_it_runs_not_those_done_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Three of six jobs done before: the first ETA of the resumed run counted them as three jobs done in no time
    (`ETA 0:00:07` for two jobs of 10 s each left), as plain lines and the bar both estimate it."""
    from mmgen.cli.progress import PlainLines

    with_a_tiny_model_here(tmp_path, monkeypatch)
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("defaults: {model: tiny.safetensors}\njobs:\n"
                    + "".join(f"  - {{kind: generate, name: j{k}, seed: {k}}}\n" for k in range(6)))
    plan = plan_batch(jobs)
    plan = dataclasses.replace(plan, status={job.number: "done" if job.number <= 3 else "new" for job in plan.jobs})
    now = [0.0]

    def job_of_ten_seconds(job, *args):
        now[0] += 10
        return batch_run.Outcome(job.number, job.kind, job.output, "done")

    monkeypatch.setattr(batch_run, "_run_job", job_of_ten_seconds)
    plain = PlainLines(clock=lambda: now[0])
    said = []
    run_plan(plan, progress=plain.track, on_outcome=lambda outcome: said.append((outcome.ending, plain.eta_of("jobs"))))
    assert said == [("skipped", ""), ("skipped", ""), ("skipped", ""),
                    ("done", ", ETA 0:00:20"), ("done", ", ETA 0:00:10"), ("done", "")]


@pytest.mark.parametrize("width", [40, 80])
def test_the_dry_run_and_the_summary_on_a_narrow_terminal_list_a_job_a_line_with_every_name_whole(
        workspace: Path, monkeypatch: pytest.MonkeyPatch, width: int):
    """At 80 columns rich cut the dry run's output names, kinds and statuses mid-word (`soundtr…`, `scored…`,
    `new:` / `run` folded), at 40 every cell to a character or two, and the summary's the same (`gener…`,
    `skipp…`). A terminal too narrow for the table gets a job a line, each name, kind and status whole."""
    import io

    from rich.console import Console

    import mmgen.cli.batch
    from mmgen.cli._batch_report import show_summary
    from mmgen.pipelines.batch import Outcome

    terminal = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    monkeypatch.setattr(mmgen.cli.batch, "table_console", lambda stderr: terminal)
    done = run_here("batch", workspace / "jobs.yaml", "--dry-run", "-o", workspace / "narrow", env=env_for(workspace))
    assert done.returncode == 0, done.stderr
    lines = terminal.file.getvalue().splitlines()
    assert "#3 clip0_soundtrack.mp4: soundtrack · input clip0.mp4 · tiny.safetensors · " in "\n".join(lines), lines
    assert "#6 dance.mp4: animate · input beat.m4a · " in "\n".join(lines), lines
    assert not any("…" in line or "┃" in line for line in lines), lines

    plan = plan_batch(workspace / "jobs.yaml", workspace / "narrow")
    outcomes = [Outcome(1, "generate", "sunrise.mp4", "done", 0.5),
                Outcome(2, "soundtrack", "clip0_soundtrack.mp4", "failed", 0.1, "no more disk space"),
                Outcome(3, "animate", "dance.mp4", "skipped")]
    terminal = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    show_summary(outcomes, plan, terminal)
    shown = terminal.file.getvalue()
    assert all(o.output in shown for o in outcomes) and "…" not in shown, shown  # at 80 columns: the table, whole
    assert width == 80 or shown.splitlines()[:4] == ["Batch summary:", "#1 sunrise.mp4: generate · done · 0.5 s",
                         "#2 clip0_soundtrack.mp4: soundtrack · failed · 0.1 s — no more disk space",
                         "#3 dance.mp4: animate · skipped"], shown


def test_a_job_refused_as_it_runs_is_told_to_change_its_name_not_minus_o(workspace: Path):
    """A job's own pipeline refused its output with the command line's hint (`choose another name with -o`): in a
    batch the job's `name:` names it, and -o only the folder. Here out/x.json is the sidecar of out/x.mkv, which
    the job's x.mp4 would share (planning with --overwrite takes the old files; running meets the clash)."""
    out = workspace / "sidecar_clash"
    out.mkdir()
    shutil.copy(workspace / "clips" / "clip0.mp4", out / "x.mkv")
    (out / "x.json").write_text(json.dumps({"mp4": "x.mkv"}))
    jobs = workspace / "sidecar_clash.yaml"
    jobs.write_text("output_dir: sidecar_clash\ndefaults: {model: models/tiny.safetensors, steps: 2, device: cpu}\n"
                    "jobs:\n  - {kind: soundtrack, input: clips/clip0.mp4, name: x}\n")
    (outcome,) = run_batch(plan_batch(jobs, overwrite=True), overwrite=True)
    assert (outcome.ending, outcome.error) == ("failed", (
        f"cannot write {out / 'x.mp4'}: {out / 'x.json'} is the sidecar of {out / 'x.mkv'}, and x.mp4's would take "
        "its place (one name in two containers shares its sidecar, previews and wav) (choose another name with the "
        "job's `name:`, or move x.mkv and its files away)"))


def test_a_folder_named_as_a_jobs_temporary_is_left_alone_when_the_job_is_redone(workspace: Path, tmp_path: Path):
    """A job redone with overwrite removes the temporaries a killed run of it left (`.one.….partial.mp4`): a folder
    of that name is no temporary of mmgen's. It failed the job (IsADirectoryError); it is left, whole, and the job
    runs."""
    jobs = one_job(workspace, tmp_path)
    kept = tmp_path / "outputs" / ".one.mine.partial.mp4" / "keep.txt"
    kept.parent.mkdir(parents=True)
    kept.write_text("precious")
    (outcome,) = run_batch(plan_batch(jobs, overwrite=True), overwrite=True)
    assert (outcome.ending, outcome.error) == ("done", None)
    assert kept.read_text() == "precious"


def test_a_folder_put_at_a_jobs_output_name_after_planning_fails_the_job_and_is_never_moved(
    workspace: Path, tmp_path: Path
):
    """Planning refuses a folder at an output's name; one made there between planning and the job's run (here its
    sidecar's, out/one.json/) was moved aside to a hidden `.one.….partial.json` as an old output is, under a name a
    later clean-up takes for a leftover. The job fails saying so; the folder stays where it is, whole."""
    plan = plan_batch(one_job(workspace, tmp_path), overwrite=True)
    kept = tmp_path / "outputs" / "one.json" / "keep.txt"
    kept.parent.mkdir(parents=True)
    kept.write_text("precious")
    (outcome,) = run_batch(plan, overwrite=True)
    assert (outcome.ending, outcome.error) == ("failed", f"cannot write {kept.parent}: it is a directory")
    assert kept.read_text() == "precious"
    assert not [p.name for p in kept.parent.parent.iterdir() if ".partial" in p.name]


def test_a_batch_job_s_progress_names_the_job_as_its_line_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A slow job's plain step lines said `clip 1/1: step 446/650`, not which job of the batch: each count a job's
    pipeline reports carries the job, as the job's line names it (`job 2/2 (generate) b.mp4`)."""
    with_a_tiny_model_here(tmp_path, monkeypatch)
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("defaults: {model: tiny.safetensors}\njobs:\n  - {kind: generate, name: a, seed: 1}\n"
                    "  - {kind: generate, name: b, seed: 2}\n")

    def job_of_one_step(job, manifest, rank, batch_file, replace, inputs, progress, batch_path):
        progress(ProgressEvent("steps", 1, 1))  # what its pipeline reports
        return batch_run.Outcome(job.number, job.kind, job.output, "done")

    monkeypatch.setattr(batch_run, "_run_job", job_of_one_step)
    events = []
    run_plan(plan_batch(jobs), progress=events.append)
    assert [(e.task, e.job) for e in events] == [
        ("jobs", ""), ("steps", "job 1/2 (generate) a.mp4"), ("jobs", ""), ("steps", "job 2/2 (generate) b.mp4"),
        ("jobs", "")]


def test_a_model_file_replaced_while_the_batch_runs_is_recorded_as_the_weights_that_made_the_clip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The model file is replaced between planning and loading (a `finetune --resume` ending, `models import
    --overwrite`): the manifest vouched for the planned weights while the sidecar named those loaded, so the next run
    redid the clip needlessly, and once the old file was back took the clip the other weights made as done."""
    with_a_tiny_model_here(tmp_path, monkeypatch)
    model = tmp_path / "tiny.safetensors"
    planned_bytes = model.read_bytes()
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("output_dir: out\ndefaults: {model: tiny.safetensors, steps: 1, device: cpu, previews: false}\n"
                    "jobs:\n  - {kind: generate, name: clip, seed: 1}\n")
    plan = plan_batch(jobs)
    save_tiny_model(model, seed=1)  # other weights, in place before the job loads its model
    (outcome,) = run_batch(plan)
    assert outcome.ending == "done"
    sidecar = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert sidecar["model_sha256"] == sha256_file(model)

    assert plan_batch(jobs).status == {1: "done"}  # made by the weights there now
    model.write_bytes(planned_bytes)
    assert plan_batch(jobs).status == {1: "changed"}  # not by these


def test_an_upsampler_replaced_while_the_batch_runs_is_recorded_as_the_upsampler_that_made_the_clip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`models import --name tiny-sr --overwrite` replaces the upsampler between planning and loading: the sidecar
    named no upsampler file and the manifest vouched for the planned one, so the next run redid the clip needlessly,
    and once the old upsampler was back took the clip the other one made as done. The sidecar records it now."""
    from mmgen.weights import import_weights

    with_a_tiny_model_here(tmp_path, monkeypatch)
    models = tmp_path / "presets" / "models"
    models.mkdir(parents=True)
    (models / "tiny-sr.yaml").write_text("arch: sr-unet\nsampling: {sampler: ddim, steps: 1}\n")  # imported by the
    # user, as the paper's upsamplers are; its one step (not the official 25) is all the clip needs here
    tiny = tmp_path / "tiny.safetensors"
    (models / "tiny.yaml").write_text(f"arch: mm-unet\nweights: {{urls: ['{tiny.as_uri()}'], sha256: {sha256_file(tiny)}}}\n"
                                      "upsampler: tiny-sr\n")
    planned = import_weights(save_tiny_upsampler(tmp_path / "sr1.safetensors"), "tiny-sr")
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("output_dir: out\ndefaults: {model: tiny, steps: 1, device: cpu, previews: false, upscale: true}\n"
                    "jobs:\n  - {kind: generate, name: clip, seed: 1}\n")
    plan = plan_batch(jobs)
    other = import_weights(save_tiny_upsampler(tmp_path / "sr2.safetensors", seed=1), "tiny-sr", overwrite=True)
    (outcome,) = run_batch(plan)
    assert outcome.ending == "done"
    sidecar = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert (sidecar["upsampler"], sidecar["upsampler_sha256"]) == ("tiny-sr", other.sha256) != ("tiny-sr", planned.sha256)

    assert plan_batch(jobs).status == {1: "done"}  # made by the upsampler there now
    import_weights(tmp_path / "sr1.safetensors", "tiny-sr", overwrite=True)
    assert plan_batch(jobs).status == {1: "changed"}  # not by this one


def test_an_adapter_replaced_while_the_batch_runs_is_recorded_as_the_adapter_that_made_the_clip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`models import --name style --overwrite` replaces a registered adapter between planning and loading: as with
    the model, the manifest vouched for the planned adapter while the sidecar named the one loaded, so the next run
    redid the clip needlessly, and once the old adapter was back took the clip the other one made as done."""
    import torch

    from mmgen.adapters import BaseModel, LoraSpec, adapter_parameters, attach, save_adapter
    from mmgen.adapters.registration import register
    from mmgen.weights import load_model

    with_a_tiny_model_here(tmp_path, monkeypatch)
    loaded = load_model(tmp_path / "tiny.safetensors")
    attach(loaded.model, LoraSpec(4, 4.0, "attention"))
    planned, other = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    for path, value in ((planned, 0.01), (other, 0.02)):  # what two trainings made, standing in
        with torch.no_grad():
            for _, p in adapter_parameters(loaded.model):
                p.fill_(value)
        save_adapter(path, loaded.model, LoraSpec(4, 4.0, "attention"), BaseModel.of(loaded))
    register(planned, "style")
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("output_dir: out\ndefaults: {model: tiny.safetensors, steps: 1, device: cpu, previews: false}\n"
                    "jobs:\n  - {kind: generate, name: clip, seed: 1, adapter: style}\n")
    plan = plan_batch(jobs)
    register(other, "style", overwrite=True)  # before the job loads its adapter
    (outcome,) = run_batch(plan)
    assert outcome.ending == "done"
    sidecar = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert sidecar["adapters"][0]["sha256"] == sha256_file(other)

    assert plan_batch(jobs).status == {1: "done"}  # made by the adapter named style now
    register(planned, "style", overwrite=True)
    assert plan_batch(jobs).status == {1: "changed"}  # not by this one
