"""Adapters as a user handles them: register one by name, see it in `models list` beside its base, merge it
into a plain model, remove it — and a registered copy that was changed on disk is refused."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from cli_here import run_here
from mmgen_cli import mmgen_env
from tiny_model import save_tiny_model, tiny_config

from mmgen.adapters import (
    AdapterUse,
    BaseModel,
    LoraSpec,
    adapter_parameters,
    attach,
    merge_adapters,
    read_adapter,
    registration,
    save_adapter,
    store,
)
from mmgen.cli import run
from mmgen.errors import UsageError
from mmgen.files import sha256_file
from mmgen.locks import file_lock
from mmgen.weights import ModelCache, import_weights, load_model


@pytest.fixture(scope="module")
def adapter_file(tmp_path_factory):
    """A base model file and a rank-4 adapter trained on it (random adapter values stand in for training), made
    once for the module: tests only read them (each registers copies in its own cache)."""
    folder = tmp_path_factory.mktemp("adapter")
    base = save_tiny_model(folder / "base.safetensors")
    model = load_model(base).model
    attach(model, LoraSpec(4, 4.0, "attention"))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _, p in adapter_parameters(model):
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    identity = BaseModel(str(base), sha256_file(base), "mm-unet", dataclasses.asdict(tiny_config()))
    path = folder / "adapter.safetensors"
    save_adapter(path, model, LoraSpec(4, 4.0, "attention"), identity)
    return base, path


@pytest.fixture
def mmgen(tmp_path):
    """`mmgen ARGS` run in this process (tests/cli_here.py), with its cache, config and presets under tmp_path: the
    commands' exit codes and output are the point here, not a new process for each (~3 s apiece)."""
    env = mmgen_env(tmp_path)
    return lambda *args: run_here(*args, env=env)


