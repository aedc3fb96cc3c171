"""A stop signal (Ctrl-C, SIGTERM, SIGHUP) that lands while the files of one output are committed — between a
rename that makes a file visible and the record of how to take it back — cannot split them: the stop comes
before the commit (the old files whole, or nothing new) or after it (the new files whole, and said). Each test
sends the signal to its own process at that exact point (right after the rename of one file), so none is a
race; one runs it in a real process, to see the exit code and the line."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from cli_here import run_here
from media_factory import write_test_video
from mmgen_cli import mmgen_env
from tiny_model import save_tiny_model, tiny_config

from mmgen import files, temporaries
from mmgen.adapters import BaseModel, LoraSpec, adapter_parameters, attach, save_adapter
from mmgen.errors import OutputExists
from mmgen.files import atomic_output, kept_together, sha256_file
from mmgen.pipelines.preflight import input_files
from mmgen.pipelines.settings import GenerateSettings
from mmgen.runtime.stop_signals import stops_interrupt
from mmgen.weights import load_model
from mmgen.weights.cache import ModelCache


def stop_right_after(monkeypatch, name: str, sig: int = signal.SIGTERM) -> list[Path]:
    """Send `sig` to this process right after the file `name` is renamed into place (files._commit) — the moment
    the probe caught with a watcher process, here without a race. The paths it was sent after, returned."""
    commit, sent = files._commit, []

    def commit_then_stop(temp: Path, target: Path, replace: bool) -> None:
        commit(temp, target, replace)
        if target.name == name and not sent:
            sent.append(target)
            os.kill(os.getpid(), sig)  # its handler runs before the next line

    monkeypatch.setattr(files, "_commit", commit_then_stop)
    return sent


def listing(folder: Path) -> dict[str, bytes]:
    """The folder's files and their bytes; its .lock only by name (it holds whoever last held it: a pid, a command)."""
    return {p.name: b"" if p.name == ".lock" else p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "new"])
def test_a_stop_as_the_last_file_lands_leaves_the_old_files_or_none(tmp_path, monkeypatch, overwrite):
    """The sidecar's rename was done, its undo not yet recorded: the stop's KeyboardInterrupt took the others back
    but left the new sidecar (beside the old mp4, or alone)."""
    mp4, sidecar = tmp_path / "clip.mp4", tmp_path / "clip.json"
    if overwrite:
        mp4.write_bytes(b"old clip")
        sidecar.write_text("old sidecar")
    before = listing(tmp_path)
    sent = stop_right_after(monkeypatch, "clip.json")

    with pytest.raises(KeyboardInterrupt), stops_interrupt(), kept_together():
        for path in (mp4, sidecar):
            with atomic_output(path, overwrite=overwrite) as temp:
                temp.write_text(f"new {path.suffix}")

    assert sent == [sidecar]
    assert listing(tmp_path) == before  # the hidden names it kept aside are gone too


def test_a_stop_as_the_files_are_kept_keeps_all_of_them_and_says_so(tmp_path, monkeypatch):
    """A stop while the block ends — the files kept, what they replaced let go — comes after the commit: the new
    files all stay, and what was to happen once they are kept (naming them in the interrupted line) happened."""
    mp4, sidecar = tmp_path / "clip.mp4", tmp_path / "clip.json"
    mp4.write_bytes(b"old clip")
    sidecar.write_text("old sidecar")
    forget, kept = files._Commit.forget, []

    def forget_then_stop(commit):
        forget(commit)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(files._Commit, "forget", forget_then_stop)
    with pytest.raises(KeyboardInterrupt), stops_interrupt(), kept_together():
        for path in (mp4, sidecar):
            with atomic_output(path, overwrite=True) as temp:
                temp.write_text(f"new {path.suffix}")
        files.when_kept(lambda: kept.append(mp4))

    assert listing(tmp_path) == {"clip.json": b"new .json", "clip.mp4": b"new .mp4"}
    assert kept == [mp4]


