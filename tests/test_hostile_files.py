"""Hostile files mmgen reads: a cache folder someone (or something) tampered with — a model's or adapter's folder
that is a symlink to a folder elsewhere, records that are links to /dev/zero, pipes, folders, huge or nested a
million deep — and weights files whose JSON is nested too deeply. mmgen deletes and writes nothing outside the
cache through a link, reads no record without a limit, and says each such file is damaged (a row of `models
list`, exit 2 for a command that needs it) — never a hang, a crash or exit 1."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
import safetensors.torch
import torch
from cli_here import run_here
from mmgen_cli import REPO, mmgen_env

from mmgen.train.runlog import first_event

DEMO = REPO / "mmgen" / "assets" / "demo.safetensors"


def _victim(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A folder outside the cache holding what a model's folder holds, and an unrelated file of the user's."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "model.json").write_text('{"name": "d1"}')
    (victim / "model.safetensors").write_bytes(b"not mine to delete")
    (victim / "precious.part").write_text("keep")
    (victim / "adapter.json").write_text("{}")
    return victim, {p.name: p.read_bytes() for p in victim.iterdir()}


def test_a_cache_entry_that_is_a_symlink_is_damaged_and_rm_removes_only_the_link(tmp_path):
    """`models rm d1` with models/d1 a link to another folder deleted that folder's model files and every *.part
    in it. The link is a damaged entry for every command; `rm` removes the link, never what it points to."""
    env = mmgen_env(tmp_path)
    cache = Path(env["MMGEN_CACHE"])
    victim, before = _victim(tmp_path)
    for kind in ("models", "adapters"):
        (cache / kind).mkdir(parents=True)
        (cache / kind / "d1").symlink_to(victim)

    listed = run_here("models", "list", "--json", env=env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert listed.returncode == 0
    assert {(r["kind"], r["status"]) for r in rows if r["name"] == "d1"} == {("model", "damaged"),
                                                                              ("adapter", "damaged")}
    for args in (("models", "info", "d1", "--model"), ("models", "import", DEMO, "-n", "d1")):
        refused = run_here(*args, env=env)
        assert refused.returncode == 2 and "damaged: a symlink" in refused.stderr, refused.stderr

    for _ in ("models", "adapters"):
        removed = run_here("models", "rm", "d1", env=env)
        assert removed.returncode == 0 and "removed the symlink" in removed.stderr, removed.stderr
    assert not os.path.lexists(cache / "models" / "d1") and not os.path.lexists(cache / "adapters" / "d1")
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == before


def test_a_linked_adapters_folder_or_entry_is_a_damaged_row_and_the_rest_still_list(tmp_path):
    """adapters/ a link, or an entry that is a link to a folder holding a record a replacement kept aside (or no
    record at all): `models list` ended with exit 2 on the first of them. Each is one row saying it is damaged and
    how to clear it, as a linked model folder is; everything else is listed, exit 0."""
    victim, before = _victim(tmp_path)
    (victim / "x").mkdir()
    (victim / "x" / "adapter.json").write_text("{}")
    linked_folder = mmgen_env(tmp_path / "one")
    cache = Path(linked_folder["MMGEN_CACHE"])
    cache.mkdir(parents=True)
    (cache / "adapters").symlink_to(victim)
    linked_entries = mmgen_env(tmp_path / "two")
    cache = Path(linked_entries["MMGEN_CACHE"])
    aside = tmp_path / "aside"
    aside.mkdir()
    for stem in ("model", "adapter"):  # what a replacement keeps aside while it runs
        (aside / f".{stem}.0a1b2c3d-4242-0a1b2c3d.partial.json").write_text("{}")
    for kind, entry in (("models", "m1"), ("adapters", "a1"), ("adapters", "a2")):
        (cache / kind).mkdir(parents=True, exist_ok=True)
        (cache / kind / entry).symlink_to(aside if entry != "a2" else tmp_path / "nowhere")

    for env, damaged in ((linked_folder, {("adapter", "adapters/"): "replace the link"}),  # one row, not one per entry
                         (linked_entries, {("model", "m1"): "mmgen models rm m1", ("adapter", "a1"): "mmgen models rm a1",
                                           ("adapter", "a2"): "mmgen models rm a2"})):
        listed = run_here("models", "list", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        rows = {(row["kind"], row["name"]): row for row in map(json.loads, listed.stdout.splitlines())}
        assert rows[("model", "demo")]["status"] == "bundled"
        for key, hint in damaged.items():
            assert rows[key]["status"] == "damaged" and "damaged: a symlink" in rows[key]["description"], rows[key]
            assert hint in rows[key]["description"]
        assert {key for key, row in rows.items() if row["status"] == "damaged"} == set(damaged)
    assert {p.name: p.read_bytes() for p in victim.iterdir() if p.is_file()} == before


def test_a_trust_folder_or_lock_file_that_is_a_symlink_is_never_written_through(tmp_path):
    """trust/ a link: `rm --forget` deleted the record in the folder it points to. A model's .lock a link to a
    file: the lock (filelock) truncated that file."""
    env = mmgen_env(tmp_path)
    cache = Path(env["MMGEN_CACHE"])
    victim, before = _victim(tmp_path)
    (victim / "d1.json").write_text("{}")
    before["d1.json"] = b"{}"
    cache.mkdir()
    (cache / "trust").symlink_to(victim)
    forget = run_here("models", "rm", "d1", "--forget", env=env)
    assert forget.returncode == 2 and "trust: damaged: a symlink" in forget.stderr, forget.stderr

    (cache / "models" / "d2").mkdir(parents=True)
    (cache / "models" / "d2" / ".lock").symlink_to(victim / "precious.part")
    run_here("models", "rm", "d2", env=env)
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == before


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _huge(path: Path) -> None:
    path.write_bytes(b" " * 2**20 + b"{}")  # JSON, but more than a record can be


def _linked(path: Path) -> None:
    """A link to a record that would read well: mmgen keeps no links in its cache, and follows none there."""
    (path.parent.parent / "elsewhere.json").write_text(json.dumps({"name": "d1"}))
    path.symlink_to(path.parent.parent / "elsewhere.json")


CASES = {
    "link": _linked,
    "dev-null": lambda path: path.symlink_to(os.devnull),
    "fifo": _fifo,
    "folder": lambda path: path.mkdir(),
    "huge": _huge,
    "deep": lambda path: path.write_text("[" * 100_000 + "]" * 100_000),
    "not-utf8": lambda path: path.write_bytes(b'{"name": "\xff\xfe"}'),
}


@contextmanager
def unblocked(fifo: Path, after: float = 5.0) -> Iterator[None]:
    """A reader blocked opening `fifo` (as mmgen once was, for good, holding the GIL: no thread of ours could
    run) gets a writer `after` seconds, from another process; it is killed once the block is done."""
    writer = subprocess.Popen(["sh", "-c", f'sleep {after}; exec 3>"$0"', str(fifo)])
    try:
        yield
    finally:
        writer.kill()
        writer.wait()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("record", ["models/d1/model.json", "adapters/d1/adapter.json", "trust/demo.json"])
def test_a_record_that_is_no_small_json_file_is_that_entry_damaged(tmp_path, record, case):
    """model.json a link to /dev/zero grew `models list` to 7 GB and a MemoryError (exit 1); a pipe hung it for
    good; JSON nested 100,000 deep was a RecursionError naming no file. Each is now that entry's damaged row."""
    env = mmgen_env(tmp_path)
    path = Path(env["MMGEN_CACHE"]) / record
    path.parent.mkdir(parents=True)
    if record.startswith("models/"):
        (path.parent / "model.safetensors").write_bytes(b"x")
    CASES[case](path)

    started = time.monotonic()
    with unblocked(path) if case == "fifo" else nullcontext():
        listed = run_here("models", "list", "--json", env=env)
    assert time.monotonic() - started < 4  # a pipe is not waited on
    assert listed.returncode == 0, listed.stderr
    name = "demo" if record.startswith("trust/") else "d1"
    row = next(json.loads(line) for line in listed.stdout.splitlines() if json.loads(line)["name"] == name)
    assert row["status"] == "damaged" and str(path) in row["description"], row
    if record.startswith("models/"):  # and `models rm` takes the damaged entry away (a folder was an OSError, exit 1)
        assert run_here("models", "rm", "d1", env=env).returncode == 0
        assert not path.parent.exists() and not path.is_symlink()


