"""`mmgen doctor`: the facts a bug report starts from — versions, devices, the cache folder, the models there."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from cli_here import run_here
from mmgen_cli import mmgen_env, run_mmgen
from tiny_model import save_tiny_model

import mmgen
from mmgen.cli import run
from mmgen.dependency_versions import unmet


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """A fresh environment whose cache holds one imported model, "tiny": (its environment, its cache path)."""
    root = tmp_path_factory.mktemp("doctor")
    env = mmgen_env(root)
    model = save_tiny_model(root / "tiny.safetensors")
    imported = run_here("models", "import", model, "--name", "tiny", env=env)
    assert imported.returncode == 0, imported.stderr
    return env, root / "cache"


def test_doctor_lists_versions_devices_cache_and_models(machine):
    env, cache = machine
    done = run_here("doctor", env=env)  # piped: each model on one line, whole
    assert done.returncode == 0, done.stderr
    report = done.stdout
    for name, version in (("mmgen", mmgen.__version__), ("torch", torch.__version__), ("av", av.__version__)):
        assert any(line.split() == [name, version] for line in report.splitlines()), f"{name} {version}"
    assert "cpu" in report and f"--device auto → {'cuda:0' if torch.cuda.is_available() else 'cpu'}" in report
    assert str(cache) in report
    lines = report.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("tiny "))
    tiny, below = lines[at].split(), lines[at + 1].split()
    assert tiny[:3] == ["tiny", "mm-unet", "cached"]
    record = json.loads((cache / "models" / "tiny" / "model.json").read_text())
    assert f"{record['sha256'][:12]}…" in tiny  # its weights file's, as `models list` and `verify` show it
    assert below == ["source", f"{record['source_sha256'][:12]}…"]  # the file it was imported from, labelled
    # An official model not pulled yet: what `mmgen models pull landscape` would fetch.
    landscape = next(line for line in report.splitlines() if line.strip().startswith("landscape "))
    assert "downloadable" in landscape
    assert "Landscape.pt from https://drive.google.com/drive/folders/1Mno4A3BUXELAdX4m650CJ1VfuMVlkz5p" in landscape
    assert any(line.split()[:1] == ["demo"] for line in report.splitlines())  # the bundled model, present or not


def test_doctor_json_is_one_object_for_scripts(machine):
    env, cache = machine
    done = run_here("doctor", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.endswith("\n"), done.stdout  # one line, as every --json
    report = json.loads(done.stdout)
    assert report["versions"]["torch"] == torch.__version__ and report["versions"]["av"] == av.__version__
    assert report["devices"]["cpu"]["cores"] >= 1
    assert len(report["devices"]["cuda"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert report["cache"]["path"] == str(cache)
    free = report["cache"]["free_bytes"]  # in bytes, as every size of --json; beside the GiB the report shows
    assert isinstance(free, int) and free > 0 and report["cache"]["free_gib"] == round(free / 2**30, 1)
    models = {row["name"]: row for row in report["models"]}
    assert (models["tiny"]["arch"], models["tiny"]["status"]) == ("mm-unet", "cached")
    assert all(codec["ok"] for codec in report["codecs"] if codec["mode"] == "encode")


def test_doctor_shows_what_the_cache_holds_models_adapters_and_clip_cache_apart(machine):
    """The clip cache grows with every folder finetune decodes (an edited file: a second copy); doctor showed the
    cache's free space, never its size. Now each part's, in bytes (--json) and for people."""
    env, cache = machine
    (cache / "clips").mkdir(exist_ok=True)
    shard = cache / "clips" / "0123abcd.safetensors"
    shard.write_bytes(b"x" * 123_456)
    try:
        report = run_here("doctor", "--json", env=env)
        shown = run_here("doctor", env={**env, "COLUMNS": "300"})
    finally:
        shard.unlink()
    assert report.returncode == 0 and shown.returncode == 0, report.stderr + shown.stderr
    sizes = json.loads(report.stdout)["cache"]
    models = sum(p.stat().st_size for p in (cache / "models").rglob("*") if p.is_file() and not p.is_symlink())
    assert (sizes["models_bytes"], sizes["adapters_bytes"], sizes["clips_bytes"]) == (models, 0, 123_456)
    assert models > 0
    assert "  models " in shown.stdout and " · adapters 0 B · clip cache 123.5 kB (clips/: only a speed-up, safe to " \
        "delete while no finetune runs)" in shown.stdout, shown.stdout


def test_a_cache_folder_that_is_a_file_is_one_line_and_doctor_says_so(tmp_path):
    """MMGEN_CACHE set to a file: commands that cache stop at once with exit 2 (they failed with an OS error
    after reading their inputs), and doctor shows the problem instead of "(not created yet)" — once, under Cache
    (it was said again under Models, over an empty table): the registry's models are listed all the same, with
    what is known without the cache (the bundled demo, the released ones to download)."""
    (tmp_path / "cache-file").write_text("not a folder")
    env = mmgen_env(tmp_path, MMGEN_CACHE=str(tmp_path / "cache-file"))
    model = save_tiny_model(tmp_path / "tiny.safetensors")
    imported = run_here("models", "import", model, "--name", "tiny", env=env)
    assert imported.returncode == 2 and imported.stderr.count("\n") == 1, imported.stderr
    assert "cache-file: it is a file, not a folder" in imported.stderr
    doctor = run_here("doctor", "--json", env=env)
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert "it is a file, not a folder" in report["cache"]["problem"]
    assert "models_error" not in report
    statuses = {row["name"]: row["status"] for row in report["models"]}
    assert statuses["demo"] == "bundled" and statuses["landscape"] == "downloadable", statuses
    shown = run_here("doctor", env=env | {"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("it is a file, not a folder") == 1, shown.stdout
    models = shown.stdout[shown.stdout.index("\nModels\n"):].splitlines()
    for row in (["aist++", "mm-unet", "downloadable"], ["demo", "mm-unet", "bundled"]):
        assert any(line.split()[:3] == row for line in models), models


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc, where no folder can be created")
def test_a_cache_folder_that_cannot_be_written_is_one_line_exit_2(tiny, tmp_path, monkeypatch, capsys):
    """Permission bits do not stop root, so the unwritable place here is /proc: an import stops with one line
    (it once failed at its first write, exit 1), `models list` still works, doctor says what is wrong — and
    none of them creates anything there."""
    for key, value in mmgen_env(tmp_path, MMGEN_CACHE="/proc/mmgen-cache").items():
        monkeypatch.setenv(key, value)

    assert run(["models", "import", str(tiny), "--name", "tiny"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("mmgen: error: cache folder /proc/mmgen-cache cannot be written (it would be created "
                           "in /proc): ")
    assert run(["models", "list", "--json"]) == 0
    capsys.readouterr()
    assert run(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cache"]["problem"].startswith("cache folder /proc/mmgen-cache cannot be written")
    assert not Path("/proc/mmgen-cache").exists()


def test_doctor_reports_each_environment_variable_that_means_nothing_where_other_commands_refuse_to_start(tmp_path):
    """doctor is where a user goes to find out what is wrong: a variable whose value means nothing is a ✗ line in
    its report (and in --json) and exit 2 — it was refused like every other command, so doctor said nothing else."""
    a_file = tmp_path / "presets.yaml"
    a_file.write_text("")
    env = mmgen_env(tmp_path, MMGEN_OFFLINE="maybe", MMGEN_CPU_BF16="2", MMGEN_PRESETS=str(a_file))
    says = {"MMGEN_OFFLINE": "MMGEN_OFFLINE='maybe': takes 1 or 0 (or true/false, yes/no, on/off)",
            "MMGEN_CPU_BF16": "MMGEN_CPU_BF16='2': takes 1 or 0 (or true/false, yes/no, on/off)",
            "MMGEN_PRESETS": f"MMGEN_PRESETS={a_file}: {a_file} is a file; it takes a folder"}

    done = run_here("doctor", env=env)
    assert done.returncode == 2, done.stderr
    for name, line in says.items():
        assert any(row.strip().startswith(f"✗ {line}") for row in done.stdout.splitlines()), (name, done.stdout)
    assert "--device auto → " in done.stdout and any(row.split()[:1] == ["demo"] for row in done.stdout.splitlines())
    assert done.stderr == ("mmgen: error: 3 environment variables hold values that mean nothing: MMGEN_OFFLINE, "
                           "MMGEN_CPU_BF16, MMGEN_PRESETS (the report above says what each takes; every other mmgen "
                           "command refuses to start with them)\n")

    report = run_here("doctor", "--json", env=env)
    assert report.returncode == 2
    problems = json.loads(report.stdout)["environment_problems"]
    assert list(problems) == list(says) and all(problems[n].startswith(line) for n, line in says.items()), problems

    alone = run_here("doctor", "--json", env={**env, "MMGEN_CPU_BF16": "1", "MMGEN_PRESETS": str(tmp_path / "p")})
    assert alone.returncode == 2 and alone.stderr == (f"mmgen: error: {says['MMGEN_OFFLINE']} (every other mmgen "
                                                      "command refuses to start with it)\n")
    refused = run_here("models", "list", "--json", env=env)
    assert refused.returncode == 2 and refused.stdout == "" and refused.stderr.startswith(f"mmgen: error: {says['MMGEN_OFFLINE']}")
    assert run_here("doctor", "--json", env=mmgen_env(tmp_path)).returncode == 0


def test_a_cache_folder_given_from_home_or_relative_is_the_absolute_folder_it_names(tiny, tmp_path, monkeypatch):
    """MMGEN_CACHE='~/mmgen-cache' (quoted, so no shell expanded it) made a folder named `~` in the current folder,
    and doctor showed `~/mmgen-cache`; a relative one was shown as given, whatever the folder doctor ran in."""
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for given, meant in (("~/mmgen-cache", home / "mmgen-cache"), ("rel/cache", work / "rel" / "cache")):
        done = run_here("doctor", "--json", env=mmgen_env(tmp_path, MMGEN_CACHE=given, HOME=str(home)))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["cache"]["path"] == str(meant)
    done = run_here("models", "import", tiny, "--name", "t1",
                    env=mmgen_env(tmp_path, MMGEN_CACHE="~/mmgen-cache", HOME=str(home)))
    assert done.returncode == 0, done.stderr
    assert (home / "mmgen-cache" / "models").is_dir() and not (work / "~").exists()


def test_doctor_counts_one_thread_as_one(tmp_path):
    """run_here runs on one torch thread, as OMP_NUM_THREADS=1 does; doctor said `torch uses 1 threads`."""
    done = run_here("doctor", env=mmgen_env(tmp_path, COLUMNS="200"))
    assert done.returncode == 0, done.stderr
    assert "torch uses 1 thread, native bf16" in done.stdout, done.stdout


def test_doctor_flags_an_omp_num_threads_openmp_cannot_take(tmp_path):
    """OMP_NUM_THREADS=0 (abc, -3): libgomp says `Invalid value` as torch loads and runs anyway on torch's own
    count. doctor says so in one row, with the threads torch uses (run_here: 1), and still exits 0 — the variable
    is not mmgen's to refuse."""
    done = run_here("doctor", env=mmgen_env(tmp_path, OMP_NUM_THREADS="abc", COLUMNS="300"))
    assert done.returncode == 0, done.stderr
    assert ("  ! OMP_NUM_THREADS='abc': takes a whole number of threads, 1 or more; OpenMP ignores it (its `Invalid "
            "value` lines), and torch uses 1 thread\n") in done.stdout, done.stdout
    for value, flagged in (("0", True), ("-3", True), ("4,2", False)):
        report = run_here("doctor", "--json", env=mmgen_env(tmp_path, OMP_NUM_THREADS=value))
        assert report.returncode == 0, report.stderr
        warnings = json.loads(report.stdout).get("environment_warnings", {})
        assert list(warnings) == (["OMP_NUM_THREADS"] if flagged else []), (value, warnings)