def test_a_python_callers_ctrl_c_as_the_files_are_kept_keeps_them_and_leaves_no_temporary(tmp_path, monkeypatch):
    """From the Python API (no command's handler installed: Python's own raises KeyboardInterrupt), a Ctrl-C while
    the replaced files' hidden copies were let go raised at once and left them behind (`.clip.mp4.….partial.…`).
    The hold defers the caller's handler itself: the files are all kept, nothing hidden is left, the
    KeyboardInterrupt comes as the hold ends, and the caller's handler is its own again."""
    mp4, sidecar = tmp_path / "clip.mp4", tmp_path / "clip.json"
    mp4.write_bytes(b"old clip")
    sidecar.write_text("old sidecar")
    forget = files._Commit.forget

    def forget_then_stop(commit):
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, as the first hidden copy is let go
        forget(commit)

    monkeypatch.setattr(files._Commit, "forget", forget_then_stop)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt), kept_together():
        for path in (mp4, sidecar):
            with atomic_output(path, overwrite=True) as temp:
                temp.write_text(f"new {path.suffix}")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.json", "clip.mp4"]
    assert listing(tmp_path) == {"clip.json": b"new .json", "clip.mp4": b"new .mp4"}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_stop_held_for_a_python_caller_goes_to_its_own_handler_after_the_hold(tmp_path, monkeypatch):
    """A caller's own SIGTERM handler is deferred as Python's SIGINT one is: it gets the signal once the files are
    in place, not in their midst, and is the handler again afterwards."""
    mp4, sidecar = tmp_path / "clip.mp4", tmp_path / "clip.json"
    mp4.write_bytes(b"old clip")
    sidecar.write_text("old sidecar")
    forget, got = files._Commit.forget, []

    def forget_then_stop(commit):
        os.kill(os.getpid(), signal.SIGTERM)
        forget(commit)

    def callers(signum, frame):
        got.append((signum, sorted(p.name for p in tmp_path.iterdir())))

    monkeypatch.setattr(files._Commit, "forget", forget_then_stop)
    previous = signal.signal(signal.SIGTERM, callers)
    try:
        with kept_together():
            for path in (mp4, sidecar):
                with atomic_output(path, overwrite=True) as temp:
                    temp.write_text(f"new {path.suffix}")
        assert signal.getsignal(signal.SIGTERM) is callers
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert got == [(signal.SIGTERM, ["clip.json", "clip.mp4"])]  # once, with no hidden copy left
    assert listing(tmp_path) == {"clip.json": b"new .json", "clip.mp4": b"new .mp4"}


def test_a_stop_waits_for_no_callback_of_the_kept_files_and_each_one_still_runs(tmp_path):
    """A --json line was printed while stops were held: to a pipe nobody read, Ctrl-C waited for the reader. The
    callbacks run after the hold, so a stop interrupts the one it lands in, and the others (naming the kept file
    in the interrupted line) run all the same."""
    clip, reached, named = tmp_path / "clip.mp4", [], []

    def print_line():
        os.kill(os.getpid(), signal.SIGINT)  # raises here, in the callback, unless stops are held
        reached.append("the end of the line")

    with pytest.raises(KeyboardInterrupt), stops_interrupt(), kept_together():
        files.write_text(clip, "new clip")
        files.when_kept(print_line)
        files.when_kept(lambda: named.append(clip))

    assert reached == [] and named == [clip]
    assert listing(tmp_path) == {"clip.mp4": b"new clip"}


def test_a_commit_that_fails_after_its_rename_keeps_what_it_replaced(tmp_path, monkeypatch):
    """Any failure right after the rename (not only a stop) is taken back with the file it replaced put back —
    not the kept-aside copy deleted, the old file lost."""
    mp4 = tmp_path / "clip.mp4"
    mp4.write_bytes(b"old clip")
    commit = files._commit

    def commit_then_fail(temp, target, replace):
        commit(temp, target, replace)
        raise OutputExists("raced")

    monkeypatch.setattr(files, "_commit", commit_then_fail)
    with pytest.raises(OutputExists), kept_together():
        with atomic_output(mp4, overwrite=True) as temp:
            temp.write_bytes(b"new clip")
    assert listing(tmp_path) == {"clip.mp4": b"old clip"}