@pytest.mark.parametrize("target", ["/dev/zero", "/etc/passwd"])
def test_cached_weights_that_are_a_symlink_are_damaged(tmp_path, target):
    """model.safetensors a link to /dev/zero: `models list` crashed (AttributeError, exit 1); to /etc/passwd it
    listed as cached."""
    env = mmgen_env(tmp_path)
    folder = Path(env["MMGEN_CACHE"]) / "models" / "d1"
    folder.mkdir(parents=True)
    size = os.stat(target).st_size
    (folder / "model.json").write_text(json.dumps({
        "name": "d1", "arch": "mm-unet", "config": {}, "sha256": "0" * 64, "size": size, "dtype": "float32",
        "source": "x", "source_sha256": "0" * 64, "source_format": "safetensors", "imported_at": "2026-01-01",
        "mmgen_version": "0"}))
    (folder / "model.safetensors").symlink_to(target)
    listed = run_here("models", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(json.loads(line) for line in listed.stdout.splitlines() if json.loads(line)["name"] == "d1")
    assert row["status"] == "damaged" and "model.safetensors: damaged" in row["description"], row
    doctor = run_here("doctor", env=env)
    assert doctor.returncode == 0 and "✗ d1: " in doctor.stdout, doctor.stdout + doctor.stderr


DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON, nested deeper than any parser recurses


def _weights_file(path: Path, metadata: dict[str, str]) -> Path:
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(path), metadata=metadata)
    return path