def test_a_cache_path_or_description_with_control_characters_is_shown_escaped(tmp_path):
    """A cache path or a registry entry's description holding ESC, a newline or rich markup (`MMGEN_CACHE=$'…\\e[2J…'`)
    is shown in `doctor`'s rows and `models list`'s cells as every message shows a path (terminal.path_text): `\\x1b`,
    `\\n`, `[red]` as typed. It reached the terminal raw (an escape sequence run, a row split in two) and `[red]` was
    taken as markup and dropped."""
    env = {**mmgen_env(tmp_path), "MMGEN_CACHE": str(tmp_path / "a\x1b[2Jb\nc[red]x")}
    (tmp_path / "presets" / "models").mkdir(parents=True)
    (tmp_path / "presets" / "models" / "mine.yaml").write_text('base: demo\ndescription: "my\\e[2Jown\\n[red]model"\n')
    shown = f"{tmp_path}/a\\x1b[2Jb\\nc[red]x"
    done = run_here("doctor", env=env)
    assert done.returncode == 0, done.stderr
    assert f"  {shown} (not created yet) ·" in done.stdout and f"  MMGEN_CACHE={shown}\n" in done.stdout
    listed = run_here("models", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "my\\x1b[2Jown\\n[red]model" in listed.stdout
    assert "\x1b" not in done.stdout + listed.stdout


def test_each_codec_row_says_in_a_word_whether_it_is_there_and_the_closing_line_names_every_missing_one(
        tmp_path, monkeypatch):
    """A codec row said present or missing only by its ✓/✗ (and colour): read aloud, or in an ASCII log as \\u2713,
    both read alike; a missing png encoder was never named in words. Each row has its word, and the closing line
    names every missing codec — the ones every mp4 needs (exit 1) and the rest."""
    import mmgen.cli._facts as facts

    real = facts._codec
    monkeypatch.setattr(facts, "_codec", lambda name, mode: name != "png" and real(name, mode))
    done = run_here("doctor", env=mmgen_env(tmp_path))
    rows = {line.split()[2]: line.split()[:2] for line in done.stdout.splitlines()
            if line.strip()[:1] in "✓✗" and len(line.split()) > 3 and line.split()[3] in ("encode", "decode")}
    assert rows["png"] == ["✗", "missing"] and rows["libx264"] == ["✓", "ok"], done.stdout
    assert done.returncode == 0, done.stderr  # previews: only what uses them stops
    assert "png encoder (previews)" in done.stderr, done.stderr
    monkeypatch.setattr(facts, "_codec", lambda name, mode: name not in ("png", "libx264") and real(name, mode))
    done = run_here("doctor", env=mmgen_env(tmp_path))
    assert done.returncode == 1
    err = done.stderr.strip()
    assert err.startswith("mmgen: error: PyAV lacks") and "libx264 encoder" in err and "png encoder" in err, err


@pytest.mark.parametrize("width", [40, 80])
def test_doctor_on_a_terminal_too_narrow_for_its_models_table_lists_a_model_a_line(machine, monkeypatch, width):
    """At 80 columns rich folded the 'pull fetches' column to 3 characters a line (155 lines for five models); at
    40 it cut the names to `aist…` and `land…`. As `models list` does, a terminal too narrow for the table gets
    each model on a line of its own, whole."""
    import io

    from rich.console import Console

    env, _ = machine
    terminal = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    monkeypatch.setattr(mmgen.cli.doctor, "table_console", lambda stderr: terminal)

    assert run_here("doctor", env=env).returncode == 0

    models = terminal.file.getvalue().split("Models\n", 1)[1].splitlines()
    assert not any("land…" in line or "aist…" in line for line in models), models
    assert any(line.startswith("  landscape-sr: sr-unet · downloadable · ~1.2 GB — Landscape_SR.pt from https://")
               for line in models), models
    assert any(line.startswith("  tiny: ") for line in models) and len(models) < 20, models


def test_a_model_a_line_keeps_the_status_colour_where_the_terminal_has_colour(machine, monkeypatch):
    """On a narrow terminal with colour, the table's `bundled` was green and `downloadable` dim, and a model a line
    said both in plain words: the same words, in the cells' colours now."""
    import io
    import re

    from rich.console import Console

    env, _ = machine
    terminal = Console(file=io.StringIO(), width=40, force_terminal=True, color_system="standard")
    monkeypatch.setattr(mmgen.cli.doctor, "table_console", lambda stderr: terminal)
    assert run_here("doctor", env=env).returncode == 0

    models = terminal.file.getvalue().split("Models\x1b[0m\n", 1)[1].splitlines()
    assert any(line.startswith("  demo: mm-unet · \x1b[32mbundled\x1b[0m · ") for line in models), models
    assert any(line.startswith("  landscape-sr: sr-unet · \x1b[2mdownloadable\x1b[0m · ~1.2 GB — ")
               for line in models), models
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in models]
    assert any(line.startswith("  tiny: mm-unet · cached · ") for line in plain), plain