def test_a_nested_group_is_kept_or_taken_back_with_the_outer_one(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    with pytest.raises(RuntimeError), kept_together():
        with kept_together():
            files.write_text(a, "new a")
        files.write_text(b, "new b")
        raise RuntimeError
    assert listing(tmp_path) == {"a.txt": b"old a"}


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "new"])
def test_a_stop_as_a_clips_sidecar_lands_leaves_the_old_clip_or_nothing_and_says_so(tiny, tmp_path, monkeypatch,
                                                                                   overwrite):
    """`generate` stopped right after clip_0000.json appeared: it said "nothing written" and left that sidecar —
    alone, or (--overwrite) beside the old mp4 and previews it does not describe."""
    env, out = mmgen_env(tmp_path), tmp_path / "out"
    args = ("generate", "-n", "1", "-m", tiny, "--steps", "1", "--seed", "1", "-o", out)
    if overwrite:
        assert run_here(*args, env=env).returncode == 0
    before = listing(out) if overwrite else None
    stop_right_after(monkeypatch, "clip_0000.json", signal.SIGINT)

    stopped = run_here(*args, "--seed", "2", *(["--overwrite"] if overwrite else []), env=env)

    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr.splitlines()[-1] == "mmgen: interrupted; nothing written"
    if overwrite:
        assert listing(out) == before  # mp4, json and previews: the first run's, nothing kept aside
    else:
        assert not out.exists()


def test_a_stop_as_imported_weights_land_keeps_the_model_that_was_cached(tmp_path, monkeypatch):
    """`models import --overwrite --dtype fp16` stopped right after the new weights appeared: exit 143 with the
    fp16 weights beside the old fp32 record, so `models verify` called the model corrupt and generate refused."""
    env, source = mmgen_env(tmp_path), save_tiny_model(tmp_path / "m.safetensors")
    assert run_here("models", "import", source, "--name", "mx", env=env).returncode == 0
    folder = tmp_path / "cache" / "models" / "mx"
    before = listing(folder)
    stop_right_after(monkeypatch, "model.safetensors")

    stopped = run_here("models", "import", source, "--name", "mx", "--overwrite", "--dtype", "fp16", env=env)

    assert stopped.returncode == 143, stopped.stderr
    assert stopped.stderr.splitlines()[-1] == "mmgen: interrupted (SIGTERM)"
    assert listing(folder) == before
    monkeypatch.undo()
    verified = run_here("models", "verify", "mx", env=env)
    assert verified.returncode == 0 and "mx: ok" in verified.stdout + verified.stderr


@pytest.fixture
def adapter_file(tmp_path) -> Path:
    base = save_tiny_model(tmp_path / "base.safetensors")
    model = load_model(base).model
    attach(model, LoraSpec(4, 4.0, "attention"))
    with torch.no_grad():
        for _, p in adapter_parameters(model):
            p.fill_(0.01)
    identity = BaseModel(str(base), sha256_file(base), "mm-unet", dataclasses.asdict(tiny_config()))
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, model, LoraSpec(4, 4.0, "attention"), identity)
    return path