DEEP_CASES = ["generate -m FILE", "models import FILE", "generate --adapter FILE", "models info", "models verify"]


@pytest.mark.parametrize("case", DEEP_CASES)
def test_json_nested_too_deeply_in_a_file_is_that_file_damaged(tmp_path, case):
    """100,000 `[` in a weights file's metadata config, an adapter's base_config or a cache record was a
    RecursionError naming no file (exit 1) in `generate -m FILE`, `models import`, `--adapter`, `info`, `verify`."""
    env = mmgen_env(tmp_path)
    weights = _weights_file(tmp_path / "deep.safetensors", {"format": "mmgen", "arch": "mm-unet", "config": DEEP})
    adapter = _weights_file(tmp_path / "adapter.safetensors", {
        "format": "mmgen-adapter/1", "rank": "4", "alpha": "4", "targets": "attention", "base": "demo",
        "base_sha256": "0" * 64, "arch": "mm-unet", "base_config": DEEP, "tensors_sha256": "0" * 64})
    record = Path(env["MMGEN_CACHE"]) / "models" / "d1" / "model.json"
    record.parent.mkdir(parents=True)
    record.write_text(DEEP)
    (record.parent / "model.safetensors").write_bytes(b"x")
    args, named = {
        "generate -m FILE": (("generate", "-m", weights, "--steps", "1", "-o", tmp_path / "o"), weights),
        "models import FILE": (("models", "import", weights, "--name", "deep"), weights),
        "generate --adapter FILE": (("generate", "--adapter", adapter, "--steps", "1", "-o", tmp_path / "o"),
                                    adapter),
        "models info": (("models", "info", "d1"), record),
        "models verify": (("models", "verify", "d1"), record),
    }[case]
    said = run_here(*args, env=env)
    assert said.returncode == 2, (args, said.stderr)
    said_of = f"damaged: cache record: JSON nested too deeply (run `mmgen models rm d1`) ({named})" \
        if case == "models verify" else f"{named}: damaged"  # a verdict names its file last, once
    assert said_of in said.stderr + said.stdout and "nested too deeply" in said.stderr + said.stdout, \
        (args, said.stderr)
    assert not (tmp_path / "o").exists()  # generate's -o is a folder: -o o.mp4 is refused (194548e)


