"""`mmgen models` as a creator uses it: get the Landscape model by hand and generate with it, see what every
model's status is, re-hash and remove cached weights, and find the bundled demo from an installed wheel."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import av
import pytest
import torch
import yaml
from cli_here import run_here
from http_server import SOCKETS_NONE, offline_mmgen_command
from mmgen_cli import REPO, mmgen_env, run_mmgen
from rich.console import Console
from tiny_model import TINY_FIELDS, TINY_SR_FIELDS, save_tiny_model, tiny_mmunet

import mmgen.cli.models
from mmgen.cli import run
from mmgen.files import sha256_file
from mmgen.models import build_model
from mmgen.models.config import SRUNetConfig
from mmgen.weights import ModelCache, checkpoint, load_model, load_registry
from mmgen.weights.cache import FileStamp

SHIPPED = REPO / "presets" / "models"
DEMO_ASSET = REPO / "mmgen" / "assets" / "demo.safetensors"


def stand_in_entry(tmp_path: Path, name: str, config: dict, **changes) -> None:
    """The shipped registry entry `name` with a tiny architecture config, as a user entry in $MMGEN_PRESETS
    (which replaces the shipped one). Everything else — format pt, upsampler, sampling, sources — stays
    as shipped. A stand-in because the released configs (134 M and 311 M parameters) take minutes per
    sample on a CPU; the code path from import to generate is the same."""
    entry = yaml.safe_load((SHIPPED / f"{name}.yaml").read_text(encoding="utf-8"))
    entry["config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    del entry["weights"]["parameters"]  # the released count; the tiny stand-in has far fewer
    entry.update(changes)
    folder = tmp_path / "presets" / "models"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(entry, allow_unicode=True), encoding="utf-8")


def official_style_checkpoint(path: Path, model: torch.nn.Module) -> Path:
    """What the official release is: torch.save of a plain state dict."""
    torch.save(model.state_dict(), path)
    return path


def test_landscape_downloaded_by_hand_is_imported_and_generates_offline(tmp_path, monkeypatch, capsys):
    stand_in_entry(tmp_path, "landscape", TINY_FIELDS)
    # The official SR sampling is DDIM 25; 2 steps keep the test short.
    stand_in_entry(tmp_path, "landscape-sr", TINY_SR_FIELDS, sampling={"sampler": "ddim", "steps": 2})
    landscape = official_style_checkpoint(tmp_path / "Landscape.pt", tiny_mmunet(seed=1))
    landscape_sr = official_style_checkpoint(
        tmp_path / "Landscape_SR.pt", build_model("sr-unet", SRUNetConfig(**TINY_SR_FIELDS))
    )
    env = mmgen_env(tmp_path, MMGEN_OFFLINE="1")
    for key, value in env.items():  # the imports in this process (for speed); the offline generate in its own
        monkeypatch.setenv(key, value)

    assert run(["models", "import", str(landscape), "--name", "landscape"]) == 0
    said = capsys.readouterr().err
    assert "imported" in said and "'landscape' (mm-unet, float32" in said
    assert run(["models", "import", str(landscape_sr), "--name", "landscape-sr", "--dtype", "fp16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"] == "float16"

    out = tmp_path / "out"
    generated = subprocess.run(
        offline_mmgen_command(
            "generate", "-m", "landscape", "--steps", "1", "--seed", "5", "-o", out, "--no-previews", "--json"
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert generated.returncode == 0, generated.stderr
    assert generated.stderr.splitlines()[-1] == SOCKETS_NONE
    clip = json.loads(generated.stdout)
    record = json.loads((tmp_path / "cache" / "models" / "landscape" / "model.json").read_text())
    assert (clip["model"], clip["model_sha256"]) == ("landscape", record["sha256"])
    assert (clip["upscaled"], clip["upsampler"]) == (True, "landscape-sr")  # the entry's upsampler, found
    with av.open(str(out / "clip_0000.mp4")) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 16 and (frames[0].width, frames[0].height) == (32, 32)  # upscaled 16 → 32


def test_models_list_shows_architecture_size_and_status(tmp_path, monkeypatch):
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    presets = tmp_path / "presets" / "models"
    presets.mkdir(parents=True)
    (presets / "hosted.yaml").write_text(
        "base: demo\nweights: {urls: [https://example.org/hosted.safetensors], sha256: " + "ab" * 32 + "}\n"
    )
    assert run(["models", "import", str(save_tiny_model(tmp_path / "tiny.safetensors")), "-n", "mine"]) == 0

    result = run_here("models", "list", env=mmgen_env(tmp_path))  # piped: every cell whole, on one line

    assert result.returncode == 0, result.stderr
    assert table_rows(result.stderr) == []  # the table is the result: on stdout, for `| grep`
    rows = {cells[0]: cells[1:] for cells in table_rows(result.stdout)}
    size = ModelCache().record("mine").size
    assert rows["mine"][:3] == ["mm-unet", f"{size / 1e6:.1f} MB", "cached"]
    assert rows["hosted"][0] == "mm-unet" and rows["hosted"][2] == "downloadable"
    # fp32 size of the released config; no sha256 yet (none is published: recorded at the first pull)
    assert rows["landscape"][:4] == ["mm-unet", "~534.7 MB", "downloadable", ""]
    assert rows["landscape"][4] == "Landscape.pt from https://drive.google.com/drive/folders/1Mno4A3BUXELAdX4m650CJ1VfuMVlkz5p"
    assert rows["landscape-sr"][:4] == ["sr-unet", "~1.2 GB", "downloadable", ""]
    # the sha256 of the file mmgen loads (what verify, sidecars and adapters name), the imported file's below it
    lines = table_rows(result.stdout)
    below_mine = lines[[cells[0] for cells in lines].index("mine") + 1]
    assert rows["mine"][3] == ModelCache().record("mine").sha256[:12] + "…"
    assert below_mine[0] == "" and below_mine[4] == f"source {ModelCache().record('mine').source_sha256[:12]}…"
    assert rows["demo"][2] == ("bundled" if DEMO_ASSET.is_file() else "bundled (missing)")


def test_models_list_fits_a_narrow_terminal_without_breaking_names(tmp_path, monkeypatch, capsys):
    """An 80-column terminal gets the columns that fit, each name and status whole, and where the rest is."""
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    terminal = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    monkeypatch.setattr(mmgen.cli.models, "table_console", lambda stderr: terminal)

    assert run(["models", "list"]) == 0

    lines = terminal.file.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = {cells[0]: cells[1:4] for cells in table_rows("\n".join(lines)) if cells[0]}
    assert rows["landscape-sr"] == ["sr-unet", "~1.2 GB", "downloadable"]
    assert rows["demo"][:2] == ["mm-unet", "3.2 MB"]
    assert "`mmgen models info NAME`" in capsys.readouterr().err


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a rich table: lines drawn with │ between cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def test_verify_rehashes_and_rm_removes(tmp_path, monkeypatch, capsys):
    env = mmgen_env(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(save_tiny_model(tmp_path / "tiny.safetensors")), "-n", "mine"]) == 0
    assert run(["models", "verify", "mine"]) == 0
    assert "mine: ok" in capsys.readouterr().out
    record = ModelCache().record("mine")
    weights = ModelCache().weights_path("mine")

    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")  # one byte changed on disk
    verified = run_here("models", "verify", env=env)

    assert verified.returncode == 2
    assert f"mine: corrupt: expected {record.sha256}, got " in verified.stdout
    assert verified.stderr.splitlines()[-1].startswith("mmgen: error: 1 model fails verification: mine")

    assert run(["models", "info", "mine", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["status"], info["cached"]["sha256"], info["path"]) == ("cached", record.sha256, str(weights))

    assert run(["models", "rm", "mine"]) == 0
    assert "removed mine" in capsys.readouterr().err
    assert not weights.exists() and ModelCache().record("mine") is None
    for command in ("rm", "verify", "info"):  # gone: a name of nothing now
        assert run(["models", command, "mine"]) == 2
        assert "unknown model or adapter 'mine'" in capsys.readouterr().err


def test_every_models_json_object_names_the_kind_of_entry(tmp_path):
    """`models list` and `verify` said `kind`, an adapter's `info` too, but a model's `info`, `pull` and `import`
    did not: a script reading several had to guess. Each names it, beside the fields it had."""
    env = mmgen_env(tmp_path)
    said = {}
    for args in (("models", "import", save_tiny_model(tmp_path / "tiny.safetensors"), "-n", "mine"),
                 ("models", "info", "mine"), ("models", "pull", "demo")):
        done = run_here(*args, "--json", env=env)
        assert done.returncode == 0, (args, done.stderr)
        said[args[1]] = [(row["name"], row["kind"]) for row in map(json.loads, done.stdout.splitlines())]
    assert said == {"import": [("mine", "model")], "info": [("mine", "model")], "pull": [("demo", "model")]}


def test_a_damaged_row_of_verify_says_its_path_and_damaged_once(tmp_path):
    """A cache folder that is a symlink (models/ itself, a model's folder, an adapter's) is one verdict line saying
    `damaged` once, naming the link once as its path: it read `models/: damaged: CACHE/models: damaged: a symlink …
    (CACHE/models)`."""
    env = mmgen_env(tmp_path)
    cache, elsewhere = Path(env["MMGEN_CACHE"]), tmp_path / "elsewhere"
    (elsewhere / "one").mkdir(parents=True)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "models").symlink_to(elsewhere)
    verified = run_here("models", "verify", "--model", env=env)
    assert verified.returncode == 2
    [line] = [line for line in verified.stdout.splitlines() if line.startswith("models/")]
    assert line == (f"models/: damaged: a symlink (to {elsewhere}), not a folder of mmgen's "
                    f"(replace the link {cache / 'models'} with a folder) ({cache / 'models'})")
    (cache / "models").unlink()
    for kind in ("models", "adapters"):
        (cache / kind).mkdir()
        (cache / kind / "linked").symlink_to(elsewhere / "one")
        verified = run_here("models", "verify", f"--{kind[:-1]}", env=env)
        assert verified.returncode == 2
        assert verified.stdout.splitlines()[-1] + "\n" == (f"linked: damaged: a symlink (to {elsewhere / 'one'}), not a folder of mmgen's "
                                   f"(remove the link: `mmgen models rm linked`) ({cache / kind / 'linked'})\n")


def test_verify_says_an_invalid_registry_entry_is_damaged_as_list_and_doctor_do(tmp_path):
    """A preset file an older version took (`steps: 0_25`, octal 21 to it) and today's refuses was left out of
    `models verify` (exit 0), while `models list` and `doctor` said it was damaged: it is a damaged verdict, with
    its reason, failing the verification as a damaged model does (by name too)."""
    env = mmgen_env(tmp_path)
    entry = yaml.safe_load((SHIPPED / "demo.yaml").read_text(encoding="utf-8"))
    entry["sampling"] = {**entry.get("sampling", {}), "steps": "STEPS"}
    preset = tmp_path / "presets" / "models" / "mydemo.yaml"
    preset.parent.mkdir(parents=True)
    preset.write_text(yaml.safe_dump(entry).replace("STEPS", "0_25"), encoding="utf-8")
    for args in (("models", "verify"), ("models", "verify", "mydemo")):
        verified = run_here(*args, env=env)
        assert verified.returncode == 2, verified.stderr
        [line] = [line for line in verified.stdout.splitlines() if line.startswith("mydemo: ")]
        assert line.startswith("mydemo: damaged: ") and "0_25: a leading zero is ambiguous" in line, line
        assert line.endswith(f"({preset})")
        assert verified.stderr.startswith("mmgen: error: 1 model fails verification: mydemo"), verified.stderr


def test_a_damaged_cache_record_is_one_row_saying_so_and_the_rest_still_list(tmp_path, monkeypatch, capsys):
    """One model.json cut short must not take `models list`, `verify` or `doctor` down with it: that model's row
    says it is damaged and how to clear it; every other model is listed (and verified) as before."""
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(save_tiny_model(tmp_path / "tiny.safetensors")), "-n", "mine"]) == 0
    ModelCache().record_path("broken").parent.mkdir(parents=True)
    ModelCache().record_path("broken").write_text('{"name": "bro')
    capsys.readouterr()

    assert run(["models", "list", "--json"]) == 0
    rows = {row["name"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["broken"]["status"] == "damaged" and "run `mmgen models rm broken`" in rows["broken"]["description"]
    assert rows["mine"]["status"] == "cached" and rows["demo"]["status"].startswith("bundled")
    assert run(["models", "verify", "--model"]) == 2
    said = capsys.readouterr().out  # the verdicts: stdout
    assert "broken: damaged: " in said and "mine: ok, sha256 " in said
    assert run(["doctor"]) == 0
    assert "✗ broken: " in capsys.readouterr().out

    assert run(["models", "rm", "broken"]) == 0 and run(["models", "list", "--json"]) == 0
    assert "broken" not in capsys.readouterr().out


def test_rm_takes_model_names_only_and_never_deletes_outside_the_cache(tmp_path, monkeypatch, capsys):
    """`models rm ../../my-run` (or an absolute path) once deleted the model files of any folder it named."""
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    run_folder = tmp_path / "my-run"
    run_folder.mkdir()
    save_tiny_model(run_folder / "model.safetensors")
    (run_folder / "model.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in run_folder.iterdir()}

    for name in ("../../my-run", str(run_folder), "../models/x"):
        assert run(["models", "rm", name]) == 2
        assert f"invalid model name {name!r}" in capsys.readouterr().err

    assert {p.name: p.read_bytes() for p in run_folder.iterdir()} == before


def test_a_name_too_long_for_a_folder_is_one_line_exit_2_in_every_command(tmp_path, monkeypatch, capsys):
    """A name becomes a folder in the cache: 300 bytes was an OSError (File name too long, exit 1) everywhere."""
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    weights = save_tiny_model(tmp_path / "tiny.safetensors")
    long = "x" * 300
    for args in (["models", "import", weights, "--name", long], ["models", "rm", long], ["models", "info", long],
                 ["models", "verify", long], ["models", "pull", long], ["generate", "-m", long],
                 ["generate", "--adapter", long], ["generate", "--adapter", f"{long}:0.5"]):
        assert run([str(a) for a in args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("mmgen: error: ") and "name too long (300 bytes, at most 200)" in err, (args, err)
    assert not (tmp_path / "cache" / "models").exists() or not any((tmp_path / "cache" / "models").iterdir())

    assert run(["models", "import", str(weights), "--name", "x" * 200]) == 0  # the longest name there may be
    assert (ModelCache().weights_path("x" * 200)).is_file()


def test_pull_says_how_to_get_a_model_that_needs_import(tmp_path, monkeypatch, capsys):
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    presets = tmp_path / "presets" / "models"
    presets.mkdir(parents=True)
    (presets / "private.yaml").write_text("base: landscape\nweights: {format: pt}\nsource: the lab's share\n")

    assert run(["models", "pull", "private"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "get the lab's share, then run `mmgen models import FILE --name private`" in line


def test_an_installed_wheel_finds_its_presets_and_the_bundled_demo(tmp_path, monkeypatch):
    hatchling = pytest.importorskip("hatchling.build")
    source = tmp_path / "source"  # what a source distribution holds
    source.mkdir()
    for file in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / file, source / file)
    for folder in ("presets", "mmgen"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    assets = source / "mmgen" / "assets"
    if not (assets / "demo.safetensors").is_file():  # before the demo is trained: a tiny stand-in
        assets.mkdir(exist_ok=True)
        save_tiny_model(assets / "demo.safetensors")
    monkeypatch.chdir(source)
    wheel = tmp_path / "dist" / hatchling.build_wheel(str(tmp_path / "dist"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip does with a pure-Python wheel
    assert (site / "mmgen" / "py.typed").is_file()  # type checkers read the installed package's hints (PEP 561)
    [license_file] = site.glob("mmgen-*.dist-info/licenses/LICENSE")  # the MIT text ships with the wheel
    assert license_file.read_bytes() == (REPO / "LICENSE").read_bytes()
    monkeypatch.chdir(tmp_path)  # nowhere near a source checkout
    env = {**mmgen_env(tmp_path), "PYTHONPATH": str(site)}

    info = run_mmgen("models", "info", "demo", "--json", env=env)

    assert info.returncode == 0, info.stderr
    demo = json.loads(info.stdout)
    assert (demo["status"], demo["path"]) == ("bundled", str(site / "mmgen" / "assets" / "demo.safetensors"))
    assert demo["registry_file"] == str(site / "mmgen" / "presets" / "models" / "demo.yaml")

    asset, entry_file = Path(demo["path"]), Path(demo["registry_file"])
    entry = yaml.safe_load(entry_file.read_text(encoding="utf-8"))
    entry["weights"]["sha256"] = good = hashlib.sha256(asset.read_bytes()).hexdigest()
    entry_file.write_text(yaml.safe_dump(entry, allow_unicode=True), encoding="utf-8")
    asset.write_bytes(asset.read_bytes()[:-1] + b"\x01")  # a damaged install ...
    damaged = run_mmgen("generate", "-m", "demo", "-o", tmp_path / "out", env=env)

    assert damaged.returncode == 2
    [line] = damaged.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"mmgen: error: demo: the bundled weights file {asset} is damaged: expected sha256 {good}")

    asset.unlink()  # ... and one without the file
    missing = run_mmgen("generate", "-m", "demo", "-o", tmp_path / "out", env=env)

    assert missing.returncode == 2
    [line] = missing.stderr.strip().splitlines()
    assert line.startswith(f"mmgen: error: demo: the bundled weights file {asset} is missing (reinstall mmgen")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not DEMO_ASSET.is_file(), reason="the demo model has not been trained into mmgen/assets yet")
def test_the_shipped_demo_model_verifies_against_its_registered_sha256(tmp_path, monkeypatch, capsys):
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert load_registry().get("demo").weights.sha256 is not None, "add the asset's sha256 to demo.yaml"

    assert run(["models", "verify", "demo"]) == 0
    assert capsys.readouterr().out.startswith(f"demo: ok, sha256 {sha256_file(DEMO_ASSET)} ({DEMO_ASSET})")


def test_a_cached_file_is_hashed_again_only_when_its_stamp_moved(tmp_path, monkeypatch, capsys):
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(save_tiny_model(tmp_path / "tiny.safetensors")), "-n", "mine"]) == 0
    cache = ModelCache()
    weights, record = cache.weights_path("mine"), cache.record("mine")
    assert record.stamp == FileStamp.of(weights)  # recorded when it was written

    def no_hashing(path):
        raise AssertionError(f"{path} was hashed although its stamp did not move")

    monkeypatch.setattr(checkpoint, "sha256_file", no_hashing)
    assert load_model("mine").sha256 == record.sha256  # size and stamp agree: no full read
    monkeypatch.undo()
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)

    os.utime(weights, ns=(record.stamp.mtime_ns, record.stamp.mtime_ns + 10**9))  # same bytes, touched
    assert load_model("mine").sha256 == record.sha256
    assert cache.record("mine").stamp == FileStamp.of(weights)  # hashed once, stamp renewed

    weights.write_bytes(weights.read_bytes()[:-10])  # truncated: the size alone tells
    result = run_here("generate", "-m", "mine", "--steps", "1", "-o", tmp_path / "out", env=mmgen_env(tmp_path))

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"mine: the cached weights file {weights} has changed on disk" in line
    assert "`mmgen models import FILE --name mine --overwrite`" in line


@pytest.mark.parametrize("width", [12, 30, 60])
def test_models_list_on_a_terminal_too_narrow_for_its_table_lists_a_model_a_line(tmp_path, monkeypatch, capsys, width):
    """Rich squeezed the table into any width: at 30 columns every cell cut to 1-3 characters, at 12 an empty
    frame. Below the table's narrowest readable drawing, each model is a line of its own, whole."""
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    terminal = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    monkeypatch.setattr(mmgen.cli.models, "table_console", lambda stderr: terminal)

    assert run(["models", "list"]) == 0

    lines = terminal.file.getvalue().splitlines()
    assert lines[0] == "mmgen models:" and not any("┃" in line or "…" in line for line in lines)
    assert any(line.startswith("landscape-sr: sr-unet · ~1.2 GB · downloadable — Official") for line in lines)
    demo = next(line for line in lines if line.startswith("demo: "))
    assert demo.startswith("demo: mm-unet · 3.2 MB · ") and demo.endswith("works offline.")