def test_a_stop_as_an_adapter_is_registered_leaves_no_file_without_its_record(adapter_file, tmp_path, monkeypatch):
    """It left adapters/NAME/adapter.safetensors without adapter.json: `models info NAME` said unknown, and the
    file stayed."""
    env = mmgen_env(tmp_path)
    stop_right_after(monkeypatch, "adapter.safetensors", signal.SIGINT)

    stopped = run_here("models", "import", adapter_file, "--name", "style", env=env)

    assert stopped.returncode == 130, stopped.stderr
    folder = tmp_path / "cache" / "adapters" / "style"
    assert not folder.exists() or listing(folder) == {}
    monkeypatch.undo()
    again = run_here("models", "import", adapter_file, "--name", "style", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["sha256"] == sha256_file(adapter_file)


STOP_AFTER_A_RENAME = """
import os, signal, sys
import mmgen.cli as cli
from mmgen import files

name, sig = sys.argv.pop(1), getattr(signal, sys.argv.pop(1))
commit = files._commit

def commit_then_stop(temp, target, replace):
    commit(temp, target, replace)
    if target.name == name:
        os.kill(os.getpid(), sig)

files._commit = commit_then_stop
cli.main()
"""


def test_sigterm_as_a_models_weights_land_exits_143_with_the_model_as_it_was(tmp_path):
    """The real process: mmgen's handlers, its exit code and its line, the cache left as it was."""
    env, source = mmgen_env(tmp_path), save_tiny_model(tmp_path / "m.safetensors")
    assert run_here("models", "import", source, "--name", "mx", env=env).returncode == 0
    folder = tmp_path / "cache" / "models" / "mx"
    before = listing(folder)

    done = import_stopped(tmp_path, "SIGTERM", source, env)

    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.splitlines()[-1] == "mmgen: interrupted (SIGTERM)"
    assert listing(folder) == before


def test_after_a_kill_9_as_a_models_weights_land_the_next_command_puts_the_old_model_back(tmp_path):
    """kill -9 can take nothing back: the new weights stay, without a record (the old one went first), beside the
    old files kept aside. The next command that locks the model's folder puts the old model back, whole."""
    env, source = mmgen_env(tmp_path), save_tiny_model(tmp_path / "m.safetensors")
    assert run_here("models", "import", source, "--name", "mx", env=env).returncode == 0
    folder = tmp_path / "cache" / "models" / "mx"
    before = listing(folder)

    killed = import_stopped(tmp_path, "SIGKILL", source, env)

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "model.json" not in listing(folder)  # never the old record beside the new weights
    info = run_here("models", "info", "mx", "--json", env=env)  # a reader sees the old model (kept aside)
    assert info.returncode == 0 and json.loads(info.stdout)["sha256"] == json.loads(before["model.json"])["sha256"]
    again = run_here("models", "import", source, "--name", "mx", env=env)
    assert again.returncode == 2 and "'mx' is already in the cache" in again.stderr, again.stderr
    assert listing(folder) == before  # the old weights and record, nothing left aside
    verified = run_here("models", "verify", "mx", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def import_stopped(tmp_path: Path, sig: str, source: Path, env: dict) -> subprocess.CompletedProcess:
    """`mmgen models import --overwrite --dtype fp16`, sent `sig` by itself right after its new weights land."""
    script = tmp_path / "stop_after.py"
    script.write_text(STOP_AFTER_A_RENAME)
    return subprocess.run([sys.executable, script, "model.safetensors", sig, "models", "import", source, "--name",
                           "mx", "--overwrite", "--dtype", "fp16"], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


DEAD = 999_999_999  # a process id no process has: what a process killed outright looks like


def killed_replacing(folder: Path, stem: str) -> dict[str, bytes]:
    """Leave in `folder` what a replacement of STEM.safetensors and its record STEM.json killed (kill -9) right
    after its new file landed leaves: the old record and file kept aside under the dead process's names, the new
    file in place without a record. The folder's files, before."""
    before = listing(folder)
    aside = f"{temporaries.owner()}-{DEAD}"
    os.replace(folder / f"{stem}.json", folder / f".{stem}.{aside}-{uuid.uuid4().hex[:8]}.partial.json")
    os.link(folder / f"{stem}.safetensors", folder / f".{stem}.{aside}-{uuid.uuid4().hex[:8]}.partial.safetensors")
    new = folder / f".{stem}.new"
    new.write_bytes(b"new weights, never recorded")
    os.replace(new, folder / f"{stem}.safetensors")
    return before


def test_a_model_whose_replacement_was_killed_is_seen_by_every_reader_until_it_is_put_back(tmp_path):
    """Until the next import/pull/rm put it back, `models list/info/verify` and generate called it unknown. They
    see it as it was kept (aside), and change nothing; the next command that locks its folder puts it back."""
    env, source = mmgen_env(tmp_path), save_tiny_model(tmp_path / "m.safetensors")
    imported = run_here("models", "import", source, "--name", "mx", "--json", env=env)
    sha256 = json.loads(imported.stdout)["sha256"]
    folder = tmp_path / "cache" / "models" / "mx"
    before = killed_replacing(folder, "model")
    left = listing(folder)

    listed = run_here("models", "list", "--json", env=env)
    assert any(row["name"] == "mx" and row["status"] == "cached" for row in map(json.loads, listed.stdout.splitlines()))
    info = run_here("models", "info", "mx", "--json", env=env)
    assert info.returncode == 0 and json.loads(info.stdout)["sha256"] == sha256, info.stderr
    verified = run_here("models", "verify", "mx", env=env)
    assert verified.returncode == 0 and "mx: ok" in verified.stdout + verified.stderr
    with pytest.MonkeyPatch.context() as cache_in_use:
        cache_in_use.setenv("MMGEN_CACHE", env["MMGEN_CACHE"])
        assert load_model("mx").sha256 == sha256  # what generate -m mx samples with
        read = set(input_files(GenerateSettings(model="mx")))  # what no output of the run may replace
        assert {*folder.glob(".model.*.partial.json"), *folder.glob(".model.*.partial.safetensors")} <= read
    assert listing(folder) == left  # a reader writes nothing

    again = run_here("models", "import", source, "--name", "mx", env=env)
    assert again.returncode == 2 and "'mx' is already in the cache" in again.stderr, again.stderr
    assert listing(folder) == before


def test_while_a_model_is_replaced_other_processes_see_the_old_one(tmp_path, monkeypatch):
    """`models import --overwrite` retires the old record first: until its new one landed, the model was not cached
    for everyone else. Looked at right after the new weights land (the record still gone), it is the old model."""
    env, source = mmgen_env(tmp_path), save_tiny_model(tmp_path / "m.safetensors")
    imported = run_here("models", "import", source, "--name", "mx", "--json", env=env)
    sha256 = json.loads(imported.stdout)["sha256"]
    commit, seen = files._commit, []

    def commit_then_look(temp: Path, target: Path, replace: bool) -> None:
        commit(temp, target, replace)
        if target.name == "model.safetensors":
            cache = ModelCache()
            assert not cache.record_path("mx").exists()
            seen.append((cache.names(), cache.record("mx").sha256, load_model("mx").sha256))

    monkeypatch.setattr(files, "_commit", commit_then_look)
    replaced = run_here("models", "import", source, "--name", "mx", "--overwrite", "--dtype", "fp16", env=env)

    assert replaced.returncode == 0, replaced.stderr
    assert seen == [(["mx"], sha256, sha256)]


def test_an_adapter_whose_registration_was_killed_is_seen_then_put_back(adapter_file, tmp_path):
    """A registration over an adapter killed outright left its new file without a record: the adapter read as
    absent, and the next registration deleted the old files kept aside. Now it is seen, then put back."""
    env = mmgen_env(tmp_path)
    assert run_here("models", "import", adapter_file, "--name", "style", env=env).returncode == 0
    folder = tmp_path / "cache" / "adapters" / "style"
    before = killed_replacing(folder, "adapter")

    info = run_here("models", "info", "style", "--json", env=env)
    assert info.returncode == 0 and json.loads(info.stdout)["sha256"] == sha256_file(adapter_file), info.stderr
    verified = run_here("models", "verify", "style", env=env)
    assert verified.returncode == 0 and "style: ok" in verified.stdout + verified.stderr

    again = run_here("models", "import", adapter_file, "--name", "style", env=env)
    assert again.returncode == 2 and "already registered" in again.stderr, again.stderr
    assert listing(folder) == before


def test_models_info_of_an_adapter_whose_registration_was_killed_hashes_its_file_once(adapter_file, tmp_path,
                                                                                       monkeypatch):
    """While a registration over an adapter is in flight or was killed, finding its file as last kept hashes it (is
    the file beside the record the one it describes?). `models info NAME` found it four times over — a full read of
    the adapter each time; now once, passed along."""
    from mmgen.adapters import store

    env = mmgen_env(tmp_path)
    assert run_here("models", "import", adapter_file, "--name", "style", env=env).returncode == 0
    killed_replacing(tmp_path / "cache" / "adapters" / "style", "adapter")
    hashed = []
    monkeypatch.setattr(store, "sha256_file", lambda path: hashed.append(path) or sha256_file(path))

    info = run_here("models", "info", "style", "--json", env=env)

    assert info.returncode == 0 and json.loads(info.stdout)["sha256"] == sha256_file(adapter_file), info.stderr
    assert len(hashed) == 1, hashed


def test_a_runs_final_weights_whose_replacement_was_killed_are_put_back(tmp_path):
    """A run killed as it wrote its final weights again (a resumed run) left new weights without their json; the
    next finetune there puts the old pair back."""
    run_dir, data = tmp_path / "run", tmp_path / "clips"
    run_dir.mkdir()
    data.mkdir()
    (run_dir / "model.safetensors").write_bytes(b"the final weights")
    (run_dir / "model.json").write_text(json.dumps({"sha256": sha256_file(run_dir / "model.safetensors")}))
    before = killed_replacing(run_dir, "model")

    refused = run_here("finetune", data, "-o", run_dir, env=mmgen_env(tmp_path))

    assert refused.returncode == 2 and "not empty" in refused.stderr, refused.stderr
    assert listing(run_dir) == before


def run_model_killed_replacing(run_dir: Path) -> tuple[Path, str]:
    """A run folder whose run was killed as it wrote its final weights again (a resumed run reaching its end): new
    weights in place without their json, the old pair kept aside under the dead process's names. The weights file,
    and the sha256 of the old weights."""
    run_dir.mkdir()
    weights = save_tiny_model(run_dir / "model.safetensors", seed=1)
    old = sha256_file(weights)
    (run_dir / "model.json").write_text(json.dumps({"sha256": old}))
    killed_replacing(run_dir, "model")
    os.replace(save_tiny_model(run_dir.parent / "new.safetensors", seed=2), weights)  # new weights, never recorded
    return weights, old


def test_a_runs_model_given_by_path_whose_replacement_was_killed_is_the_one_it_kept(tmp_path):
    """`generate -m RUN/model.safetensors` sampled the new weights such a run left (taken back by the next finetune
    there). It reads the pair the run kept aside, as `-m NAME` reads a cached model's."""
    weights, old = run_model_killed_replacing(tmp_path / "run")

    done = run_here("generate", "-m", weights, "--steps", "1", "--no-previews", "-o", tmp_path / "out", "--json",
                    env=mmgen_env(tmp_path))

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model_sha256"] == old


def test_a_runs_model_imported_by_path_while_its_replacement_was_killed_is_the_one_it_kept(tmp_path):
    """`models import RUN/model.safetensors` cached the new weights such a run left, never recorded; it imports the
    weights the run kept aside, as `generate -m RUN/model.safetensors` samples them, and the record names the path
    given."""
    weights, old = run_model_killed_replacing(tmp_path / "run")

    done = run_here("models", "import", weights, "--name", "mine", "--json", env=mmgen_env(tmp_path))

    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["source_sha256"] == old
    assert record["source"] == str(weights.resolve())


def test_an_output_never_takes_the_name_of_the_json_a_run_kept_aside(tmp_path):
    """What a model is read from is an input, the json kept aside with it too: an output by its name (OUT.json
    beside OUT.mp4) would have replaced the record of the weights read."""
    weights, _ = run_model_killed_replacing(tmp_path / "run")
    [kept] = weights.parent.glob(".model.*.partial.json")
    before = {p.name: p.read_bytes() for p in weights.parent.iterdir()}
    source = write_test_video(tmp_path / "v.mp4", size=(16, 16)).path

    refused = run_here("soundtrack", source, "-m", weights, "--steps", "1", "-o", kept.with_suffix(".mp4"),
                       "--overwrite", env=mmgen_env(tmp_path))

    assert refused.returncode == 2, refused.stderr
    assert f"cannot write {kept}: it is the input {kept}" in refused.stderr
    assert {p.name: p.read_bytes() for p in weights.parent.iterdir()} == before


def test_a_stop_as_a_batch_jobs_sidecar_lands_leaves_no_lone_sidecar(tiny, tmp_path, monkeypatch):
    """`batch` stopped right after out/x.json appeared left only that sidecar, saying nothing was written."""
    jobs, out = tmp_path / "jobs.yaml", tmp_path / "out"
    jobs.write_text(f"jobs:\n  - {{kind: generate, name: x, num: 1, steps: 1, previews: false, model: '{tiny}'}}\n")
    stop_right_after(monkeypatch, "x.json", signal.SIGINT)

    stopped = run_here("batch", jobs, "-o", out, env=mmgen_env(tmp_path))

    assert stopped.returncode == 130, stopped.stderr
    assert not [p.name for p in out.glob("x*")] and not [p.name for p in out.glob(".x*")], stopped.stderr


@pytest.mark.parametrize("given", ["path", "name"])
def test_an_adapter_whose_replacement_was_killed_is_read_as_kept_and_named_by_its_own_path(adapter_file, tmp_path,
                                                                                          given):
    """A LoRA run's RUN/adapter.safetensors is written again with its json as a run's model is: `--adapter` by path
    read the new file such a run left without its json (here not even an adapter), where `-m RUN/model.safetensors`
    reads the pair kept aside. Read as last kept, by path as by name, the sidecar names the adapter as it is known,
    never the hidden file kept aside that it was read from."""
    env = mmgen_env(tmp_path)
    if given == "path":
        folder = tmp_path / "run"
        folder.mkdir()
        own = folder / "adapter.safetensors"
        own.write_bytes(adapter_file.read_bytes())
        (folder / "adapter.json").write_text(json.dumps({"sha256": sha256_file(own)}))
        source = str(own)
    else:
        assert run_here("models", "import", adapter_file, "--name", "style", env=env).returncode == 0
        folder, source = tmp_path / "cache" / "adapters" / "style", "style"
        own = folder / "adapter.safetensors"
    killed_replacing(folder, "adapter")

    done = run_here("generate", "-m", tmp_path / "base.safetensors", "--adapter", source, "--steps", "1",
                    "--no-previews", "-o", tmp_path / "out", "--json", env=env)

    assert done.returncode == 0, done.stderr
    [used] = json.loads(done.stdout)["adapters"]
    assert used == {"file": str(own), "sha256": sha256_file(adapter_file), "weight": 1.0,
                    **({"name": "style"} if given == "name" else {})}
    with pytest.MonkeyPatch.context() as cache_in_use:
        cache_in_use.setenv("MMGEN_CACHE", env["MMGEN_CACHE"])
        read = set(input_files(GenerateSettings(model=str(tmp_path / "base.safetensors"), adapter=source)))
    assert {*folder.glob(".adapter.*.partial.json"), *folder.glob(".adapter.*.partial.safetensors")} <= read


def test_a_stop_while_torch_loads_waits_for_its_import_to_end(tmp_path, monkeypatch):
    """Ctrl-C while torch loads aborted `mmgen doctor` about once in 30 (`terminate called after throwing an instance
    of 'pybind11::error_already_set'`, exit 134): the KeyboardInterrupt was raised inside a Python callback of torch's
    C++ start. The import of torch (here a stand-in library that is stopped as it loads) now ends first, whole, and
    the stop raises as it returns."""
    (tmp_path / "slow_library.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\nfor _ in range(1000):\n    pass\nloaded = True\n")
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, "slow_library", raising=False)
    with pytest.raises(KeyboardInterrupt), stops_interrupt():
        import slow_library  # noqa: F401
    assert sys.modules["slow_library"].loaded  # the stop did not cut it short
    sys.modules.pop("slow_library")


def test_the_import_hook_is_in_only_while_a_call_runs(tiny):
    """Imports go through the hook that holds a stop across a library's first import (~0.3 µs more each) only while
    an mmgen call runs: a command, or a program's pipeline call (here its progress callback looks)."""
    import builtins

    from mmgen.pipelines import generate
    from mmgen.runtime import stop_signals

    plain = builtins.__import__
    with stops_interrupt():
        assert builtins.__import__ is stop_signals._held_import
    assert builtins.__import__ is plain
    hooks = []
    generate(GenerateSettings(model=str(tiny), steps=1, seed=1), progress=lambda event: hooks.append(builtins.__import__))
    assert hooks and set(hooks) == {stop_signals._held_import}
    assert builtins.__import__ is plain