@pytest.mark.parametrize("args", [("models", "import", "FIFO", "--name", "rf"), ("batch", "FIFO", "--dry-run"),
                                  ("finetune", "DATA", "--config", "FIFO", "-o", "RUN")])
def test_a_named_pipe_given_as_an_input_file_is_refused_unopened(tmp_path, args):
    """`models import fifo.safetensors` and `batch fifo.yaml` waited in open() for a writer that never came, deaf
    to Ctrl-C and SIGTERM: every input file is checked as a regular file before it is opened."""
    env = mmgen_env(tmp_path)
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    names = {"FIFO": fifo, "DATA": tmp_path, "RUN": tmp_path / "run"}
    started = time.monotonic()
    with unblocked(fifo):
        said = run_here(*(names.get(a, a) for a in args), env=env)
    assert time.monotonic() - started < 4  # not waited on
    assert said.returncode == 2 and f"{fifo}: it is not a regular file" in said.stderr, said.stderr
    assert not (tmp_path / "run").exists()


def test_the_clips_folder_of_the_cache_that_is_a_symlink_is_not_written_through(tmp_path):
    """finetune keeps its decoded clips in the cache's clips/ (when no --cache-dir is given): a link there wrote
    the shards (and removed leftovers) in the folder it points to."""
    env = mmgen_env(tmp_path)
    victim, before = _victim(tmp_path)
    cache = Path(env["MMGEN_CACHE"])
    cache.mkdir()
    (cache / "clips").symlink_to(victim)
    (tmp_path / "data").mkdir()
    said = run_here("finetune", tmp_path / "data", "-o", tmp_path / "run", env=env)
    assert said.returncode == 2 and "clips: damaged: a symlink" in said.stderr, said.stderr
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == before and not (tmp_path / "run").exists()