def test_an_adapter_is_registered_listed_merged_and_removed_by_name(adapter_file, tmp_path, mmgen):
    base, path = adapter_file
    registered = mmgen("models", "import", path, "--name", "my-style", "--json")
    assert registered.returncode == 0, registered.stderr
    record = json.loads(registered.stdout)
    assert record["kind"] == "adapter" and record["base"] == str(base) and record["rank"] == 4
    assert record["sha256"] == sha256_file(path)

    listed = mmgen("models", "list", "--json")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["name"] for r in rows if r.get("kind") == "adapter"] == ["my-style"]
    shown = mmgen("models", "list").stdout
    assert "my-style" in shown and "adapters" in shown

    again = mmgen("models", "import", path, "--name", "my-style")
    assert again.returncode == 2 and "already registered" in again.stderr

    merged = mmgen("models", "import", path, "--name", "styled", "--merge")
    assert merged.returncode == 0, merged.stderr
    expected = load_model(base).model
    merge_adapters(expected, [(read_adapter(path), 1.0)])
    cached = load_model(ModelCache(root=tmp_path / "cache").weights_path("styled")).model
    for (name, a), (_, b) in zip(expected.state_dict().items(), cached.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
    rows = [json.loads(line) for line in mmgen("models", "list", "--json").stdout.splitlines()]
    styled = next(r for r in rows if r["name"] == "styled")  # not the temporary file the merge was written to
    assert styled["description"] == f"merged from {path.resolve()} and its base {base}"

    removed = mmgen("models", "rm", "my-style")
    assert removed.returncode == 0, removed.stderr
    listed = mmgen("models", "list", "--json")
    assert not [line for line in listed.stdout.splitlines() if '"kind": "adapter"' in line]


def test_an_adapter_is_registered_only_while_no_other_process_holds_its_name(adapter_file, tmp_path, mmgen,
                                                                             monkeypatch):
    """A model's import holds its folder's lock; an adapter's registration took none, so two registrations of one
    name at once could interleave their files. It waits for the holder, as an import does, then registers. (The
    holder lets go once the registration says it waits: a fixed half second ran out before a slow machine's
    registration reached the lock.)"""
    import mmgen.weights.entry_lock as entry_lock

    _, path = adapter_file
    folder = tmp_path / "cache" / "adapters" / "my-style"
    folder.mkdir(parents=True)
    held, waiting, released = threading.Event(), threading.Event(), []
    say = entry_lock.say
    monkeypatch.setattr(entry_lock, "say", lambda line: (say(line), waiting.set()))

    def another_holder() -> None:
        with file_lock(folder / ".lock"):
            held.set()
            waiting.wait(timeout=120)
            time.sleep(0.2)
            released.append(time.time())

    holder = threading.Thread(target=another_holder)
    holder.start()
    held.wait()
    registered = mmgen("models", "import", path, "--name", "my-style")
    holder.join()

    assert registered.returncode == 0, registered.stderr
    assert f", pid {os.getpid()}) working on 'my-style' ..." in registered.stderr  # (the test's process holds it)
    assert "mmgen: waiting for another mmgen process (" in registered.stderr
    assert (folder / "adapter.json").stat().st_mtime >= released[0]


def test_merge_is_for_adapters_only(adapter_file, mmgen):
    base, _ = adapter_file
    result = mmgen("models", "import", base, "--name", "x", "--merge")
    assert result.returncode == 2 and "--merge is for adapters" in result.stderr
    missing = mmgen("models", "import", "nosuch.safetensors", "--name", "x", "--merge")  # not "is not an adapter"
    assert missing.returncode == 2 and missing.stderr == "mmgen: error: nosuch.safetensors: no such file\n"


def decoded(mp4: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from mmgen.media import read_audio, read_video

    return read_video(mp4, 10.0, (16, 16)), read_audio(mp4, 16000)


def test_generating_with_an_adapter_equals_the_merged_model_and_the_sidecar_says_so(adapter_file, tmp_path, mmgen):
    base, path = adapter_file
    assert mmgen("models", "import", path, "--name", "styled", "--merge").returncode == 0
    common = ["--seed", 5, "--steps", 2, "--no-previews", "--precision", "fp32", "--json"]
    adapted = mmgen("generate", "-m", base, "--adapter", path, "-o", tmp_path / "a", *common)
    merged = mmgen("generate", "-m", "styled", "-o", tmp_path / "m", *common)
    plain = mmgen("generate", "-m", base, "-o", tmp_path / "p", *common)
    assert adapted.returncode == merged.returncode == plain.returncode == 0, adapted.stderr + merged.stderr
    sidecar = json.loads(adapted.stdout)
    assert sidecar["adapters"] == [{"file": str(path), "sha256": sha256_file(path), "weight": 1.0}]
    assert sidecar["model_sha256"] == sha256_file(base)
    ours, theirs, without = (decoded(tmp_path / d / "clip_0000.mp4") for d in ("a", "m", "p"))
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert not torch.equal(ours[1], without[1])  # the adapter changed the sound


def test_a_sidecar_names_a_registered_adapter_by_its_name_too(adapter_file, tmp_path, mmgen):
    """An adapter used by registered name was recorded only by its copy's path in the cache and its sha256."""
    base, path = adapter_file
    assert mmgen("models", "import", path, "--name", "my-style").returncode == 0
    named = mmgen("generate", "-m", base, "--adapter", "my-style:0.5", "-o", tmp_path / "n", "--steps", 1,
                  "--no-previews", "--json")
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout)["adapters"] == [{
        "file": str(store.folder_of("my-style", tmp_path / "cache") / "adapter.safetensors"),
        "sha256": sha256_file(path), "weight": 0.5, "name": "my-style"}]


def test_a_registered_adapter_that_does_not_belong_is_named_as_given(adapter_file, tmp_path, mmgen):
    """`generate -m demo --adapter my-style` (trained on another model) named the copy in the cache
    (`…/adapters/my-style/adapter.safetensors`), not `my-style` as typed."""
    base, path = adapter_file
    assert mmgen("models", "import", path, "--name", "my-style").returncode == 0
    foreign = mmgen("generate", "-m", "demo", "--adapter", "my-style", "-o", tmp_path / "x")
    assert foreign.returncode == 2
    assert foreign.stderr.startswith(f"mmgen: error: adapter my-style was trained on {base} "), foreign.stderr


def test_an_adapter_that_does_not_belong_is_one_line_exit_2(adapter_file, tmp_path, mmgen):
    base, path = adapter_file
    foreign = mmgen("generate", "-m", "demo", "--adapter", path, "-o", tmp_path / "x")
    assert foreign.returncode == 2
    assert f"was trained on {base}" in foreign.stderr and "not on demo" in foreign.stderr
    changed = tmp_path / "changed.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10
    changed.write_bytes(bytes(data))
    tampered = mmgen("generate", "-m", base, "--adapter", changed, "-o", tmp_path / "y")
    assert tampered.returncode == 2 and "changed or damaged" in tampered.stderr
    as_model = mmgen("generate", "-m", path, "-o", tmp_path / "z")
    assert as_model.returncode == 2 and "is a LoRA adapter, not a model" in as_model.stderr
    for result in (foreign, tampered, as_model):
        assert len(result.stderr.strip().splitlines()) == 1
    assert not any((tmp_path / d).exists() for d in "xyz")


def test_a_registered_adapter_whose_file_was_removed_is_said_to_be_missing(adapter_file, tmp_path, mmgen):
    """Its file deleted by hand, `--adapter NAME` ended in "error: FileNotFoundError: …" (exit 1), an unexpected
    error's line; `models verify` said "missing". Said so, with the two ways out, exit 2, before anything is made —
    and `models info` and `models list` say its status is missing, as verify does (they said "cached")."""
    base, path = adapter_file
    assert mmgen("models", "import", path, "--name", "style").returncode == 0
    file = tmp_path / "cache" / "adapters" / "style" / "adapter.safetensors"
    file.unlink()
    done = mmgen("generate", "-m", base, "--adapter", "style", "-o", tmp_path / "out")
    assert (done.returncode, done.stderr) == (2, f"mmgen: error: --adapter style: registered, but its file is missing "
                                                 f"({file}) (import it again (mmgen models import FILE --name style "
                                                 "--overwrite), or forget it (mmgen models rm style))\n")
    assert not (tmp_path / "out").exists()
    info = mmgen("models", "info", "style", "--json")
    assert json.loads(info.stdout)["status"] == "missing", info.stderr
    listed = [json.loads(line) for line in mmgen("models", "list", "--json").stdout.splitlines()]
    assert [entry["status"] for entry in listed if entry["kind"] == "adapter"] == ["missing"]  # and doctor's, alike
    assert mmgen("models", "rm", "style").returncode == 0


def test_a_batch_job_takes_adapters_with_weights(adapter_file, tmp_path, mmgen):
    """Named relative to the batch file's folder, as the model is, whatever folder the batch runs from."""
    base, path = adapter_file
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        f"defaults: {{model: ../{base.parent.name}/{base.name}, steps: 2, seed: 1, precision: fp32}}\n"
        f"jobs:\n  - kind: generate\n    name: styled\n    adapter: ['../{path.parent.name}/{path.name}:0.5']\n"
    )
    result = mmgen("batch", jobs, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    (sidecar,) = (tmp_path / "out").rglob("styled*.json")
    assert json.loads(sidecar.read_text())["adapters"][0]["weight"] == 0.5


def test_verify_rehashes_registered_adapters_too(adapter_file, tmp_path, monkeypatch, capsys):
    """A registered copy damaged on disk is found by `models verify` (all, or by its name), not only when used."""
    _, path = adapter_file
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(path), "--name", "my-style"]) == 0
    copy = tmp_path / "cache" / "adapters" / "my-style" / "adapter.safetensors"
    capsys.readouterr()
    assert run(["models", "verify", "my-style"]) == 0
    assert capsys.readouterr().out == f"my-style: ok, sha256 {sha256_file(copy)} ({copy})\n"

    data = bytearray(copy.read_bytes())
    data[-5] ^= 0x10
    copy.write_bytes(bytes(data))
    for args in (["models", "verify"], ["models", "verify", "my-style"]):  # every file, or the one named
        assert run(args) == 2
        out, err = capsys.readouterr()
        assert f"my-style: corrupt: expected {sha256_file(path)}, got {sha256_file(copy)}" in out
        assert err.splitlines()[-1].startswith("mmgen: error: 1 adapter fails verification: my-style")
    copy.unlink()
    assert run(["models", "verify", "my-style", "--json"]) == 2
    verdict = json.loads(capsys.readouterr().out)
    assert (verdict["kind"], verdict["verdict"], verdict["path"]) == ("adapter", "missing", str(copy))