@pytest.mark.parametrize("when", ["_checked_record", "_instantiate"])
def test_a_model_removed_while_generate_reads_it_is_one_line_exit_1(tmp_path, monkeypatch, when):
    """`models rm demo-copy` while `generate -m demo-copy` loaded it: `mmgen: error: FileNotFoundError: No such file
    or directory: …/model.safetensors (run with --debug for the traceback)`."""
    from mmgen.weights import load

    env = mmgen_env(tmp_path)
    imported = run_here("models", "import", save_tiny_model(tmp_path / "tiny.safetensors"), "-n", "mine", env=env)
    assert imported.returncode == 0, imported.stderr
    read = getattr(load, when)

    def removed_first(*args, **kwargs):  # `models rm mine` in another process, just before this read
        shutil.rmtree(tmp_path / "cache" / "models" / "mine")
        return read(*args, **kwargs)

    monkeypatch.setattr(load, when, removed_first)
    out = tmp_path / "out"
    done = run_here("generate", "-m", "mine", "-n", "1", "--steps", "1", "-o", out, env=env)

    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == "mmgen: error: model mine was removed while in use (models rm?)"
    assert not out.exists() or not any(out.iterdir())


def test_removing_the_bundled_demo_says_it_ships_with_mmgen(tmp_path: Path):
    """`models rm demo` said `demo: nothing in the cache (…/models/demo)`, as if it had never been pulled."""
    done = run_here("models", "rm", "demo", env=mmgen_env(tmp_path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "demo is bundled with mmgen: its weights are part of the package (" in done.stderr
    assert "and cannot be removed" in done.stderr
    assert (REPO / "mmgen" / "assets" / "demo.safetensors").is_file()


def test_models_list_reads_records_and_imports_no_torch(tmp_path: Path):
    """`models list` with 30 models and 60 adapters took 4 s, nearly all of it importing torch: for the paper's
    models' size (a model built on the meta device, to count its parameters) and with the modules a pull and an
    adapter's loading use. Their registered parameter count gives the size, and those modules load where used."""
    script = ("import sys; from mmgen.cli import run; code = run(['models', 'list', '--json']); "
              "print(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], env=mmgen_env(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.splitlines()[-1] == "0 False", done.stderr
    rows = {row["name"]: row for row in map(json.loads, done.stdout.splitlines()[:-1])}
    assert rows["landscape"]["size"] == 4 * load_registry().entries["landscape"].weights.parameters
    assert rows["landscape"]["size_estimated"] is True


def test_a_registered_parameter_count_is_what_the_architecture_builds():
    """The size `models list` gives a model not downloaded is 4 bytes × its registered parameter count: the count
    its config builds."""
    for entry in load_registry().entries.values():
        if entry.weights.parameters is not None and entry.config is not None:
            built = build_model(entry.arch, entry.config, device="meta")
            assert sum(p.numel() for p in built.parameters()) == entry.weights.parameters, entry


def test_a_checkpoint_downloaded_by_hand_given_to_m_says_how_to_import_it(tmp_path, monkeypatch):
    """`-m Landscape.pt`, the file here, said `unknown model 'Landscape.pt' (did you mean landscape?)` — and `-m
    landscape` then started a download; `-m pt/w.pt` said it had no architecture config, and nothing about import."""
    monkeypatch.chdir(tmp_path)
    torch.save({"weight": torch.zeros(2)}, tmp_path / "Landscape.pt")
    (tmp_path / "pt").mkdir()
    torch.save({"weight": torch.zeros(2)}, tmp_path / "pt" / "w.pt")
    env = mmgen_env(tmp_path)

    done = run_here("generate", "-m", "Landscape.pt", "-o", "out", env=env)
    assert done.returncode == 2
    assert done.stderr == ("mmgen: error: unknown model 'Landscape.pt' (Landscape.pt is a file here: import it with "
                           "`mmgen models import Landscape.pt --name landscape`, then use -m landscape)\n")

    for command in (["generate", "-m"], ["finetune", ".", "-o", "run", "--from"]):
        done = run_here(*command, "pt/w.pt", env=env)
        assert done.returncode == 2
        line = done.stderr.removeprefix("mmgen: error: ")
        assert line.endswith("pt/w.pt: no architecture config in its metadata and no sidecar w.json (to use a "
                             "checkpoint mmgen did not write, such as an official .pt, import it: `mmgen models import "
                             f"{line.split(': ')[0]} --name NAME`, adding --arch mm-unet or sr-unet for a model the "
                             "registry does not know; then give NAME)\n"), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Landscape.pt", "cache", "pt"]


def test_models_info_says_no_python_none_and_its_json_is_data(tmp_path):
    """`models info demo` printed Python's `base: None` and `upsampler: None`; its --json said the weights' size
    null (`models list --json` knows it: the bundled file's) and `config` as the prose "(from the weights file)". A
    field with nothing to say is left out of the lines; in --json a config the weights file holds is null and the
    size is `models list`'s."""
    env = mmgen_env(tmp_path)
    shown = run_here("models", "info", "demo", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "None" not in shown.stdout
    assert "        config: (from the weights file)\n" in shown.stdout and "upsampler:" not in shown.stdout
    info = json.loads(run_here("models", "info", "demo", "--json", env=env).stdout)
    listed = [json.loads(line) for line in run_here("models", "list", "--json", env=env).stdout.splitlines()]
    assert info["config"] is None and info["base"] is None and info["upsampler"] is None
    assert info["weights"]["size"] == next(row["size"] for row in listed if row["name"] == "demo") > 0
    landscape = json.loads(run_here("models", "info", "landscape", "--json", env=env).stdout)
    assert landscape["config"]["model_channels"] == 128 and landscape["weights"]["size"] is None  # not estimated


def test_the_table_piped_is_a_row_a_line_and_no_line_padded_with_spaces(tmp_path):
    """Piped, the title `mmgen models` was padded with ~240 spaces to the table's width. Each row stays one line, as
    wide as it needs (`mmgen models list | grep landscape` gets the row whole, its URL too)."""
    done = run_here("models", "list", env=mmgen_env(tmp_path))
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines[0] == "mmgen models", done.stdout
    assert not [line for line in lines if line.endswith(" ")], done.stdout
    landscape = [line for line in lines if "│ landscape " in line]
    assert len(landscape) == 1 and "https://drive.google.com/drive/folders/" in landscape[0], done.stdout


def test_verify_of_a_model_replaced_with_its_record_as_it_is_read_is_no_damage(tmp_path, monkeypatch, capsys):
    """`models verify NAME` read the record and hashed the file separately: a `models import --overwrite` of NAME in
    another process between those reads was said as `corrupt: expected A, got B`. A record and file replaced
    together are looked at once more (kept_states.looked_again, as `--adapter NAME` does), and the new pair is ok."""
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(save_tiny_model(tmp_path / "tiny.safetensors")), "-n", "mine"]) == 0
    other = save_tiny_model(tmp_path / "other.safetensors", seed=1)
    real, swapped = ModelCache.record, []

    def record(self, name):  # the first record read by verify is followed by an import over it, as in another process
        found = real(self, name)
        if not swapped:
            swapped.append(name)
            assert run(["models", "import", str(other), "-n", "mine", "--overwrite"]) == 0
        return found

    capsys.readouterr()
    monkeypatch.setattr(ModelCache, "record", record)
    assert run(["models", "verify", "mine", "--json"]) == 0, capsys.readouterr()
    (verdict,) = map(json.loads, capsys.readouterr().out.splitlines())
    assert (verdict["verdict"], verdict["actual"]) == ("ok", real(ModelCache(), "mine").sha256) and swapped
    assert real(ModelCache(), "mine").source_sha256 == sha256_file(other)  # the new pair


@pytest.mark.parametrize("width", [150, 170, 200, 235, 300])
def test_models_list_never_folds_a_url(tmp_path, monkeypatch, width):
    """At 150-235 columns the "pull fetches" cell folded the official models' Google Drive URL
    (`…/folders/1Mno4A3BU` over `XELAdX4m650CJ1VfuMVlkz5p`): copied, half a URL. Each URL is whole on its line, in
    the wide table where it fits, else in none."""
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    terminal = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    monkeypatch.setattr(mmgen.cli.models, "table_console", lambda stderr: terminal)

    from mmgen.weights.catalog import catalog

    assert run(["models", "list"]) == 0

    drawn = terminal.file.getvalue()
    urls = {row.fetch.split()[-1] for row in catalog() if row.fetch}
    assert urls and max(len(line) for line in drawn.splitlines()) <= width
    assert all(url in drawn or url[10:30] not in drawn for url in urls), drawn  # whole, or not shown at all
    assert any(url in drawn for url in urls) or width < 300, drawn