def test_a_run_log_line_nested_too_deeply_is_passed_over_as_a_torn_one(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(DEEP + "\n" + json.dumps({"event": "data", "clips": 3}) + "\n")
    assert first_event(log, "data") == {"event": "data", "clips": 3}


def _an_adapter(tmp_path: Path) -> Path:
    """An adapter file for a tiny model of its own."""
    from tiny_model import save_tiny_model

    from mmgen.adapters import BaseModel, LoraSpec, attach, save_adapter
    from mmgen.files import sha256_file
    from mmgen.weights import load_model

    base = save_tiny_model(tmp_path / "base.safetensors")
    loaded = load_model(base)
    attach(loaded.model, LoraSpec(4, 4.0, "attention"))
    adapter = tmp_path / "adapter.safetensors"
    save_adapter(adapter, loaded.model, LoraSpec(4, 4.0, "attention"),
                 BaseModel(str(base), sha256_file(base), loaded.arch, dataclasses.asdict(loaded.config)))
    return adapter


@pytest.mark.parametrize("linked", ["models", "adapters"])
def test_a_linked_models_or_adapters_folder_stops_only_its_own_names(tmp_path, linked):
    """adapters/ a link: `models info/verify/rm NAME` and `models import FILE -n NAME` of a model ended in 'damaged'
    (exit 2), as they asked whether NAME is an adapter; likewise models/ a link for an adapter's name. The other
    kind's names work; a name that may be the linked kind's says that folder is damaged, and how to mend it."""
    env = mmgen_env(tmp_path)
    cache = Path(env["MMGEN_CACHE"])
    other = DEMO if linked == "adapters" else _an_adapter(tmp_path)  # an entry of the kind not linked
    assert run_here("models", "import", other, "-n", "mine", env=env).returncode == 0
    (tmp_path / "elsewhere").mkdir()
    (cache / linked).symlink_to(tmp_path / "elsewhere")

    for args in (("models", "info", "mine"), ("models", "verify", "mine"), ("models", "import", other, "-n", "two"),
                 ("models", "rm", "mine")):
        done = run_here(*args, env=env)
        assert done.returncode == 0, (args, done.stderr)
    flag = "--adapter" if linked == "adapters" else "--model"
    for args in (("models", "info", "style"), ("models", "rm", "style", flag), ("models", "verify", "style")):
        refused = run_here(*args, env=env)
        assert refused.returncode == 2, (args, refused.stderr)
        assert f"{cache / linked}: damaged: a symlink" in refused.stderr, (args, refused.stderr)
        assert f"replace the link {cache / linked} with a folder" in refused.stderr, (args, refused.stderr)
    assert not any((tmp_path / "elsewhere").iterdir())


@pytest.mark.parametrize("target", ["empty", "nowhere"])
@pytest.mark.parametrize("kind", ["models", "adapters"])
def test_a_linked_models_or_adapters_folder_is_one_damaged_row_whatever_it_holds(tmp_path, kind, target):
    """models/ or adapters/ a link to an empty folder, or to nowhere, had no row at all in `models list` (nor in
    `doctor` or `verify`): only entries found through the link were damaged rows. The folder is one damaged row of its
    own, named `kind`/, saying how to mend it, whatever the link points to; nothing is looked for through it. `verify`
ended with the hint for a corrupt file, "pull or import them again": it says how to mend the link."""
    env = mmgen_env(tmp_path)
    cache, kind_row = Path(env["MMGEN_CACHE"]), kind.removesuffix("s")
    cache.mkdir()
    if target == "empty":
        (tmp_path / "elsewhere").mkdir()
    (cache / kind).symlink_to(tmp_path / "elsewhere")
    mend = f"replace the link {cache / kind} with a folder"

    listed = run_here("models", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    [row] = [r for r in map(json.loads, listed.stdout.splitlines()) if r["name"] == f"{kind}/"]
    assert row["kind"] == kind_row and row["status"] == "damaged" and mend in row["description"], row
    doctor = run_here("doctor", env=env)
    assert doctor.returncode == 0, doctor.stderr
    assert f"{kind}/: {cache / kind}: damaged: a symlink" in doctor.stdout, doctor.stdout
    verified = run_here("models", "verify", env=env)
    assert verified.returncode == 2
    assert f"{kind}/: damaged: a symlink (to {tmp_path / 'elsewhere'}), not a folder" in verified.stdout
    assert verified.stderr.endswith(f"{kind_row} fails verification: {kind}/ ({mend})\n"), verified.stderr


def test_a_bundled_model_is_used_whatever_state_the_cache_is_in(tmp_path):
    """models/ a link ended `generate -m demo` and `models info demo` in 'models: damaged: a symlink', though the
    bundled demo is read from mmgen's own files, never the cache: both work; the damaged folder keeps its row."""
    env = mmgen_env(tmp_path)
    cache = Path(env["MMGEN_CACHE"])
    cache.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (cache / "models").symlink_to(tmp_path / "elsewhere")

    made = run_here("generate", "-m", "demo", "--steps", "1", "--seed", "1", "-o", tmp_path / "out", env=env)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "out" / "clip_0000.mp4").is_file()
    info = run_here("models", "info", "demo", env=env)
    assert info.returncode == 0, info.stderr
    listed = run_here("models", "list", "--json", env=env)
    assert [r["status"] for r in map(json.loads, listed.stdout.splitlines()) if r["name"] == "models/"] == ["damaged"]
    assert not any((tmp_path / "elsewhere").iterdir())