def test_a_damaged_adapter_record_is_one_row_saying_so_and_the_rest_still_list(adapter_file, tmp_path, monkeypatch,
                                                                               capsys):
    """An adapter.json cut short must not take `models list`, `verify` or `doctor` down with it, as a damaged
    model.json does not: its row says it is damaged and how to clear it; every other entry is listed and checked."""
    _, path = adapter_file
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(path), "--name", "good"]) == 0
    assert run(["models", "import", str(path), "--name", "myad"]) == 0
    (tmp_path / "cache" / "adapters" / "myad" / "adapter.json").write_text('{"name": "myad", "rank": 4\n')
    capsys.readouterr()

    assert run(["models", "list", "--json"]) == 0
    rows = {row["name"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["myad"]["status"] == "damaged" and "run `mmgen models rm myad`" in rows["myad"]["description"]
    assert rows["good"]["base_sha256"] and rows["demo"]["status"].startswith("bundled")
    assert run(["models", "list"]) == 0
    assert "myad │ damaged: " in capsys.readouterr().out
    assert run(["models", "verify"]) == 2
    out, err = capsys.readouterr()
    assert "myad: damaged: " in out and "good: ok, sha256 " in out and "demo: ok, sha256 " in out
    assert err.splitlines()[-1].startswith("mmgen: error: 1 adapter fails verification: myad")
    assert run(["doctor"]) == 0
    assert "✗ adapter myad: " in capsys.readouterr().out

    assert run(["models", "rm", "myad"]) == 0 and run(["models", "list", "--json"]) == 0
    assert "myad" not in capsys.readouterr().out

def test_doctor_lists_the_registered_adapters_as_models_list_does(adapter_file, tmp_path):
    """doctor's Cache row counted the adapters' bytes, but its Models section named none of them: each has its row
    there (name, base model, size; a damaged one says so) and its --json object, as `models list` gives them."""
    _, path = adapter_file
    env = mmgen_env(tmp_path)
    assert run_here("models", "import", path, "--name", "my-style", env=env).returncode == 0
    listed = run_here("models", "list", "--json", env=env)
    [row] = [row for row in map(json.loads, listed.stdout.splitlines()) if row["kind"] == "adapter"]

    report = run_here("doctor", "--json", env=env)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["adapters"] == [row]
    shown = run_here("doctor", env={**env, "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    models = shown.stdout[shown.stdout.index("Models"):]
    line = next(line for line in models.splitlines() if "my-style" in line)
    cells = [cell.strip() for cell in line.split("│")[1:-1]]
    assert cells[:4] == ["my-style", f"{row['base']} ({row['base_sha256'][:12]}…)", "4", "attention"], line
    assert cells[4].endswith("kB") and cells[5] == f"{row['sha256'][:12]}…", line

    (tmp_path / "cache" / "adapters" / "my-style" / "adapter.json").write_text('{"name": "my-style"\n')
    shown = run_here("doctor", env={**env, "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert "my-style │ damaged: " in shown.stdout and "✗ adapter my-style: " in shown.stdout, shown.stdout


def test_every_adapter_object_says_where_its_weights_stand(adapter_file, tmp_path):
    """README: every `models` --json object has a `status`; a registered adapter's had none (a damaged one's
    did): `cached` in `models list`, `models info` and doctor's `adapters`, and `damaged` still where it is."""
    _, path = adapter_file
    env = mmgen_env(tmp_path)
    assert run_here("models", "import", path, "--name", "my-style", env=env).returncode == 0
    listed = run_here("models", "list", "--json", env=env)
    [row] = [row for row in map(json.loads, listed.stdout.splitlines()) if row["kind"] == "adapter"]
    assert row["status"] == "cached", row
    info = run_here("models", "info", "my-style", "--json", env=env)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["status"] == "cached"
    assert [a["status"] for a in json.loads(run_here("doctor", "--json", env=env).stdout)["adapters"]] == ["cached"]
    (tmp_path / "cache" / "adapters" / "my-style" / "adapter.json").write_text('{"name": "my-style"\n')
    listed = run_here("models", "list", "--json", env=env)
    [row] = [row for row in map(json.loads, listed.stdout.splitlines()) if row["kind"] == "adapter"]
    assert row["status"] == "damaged", row


def test_a_name_is_a_models_or_an_adapters_never_both(adapter_file, tmp_path, monkeypatch, capsys):
    """`models rm NAME` once removed a model and an adapter of one name at once, and `models info` of an adapter
    said "unknown model"."""
    base, path = adapter_file
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(base), "--name", "base"]) == 0
    assert run(["models", "import", str(path), "--name", "my-style"]) == 0
    capsys.readouterr()

    for taken, says in (("base", "'base' is already the name of a cached model"),
                        ("demo", "'demo' is already the name of a model in the registry")):
        assert run(["models", "import", str(path), "--name", taken, "--overwrite"]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"mmgen: error: {says}; an adapter needs a name of its own")
    import mmgen.weights

    def no_load(*args, **kwargs):
        raise AssertionError("the name is refused before the base model loads")

    monkeypatch.setattr(mmgen.weights, "load_model", no_load)
    for args in (["models", "import", str(base), "--name", "my-style"],
                 ["models", "import", str(path), "--name", "my-style", "--merge"]):
        assert run(args) == 2
        assert "'my-style' is already the name of a registered adapter" in capsys.readouterr().err
    with pytest.raises(UsageError, match="'my-style' is already the name of a registered adapter"):
        import_weights(base, "my-style")  # the Python API, as the command
    assert not (tmp_path / "cache" / "models" / "my-style").exists()

    assert run(["models", "info", "my-style", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["kind"], shown["base"], shown["sha256"]) == ("adapter", str(base), sha256_file(path))
    assert run(["models", "rm", "my-style"]) == 0
    assert "removed adapter my-style" in capsys.readouterr().err
    assert ModelCache().record("base") is not None  # the model is untouched
    assert not (tmp_path / "cache" / "adapters" / "my-style").exists()


def test_a_name_of_neither_a_model_nor_an_adapter_is_one_line_naming_the_close_ones_of_both(adapter_file, tmp_path,
                                                                                          mmgen):
    """`models info my-styl` said "unknown model 'my-styl' (see `mmgen models list`)": NAME was looked up as a model,
    and only then as an adapter, so the adapter my-style went unnamed. info, verify and rm look among both."""
    base, path = adapter_file
    assert mmgen("models", "import", base, "--name", "style").returncode == 0
    assert mmgen("models", "import", path, "--name", "my-style").returncode == 0
    for command in ("info", "verify", "rm"):
        done = mmgen("models", command, "mystyle")
        assert (done.returncode, done.stderr) == (
            2, "mmgen: error: unknown model or adapter 'mystyle' (did you mean my-style or style?)\n"), command


def test_a_registry_entry_that_takes_an_adapters_name_leaves_both_usable(adapter_file, tmp_path, monkeypatch, capsys):
    """A registry entry (a newer mmgen, a preset folder) under the name the user gave an adapter: `-m NAME` is the
    model, `--adapter NAME` the adapter, `models list` shows both, and `models rm/info` ask which one is meant."""
    base, path = adapter_file
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(path), "--name", "my-style"]) == 0
    entries = tmp_path / "presets" / "models"
    entries.mkdir(parents=True)
    (entries / "my-style.yaml").write_text(
        f"arch: mm-unet\nweights: {{urls: ['{base.as_uri()}'], sha256: {sha256_file(base)}, format: safetensors}}\n")
    import_weights(base, "my-style")  # the registry's name is the registry's (as `models pull` would fetch it)
    capsys.readouterr()

    assert run(["models", "list"]) == 0
    assert "my-style is both a model and an adapter: -m my-style runs the model" in capsys.readouterr().err
    assert run(["models", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["kind"] for r in rows if r["name"] == "my-style") == ["adapter", "model"]
    assert load_model("my-style").sha256 == ModelCache().record("my-style").sha256
    assert store.resolve("my-style").sha256 == sha256_file(path)

    for command in ("rm", "info", "verify"):
        assert run(["models", command, "my-style"]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line == ("mmgen: error: 'my-style' names both a model (in the registry) and a registered adapter "
                        f"(say which: mmgen models {command} my-style --model, or --adapter)")
    assert run(["models", "info", "my-style", "--adapter", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "adapter"
    assert run(["models", "rm", "my-style", "--adapter", "--forget"]) == 2  # a model's recorded sha256: not ambiguous
    assert "--forget drops a model's recorded sha256; an adapter has none" in capsys.readouterr().err
    assert run(["models", "rm", "my-style", "--adapter"]) == 0
    assert "removed adapter my-style" in capsys.readouterr().err
    assert store.find("my-style") is None and ModelCache().record("my-style") is not None
    assert run(["models", "rm", "my-style"]) == 0  # one of them left: no question
    assert ModelCache().record("my-style") is None


@contextmanager
def read_only(folder: Path):
    """`folder` and all under it unchangeable while inside: its folders' write bits off, or — for root, whom they
    do not stop — a read-only bind mount of it (where mounting is allowed)."""
    if os.geteuid() != 0:
        folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
        for f in folders:
            f.chmod(0o555)
        try:
            yield
        finally:
            for f in folders:
                f.chmod(0o755)
        return
    if subprocess.run(["mount", "--bind", folder, folder], capture_output=True).returncode != 0:
        pytest.skip("running as root where mounting is not allowed: no folder can be made read-only")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", folder], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", folder], check=True)


def test_a_read_only_cache_removes_and_imports_nothing_and_says_which_folder(adapter_file, tmp_path, monkeypatch,
                                                                             capsys):
    base, path = adapter_file
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(path), "--name", "my-style"]) == 0
    assert run(["models", "import", str(base), "--name", "base"]) == 0
    cache = tmp_path / "cache"
    before = sorted(cache.rglob("*"))
    capsys.readouterr()

    with read_only(cache):
        for args, says in (
            (["rm", "my-style"], f"cannot remove adapter 'my-style': the cache folder {cache}/adapters/my-style "
                                 "cannot be changed: "),
            (["rm", "base"], f"cannot remove model 'base': the cache folder {cache}/models/base cannot be changed: "),
            (["import", str(base), "--name", "other"], f"cache folder {cache} cannot be written: "),
            (["import", str(path), "--name", "other"], f"cache folder {cache} cannot be written: "),
        ):
            assert run(["models", *args]) == 2, args
            [line] = capsys.readouterr().err.strip().splitlines()
            assert line.startswith(f"mmgen: error: {says}"), line
    with read_only(cache / "adapters"):  # in a cache that is otherwise writable
        assert run(["models", "import", str(path), "--name", "other"]) == 2
        assert (f"mmgen: error: cache folder {cache}/adapters/other cannot be written (it would be created in "
                f"{cache}/adapters): ") in capsys.readouterr().err

    assert sorted(cache.rglob("*")) == before


def test_a_bare_adapter_name_is_the_registered_one_never_a_file_in_the_current_folder(adapter_file, tmp_path,
                                                                                      monkeypatch):
    """`--adapter my-style` with a stray file `my-style` where the command runs: the registered adapter is used,
    as `-m NAME` is the registry's; the file is `./my-style`, and a bare name that is no adapter's says so."""
    _, path = adapter_file
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    registration.register(path, "my-style")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    (here / "my-style").write_bytes(b"not an adapter")
    (here / "other").write_bytes(path.read_bytes())

    assert store.resolve("my-style").path == store.folder_of("my-style") / store.FILE
    with pytest.raises(UsageError, match=r"my-style: damaged, or not a safetensors file"):
        store.resolve("./my-style")
    assert store.resolve("./other").sha256 == sha256_file(path)
    with pytest.raises(UsageError, match=r"adapter other: no registered adapter of that name; to use the file "
                                         r"other in this folder, give it as \./other"):
        store.resolve("other")


def test_a_weight_that_is_no_number_after_an_adapter_is_said_to_be_the_weight(adapter_file, tmp_path, monkeypatch, mmgen):
    """`--adapter x.safetensors:abc` said `no registered adapter of that name` (`./x.safetensors:abc`: `no such file`):
    the colon was taken as part of a name, though what comes before it is the adapter. A name with a colon that is
    a file as a whole (`a:b.safetensors`) is still that file."""
    _, path = adapter_file
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.safetensors").write_bytes(path.read_bytes())
    for given in ["x.safetensors:abc", "./x.safetensors:abc"]:
        done = mmgen("generate", "--adapter", given, "-o", tmp_path / "out")
        assert done.returncode == 2
        assert done.stderr == (f"mmgen: error: --adapter {given}: weight 'abc' is not a number (FILE:WEIGHT or "
                               "NAME:WEIGHT, e.g. x.safetensors:0.8)\n")
    (tmp_path / "a:b.safetensors").write_bytes(path.read_bytes())
    assert AdapterUse.parse("a:b.safetensors") == AdapterUse("a:b.safetensors")
    assert AdapterUse.parse("./x.safetensors:0.5") == AdapterUse("./x.safetensors", 0.5)
    assert not (tmp_path / "out").exists()
    for key, value in mmgen_env(tmp_path).items():  # a registered name's weight, alike
        monkeypatch.setenv(key, value)
    registration.register(path, "my-style")
    with pytest.raises(UsageError, match=r"^adapter my-style:abc: weight 'abc' is not a number"):
        AdapterUse.parse("my-style:abc")


def test_a_weight_that_is_no_number_after_an_adapter_not_there_is_said_to_be_the_weight(tmp_path, monkeypatch, mmgen):
    """`--adapter x.safetensors:abc` with no x.safetensors here said `no registered adapter of that name (a path ...
    is a file…)`: what comes before the colon is written as an adapter is, and the whole is neither."""
    monkeypatch.chdir(tmp_path)
    for given in ["x.safetensors:abc", "./x.safetensors:abc", "my-style:abc"]:
        done = mmgen("generate", "--adapter", given, "-o", tmp_path / "out")
        assert done.returncode == 2
        assert done.stderr == (f"mmgen: error: --adapter {given}: weight 'abc' is not a number (FILE:WEIGHT or "
                               "NAME:WEIGHT, e.g. x.safetensors:0.8)\n")
    assert AdapterUse.parse("a:b.safetensors") == AdapterUse("a:b.safetensors")  # a file's name, as a whole
    assert AdapterUse.parse("dir/a:b/c.safetensors") == AdapterUse("dir/a:b/c.safetensors")


def _rewritten(path: Path, target: Path, change, **metadata: str) -> Path:
    """A copy of the adapter `path` with its tensors changed by `change` (a dict → a dict) and `metadata` set, its
    digest made again: a file that is consistent, only not an adapter that fits."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from mmgen.adapters.file import tensors_digest

    with safe_open(str(path), framework="pt") as f:
        meta = {**f.metadata(), **metadata}
    tensors = change(load_file(str(path)))
    save_file(tensors, str(target), metadata={**meta, "tensors_sha256": tensors_digest(tensors)})
    return target


def _first_layer(tensors: dict) -> str:
    return min(tensors).rsplit(".", 1)[0]


def _set(tensors: dict, part: str, value) -> dict:
    key = f"{_first_layer(tensors)}.{part}"
    return {**tensors, key: value(tensors[key])}


@pytest.mark.parametrize("change, metadata, says", [
    (lambda t: _set(t, "lora_B", lambda b: torch.randn(b.shape[0], 7)), {}, "are not (rank, fan_in) and (fan_out, rank)"),
    (lambda t: {k: v for k, v in t.items() if not k.endswith(".lora_B")}, {}, "has lora_A but no lora_B"),
    (lambda t: {**t, "lora_A": t[min(t)].clone()}, {}, "tensor 'lora_A' is no layer's lora_A or lora_B"),
    (lambda t: _set(t, "lora_A", lambda a: a.fill_(float("nan"))), {}, "holds NaN or Inf values"),
    (lambda t: _set(t, "lora_A", lambda a: a.fill_(3e38)), {}, "would move a weight by up to"),
    (lambda t: t, {"alpha": "1e300"}, "would move a weight by up to"),
    (lambda t: t, {"rank": "9" * 5000}, "damaged metadata (rank: a number too long)"),
    (lambda t: _set(t, "lora_A", lambda a: torch.zeros(a.shape[0], a.shape[1] + 1)), {}, "does not fit"),
], ids=["rank-mismatch", "only-A", "no-layer", "nan", "huge", "alpha-huge", "rank-too-long", "wrong-fan-in"])
def test_an_adapter_whose_layers_are_not_an_adapter_s_is_refused_at_import_and_at_use(adapter_file, tmp_path, mmgen,
                                                                                     change, metadata, says):
    """A rank mismatch or a missing lora_B failed as a RuntimeError or KeyError (exit 1), NaN or huge values as a
    NaN video after sampling, and `models import` registered them all: each is one line, exit 2, naming the file
    and (but for the metadata) the layer, before anything is written or registered."""
    base, path = adapter_file
    bad = _rewritten(path, tmp_path / "bad.safetensors", change, **metadata)
    imported = mmgen("models", "import", bad, "--name", "bad")
    assert imported.returncode == 2 and says in imported.stderr and "bad.safetensors" in imported.stderr, imported
    assert imported.stderr.count("\n") == 1 and not (tmp_path / "cache" / "adapters" / "bad").exists()
    used = mmgen("generate", "-m", base, "--adapter", bad, "--steps", "1", "-o", tmp_path / "out")
    assert used.returncode == 2 and says in used.stderr and used.stderr.count("\n") == 1, used
    assert not (tmp_path / "out").exists()


def test_a_weight_given_to_import_is_said_to_be_given_at_use(adapter_file, mmgen):
    """`models import x.safetensors:0.5 --merge` said `no such file`, true but no help: import takes no weight (a
    merged model has the adapter as trained). Where the file without the `:WEIGHT` is there, the line says so and
    how a weight is given: where the adapter is used."""
    base, path = adapter_file
    merged = mmgen("models", "import", f"{path}:0.5", "--name", "styled", "--merge")
    assert merged.returncode == 2 and merged.stderr == (
        f"mmgen: error: {path}:0.5: no such file; {path} is, and an import takes no weight: an adapter's weight is "
        f"given where it is used (import {path} without --merge, then use it with --adapter styled:0.5; a merged "
        "model holds the adapter at weight 1)\n")
    registered = mmgen("models", "import", f"{path}:0.5", "--name", "styled")
    assert registered.returncode == 2 and registered.stderr.endswith(
        f"given where it is used (import {path}, then use it with --adapter styled:0.5)\n")
    model = mmgen("models", "import", f"{base}:0.5", "--name", "mine")
    assert model.returncode == 2 and model.stderr == (
        f"mmgen: error: {base}:0.5: no such file; {base} is, and an import takes no weight (import {base})\n")
    listed = mmgen("models", "list")
    assert listed.returncode == 0 and "styled" not in listed.stdout and "mine" not in listed.stdout


@pytest.mark.parametrize("change, metadata, says", [
    (lambda t: t, {"rank": "many"}, "damaged metadata (rank: 'many' is not a number)"),
    (lambda t: _set(t, "lora_A", lambda a: a.fill_(float("nan"))), {}, "damaged: layer "),
    ("digest", {}, "its tensors do not match the digest it was written with "),
], ids=["metadata", "layers", "digest"])
def test_a_registered_adapter_refused_as_it_is_read_is_named_as_typed_with_its_file_beside(
        adapter_file, tmp_path, mmgen, change, metadata, says):
    """`--adapter style`, its registered copy damaged while its record still vouches for it (an edited record, or a
    copy an older mmgen took in): the line named only the copy in the cache (`adapter /…/adapters/style/adapter.safetensors:
    damaged metadata …`), not what the user typed. It names `adapter style` first, the file as the detail, as a cached
    model's damaged file is said."""
    base, path = adapter_file
    assert mmgen("models", "import", path, "--name", "style").returncode == 0
    file = tmp_path / "cache" / "adapters" / "style" / "adapter.safetensors"
    if change == "digest":  # its tensors changed, its metadata (the digest in it) as it was written
        from safetensors.torch import load_file, save_file

        save_file(_set(load_file(str(path)), "lora_A", lambda a: a * 2), str(file), metadata=_metadata(path))
    else:
        _rewritten(path, file, change, **metadata)
    record = file.with_name("adapter.json")
    record.write_text(json.dumps({**json.loads(record.read_text()), "sha256": sha256_file(file)}))
    done = mmgen("generate", "-m", base, "--adapter", "style", "--steps", "1", "-o", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"mmgen: error: adapter style (its registered file {file}): {says}"), done.stderr
    assert not (tmp_path / "out").exists()


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def registered_and_another(adapter_file, tmp_path, monkeypatch, fill: float):
    """The adapter file registered as my-style in this test's cache, and another adapter on the same base (its
    values all `fill`) to replace it with: (the registered file, the other)."""
    base, path = adapter_file
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    model = load_model(base).model
    attach(model, LoraSpec(4, 4.0, "attention"))
    with torch.no_grad():
        for _, p in adapter_parameters(model):
            p.fill_(fill)
    other = tmp_path / "other.safetensors"
    save_adapter(other, model, LoraSpec(4, 4.0, "attention"), read_adapter(path).base)
    registration.register(path, "my-style")
    return path, other


def test_an_adapter_replaced_with_its_record_as_it_is_read_is_one_whole_adapter(adapter_file, tmp_path, monkeypatch):
    """`--adapter NAME` read the record, hashed the file, then read the file again to load it: a `models import
    --overwrite` of NAME in another process between those reads was said as a damaged cache (`… has sha256 B…,
    registered as A…`), or loaded adapter B where A's sha256 was checked. The file is read once — what is hashed
    is what is loaded — and a record and file replaced together are looked at once more, not called damage."""
    import mmgen.adapters.file as adapter_file_module

    path, other = registered_and_another(adapter_file, tmp_path, monkeypatch, 0.01)

    def swapping_after(module, name, to):  # the first call of module.name replaces my-style with `to`, as an import
        real, swapped = getattr(module, name), []

        def hook(*args, **kwargs):
            found = real(*args, **kwargs)
            if not swapped:
                swapped.append(to)  # first: the registration's own reads pass through
                registration.register(to, "my-style", overwrite=True)
            return found

        monkeypatch.setattr(module, name, hook)

    def whole(adapter, file):  # one adapter, all of it the file's, with the file's own sha256
        expected = read_adapter(file)
        assert adapter.sha256 == sha256_file(file) == expected.sha256
        assert adapter.tensors.keys() == expected.tensors.keys()
        assert all(torch.equal(adapter.tensors[k], expected.tensors[k]) for k in expected.tensors)

    swapping_after(store, "read_record", other)  # between the record's read and the file's
    whole(store.resolve("my-style"), other)  # the new pair, no "has sha256 …, registered as …"
    monkeypatch.undo()
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    swapping_after(adapter_file_module, "why_not_a_file", path)  # after the hash was checked: what was checked loads
    whole(store.resolve("my-style"), other)
    whole(store.resolve("my-style"), path)  # and the next use, the file now there


def test_verify_of_an_adapter_replaced_with_its_record_as_it_is_read_is_no_damage(adapter_file, tmp_path,
                                                                                   monkeypatch):
    """`models verify NAME` of an adapter read its record and hashed its file separately: a `models import
    --overwrite` between the reads was said as `corrupt`. It looks as `--adapter NAME` does (kept_states.looked_again)."""
    path, other = registered_and_another(adapter_file, tmp_path, monkeypatch, 0.02)
    real, calls = store.read_record, []

    def hook(*args, **kwargs):  # the record read for the verdict (after the one listing it), then an import over it
        found = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            registration.register(other, "my-style", overwrite=True)
        return found

    monkeypatch.setattr(store, "read_record", hook)
    (verdict,) = store.verify("my-style")
    assert (verdict.ok, verdict.actual) == (True, sha256_file(other)) and len(calls) >= 2