def _without_torch(tmp_path: Path, reason: str) -> dict[str, str]:
    """An environment whose `import torch` fails as a broken install's does: a torch package first on the path
    that raises `reason` (an OSError: the CUDA library it was built for is missing)."""
    (tmp_path / "site" / "torch").mkdir(parents=True)
    (tmp_path / "site" / "torch" / "__init__.py").write_text(f"raise OSError({reason!r})\n")
    env = mmgen_env(tmp_path, COLUMNS="200")
    return env | {"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), env["PYTHONPATH"]])}


def test_doctor_without_a_torch_that_imports_says_why_and_reports_everything_else(tmp_path):
    """A torch whose import fails (libcudnn missing): doctor said only `ModuleNotFoundError`/`OSError`, one line.
    It shows a ✗ torch line with the reason, the rest of the report (mmgen, PyAV, codecs, cache, models), and
    ends with how to install torch, exit 1."""
    env = _without_torch(tmp_path, "libcudnn.so.9: cannot open shared object file: No such file or directory")
    shown = run_mmgen("doctor", env=env)
    assert shown.returncode == 1, shown.stderr
    assert "✗ torch fails to import: OSError: libcudnn.so.9: cannot open shared object file" in shown.stdout
    assert f"av                 {av.__version__}" in shown.stdout and "✓ ok      libx264  encode" in shown.stdout
    assert "Devices\n  unknown: torch does not import" in shown.stdout and "\nModels\n" in shown.stdout
    assert shown.stderr.count("\n") == 1 and "install it first: pip install torch==2.13.0" in shown.stderr


def test_a_command_without_torch_says_it_needs_it_and_how_to_install_it(tmp_path):
    """`mmgen generate` on a broken torch: one line naming torch and the README's install command, exit 1."""
    failed = run_mmgen("generate", "-n", "1", "-o", tmp_path / "out", env=_without_torch(tmp_path, "libcudnn.so.9"))
    assert failed.returncode == 1
    assert failed.stderr == ("mmgen: error: mmgen needs PyTorch, which fails to import: OSError: libcudnn.so.9 "
                             "(install it first: pip install torch==2.13.0)\n")


def test_doctor_names_a_package_older_than_mmgen_declares_it_needs(tmp_path):
    """pip keeps an old package that an earlier install left (av 12 under a mmgen that needs 15): mmgen then
    failed with an AttributeError. doctor compares what is installed with mmgen's declared lower bounds."""
    outdated = dict((name, (installed, needed)) for name, installed, needed in unmet([
        f"av>={av.__version__}", "numpy>=999", "not-a-package-here>=1", 'pytest>=999; extra == "test"']))
    assert outdated == {"numpy": (np.__version__, "999"), "not-a-package-here": (None, "1")}
    dist = tmp_path / "site" / "mmgen-0.1.0.dist-info"  # an installed mmgen that declares numpy>=999
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mmgen\nVersion: 0.1.0\nRequires-Dist: numpy>=999\n")
    env = _without_torch(tmp_path, "not needed here")
    shown = run_mmgen("doctor", env=env | {"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), env["PYTHONPATH"]])})
    assert f"✗ numpy {np.__version__} is installed; mmgen needs numpy>=999" in shown.stdout, shown.stdout


def test_doctor_names_a_package_whose_install_has_no_version_and_its_json_stays_one_object(tmp_path):
    """A dist-info folder left without its METADATA (an interrupted install): metadata.version() is None there, and
    doctor failed with `AttributeError: 'NoneType' object has no attribute 'strip'`, nothing on stdout."""
    site = tmp_path / "site"
    (site / "scipy-1.9.0.dist-info").mkdir(parents=True)
    (site / "mmgen-0.1.0.dist-info").mkdir()  # an installed mmgen that declares scipy>=1.10
    (site / "mmgen-0.1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mmgen\nVersion: 0.1.0\nRequires-Dist: scipy>=1.10\n")
    env = _without_torch(tmp_path, "not needed here")  # its site folder is first on the path: the shim's too
    shown = run_mmgen("doctor", "--json", env=env)
    assert shown.returncode == 1, shown.stderr
    assert json.loads(shown.stdout)["outdated"] == [{"package": "scipy", "installed": "", "needed": "1.10"}]
    shown = run_mmgen("doctor", env=env)
    assert "✗ scipy: its install has no version (broken install?); mmgen needs scipy>=1.10" in shown.stdout


def test_a_pre_release_of_the_bound_is_older_and_an_epoch_newer(tmp_path, monkeypatch):
    """PEP 440: av 18.1rc1 comes before the av>=18.1 mmgen needs (it passed), and a version with an epoch, 1!2.0,
    after any without one (it was read as 2.0, older than 2.5)."""
    for name, version in (("prerelease-pkg", "18.1rc1"), ("epoch-pkg", "1!2.0"), ("local-pkg", "18.1.0+cpu")):
        dist = tmp_path / f"{name.replace('-', '_')}-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert unmet(["prerelease-pkg>=18.1", "epoch-pkg>=2.5", "local-pkg>=18.1"]) == [
        ("prerelease-pkg", "18.1rc1", "18.1")]
    assert unmet(["prerelease-pkg>=18.1rc1", "prerelease-pkg>=18.1b2", "prerelease-pkg>=18.1.dev0"]) == []
    assert unmet(["prerelease-pkg>=18.1rc2"]) == [("prerelease-pkg", "18.1rc1", "18.1rc2")]


def test_doctor_names_the_temporaries_a_killed_mmgen_left_in_the_cache(machine, capsys):
    """A killed import's `.model.OWNER-PID-….partial.safetensors` (up to a GB) was only counted in `models N MB`:
    doctor names it, with its bytes, and what removes it; a temporary a process here is writing is not named."""
    env, cache = machine
    left = cache / "models" / "tiny" / ".model.0badf00d-999999999-0123abcd.partial.safetensors"
    left.write_bytes(b"x" * 4321)
    from mmgen import temporaries

    writing = cache / "models" / "tiny" / f".model.{temporaries.owner()}-{os.getpid()}-0123abcd.partial.json"
    writing.write_text("{}")
    try:
        with pytest.MonkeyPatch.context() as patched:
            for key, value in {**env, "COLUMNS": "400"}.items():
                patched.setenv(key, value)
            assert run(["doctor", "--json"]) == 0
            report = json.loads(capsys.readouterr().out)["cache"]
            assert run(["doctor"]) == 0
            shown = capsys.readouterr().out
    finally:
        left.unlink()
        writing.unlink()
    assert (report["leftovers"], report["leftovers_bytes"]) == ([str(left)], 4321)
    assert f"4.3 kB in temporaries no mmgen here is writing (left by a killed one, unless one in another container " \
        f"or host writes them now; `mmgen models rm NAME` removes a model's or an adapter's with it): {left}" in shown, shown
