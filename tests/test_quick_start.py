"""`mmgen --help` and a mistyped flag answer at once: torch, scipy and PyAV (3–5 s of imports on a laptop) load only
when a command does work that needs them. The packages' names still all resolve when asked for."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import types

import pytest
from mmgen_cli import mmgen_env

from mmgen.train.run_folder import RunFolderLock

HEAVY = ("torch", "scipy", "av")
PACKAGES = ["mmgen.adapters", "mmgen.diffusion", "mmgen.media", "mmgen.models", "mmgen.pipelines",
            "mmgen.pipelines.batch", "mmgen.runtime", "mmgen.train", "mmgen.weights"]


def heavy_modules_after(argv: list[str], tmp_path) -> tuple[int, list[str]]:
    """Run the command line in a fresh interpreter; its exit code and which heavy libraries it imported."""
    return said_without(argv, tmp_path)[:2]


def said_without(argv: list[str], tmp_path) -> tuple[int, list[str], str]:
    """heavy_modules_after's exit code and heavy libraries, and what the command said on stderr."""
    script = ("import sys; from mmgen.cli import run; code = run(sys.argv[1:]); "
              f"print([m for m in {HEAVY!r} if m in sys.modules]); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, *argv], env=mmgen_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    return done.returncode, eval(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.parametrize("argv, code", [
    (["--help"], 0),
    (["--version"], 0),
    (["generate", "--help"], 0),
    (["finetune", "--help"], 0),
    (["generate", "--steps", "0"], 2),
    (["soundtrack"], 2),  # no input given
    (["finetune", "/nonexist"], 2),  # no folder of clips: it was found only after torch loaded, for the device
    (["generate", "--device", "cuda:9x"], 2),  # no device's word (whether a real one is here is torch's to say)
    (["finetune", "clips", "--device", "tpu"], 2),
], ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_help_and_usage_errors_do_not_load_torch(argv, code, tmp_path):
    assert heavy_modules_after(argv, tmp_path) == (code, [])


def test_a_command_that_shows_no_help_does_not_load_typer_s_help(tmp_path):
    """typer's rich help module (~90 ms to import) is set up as the first --help renders (mmgen.cli.app): every
    command paid for it as it started."""
    script = ("import sys; from mmgen.cli import run; code = run(sys.argv[1:]); "
              "print('typer.rich_utils' in sys.modules); sys.exit(code)")
    for argv, loads in ((["--version"], False), (["models", "list"], False), (["models", "--help"], True)):
        done = subprocess.run([sys.executable, "-c", script, *argv], env=mmgen_env(tmp_path), capture_output=True,
                              text=True, timeout=300)
        assert (done.returncode, done.stdout.strip().splitlines()[-1]) == (0, str(loads)), (argv, done.stderr)


def test_a_refused_finetune_resume_does_not_load_torch(tmp_path):
    """`finetune DATA -o RUN --resume` refused for what RUN is — missing, no run's config.yaml, a run training in it —
    answers at once: it loaded torch (seconds) before it looked."""
    data, empty, held = tmp_path / "clips", tmp_path / "empty", tmp_path / "held"
    for folder in (data, empty, held):
        folder.mkdir()
    (held / "config.yaml").write_text("steps: 10\n")
    lock = RunFolderLock(held)
    lock.take()
    try:
        for run_dir in (tmp_path / "missing", empty, held):
            assert heavy_modules_after(["finetune", str(data), "-o", str(run_dir), "--resume"], tmp_path) == (2, [])
    finally:
        lock.release()


# A refusal that needs no model: the command line (its paths under the test's folder, made by the test) and what its
# line says. The pipeline's own checks (pipelines.preflight) run before the pipeline, and torch, is imported.
NEEDS_NO_MODEL = {
    "soundtrack, no input": (["soundtrack", "{missing}.mp4"], "no such file"),
    "animate, no input": (["animate", "{missing}.wav"], "no such file"),
    "retake, no input": (["retake", "{missing}.mp4", "--range", "1:2"], "no such file"),
    "batch, no file": (["batch", "{missing}.yaml"], "no such file"),
    "soundtrack, output exists": (["soundtrack", "{clip}", "-o", "{afile}.mp4"], "already exists"),
    "generate, unknown model": (["generate", "-m", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    "generate, no model file": (["generate", "-m", "{missing}.safetensors"], "no such model file"),
    "generate, clip exists": (["generate", "-n", "1", "-o", "{done}"], "already exists"),
    "generate, -o a file": (["generate", "-o", "{afile}"], "is a file, not a directory"),
    "finetune, unknown model": (["finetune", "{clips}", "-o", "{missing}", "--from", "nosuchmodel"],
                                "--from: unknown model 'nosuchmodel'"),
    "finetune, no model file": (["finetune", "{clips}", "-o", "{missing}", "--from", "{missing}.safetensors"],
                                "no such model file"),
    # the model's clip size, from the bundled demo's own file and from a registry entry not downloaded
    "finetune, batch past memory": (["finetune", "{clips}", "-o", "{missing}", "--batch-size", "100000000"],
                                    "more than this machine has"),
    "finetune, batch past memory, registry": (["finetune", "{clips}", "-o", "{missing}", "--from", "landscape",
                                               "--batch-size", "100000000"], "more than this machine has"),
}


@pytest.mark.parametrize("case", NEEDS_NO_MODEL)
def test_a_refusal_that_needs_no_model_does_not_load_torch(case, tmp_path):
    """Said in a second, not after the seconds (and 200 MB) of importing torch: the input is missing, an output
    exists, the model is not known or its file is not there, a training batch could never fit in memory (finetune
    asked torch whether its device was there first)."""
    from media_factory import write_test_video

    argv, words = NEEDS_NO_MODEL[case]
    done = tmp_path / "done"
    done.mkdir()
    (done / "clip_0000.mp4").write_bytes(b"made before")
    (tmp_path / "clips").mkdir()
    for name in ("afile", "afile.mp4"):
        (tmp_path / name).write_bytes(b"a file")
    places = {"missing": tmp_path / "missing", "clip": write_test_video(tmp_path / "clip.mp4", seconds=0.3).path,
              "afile": tmp_path / "afile", "done": done, "clips": tmp_path / "clips"}
    code, heavy, said = said_without([a.format(**places) for a in argv], tmp_path)
    assert code == 2 and set(heavy) <= {"av"} and words in said, (heavy, said)  # PyAV may read the input


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_a_package_offers_is_what_it_names(package):
    """Even once its submodules are loaded: `mmgen.pipelines.animate` stays the function, not its module."""
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        importlib.import_module(f"{package}.{info.name}")
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None and not isinstance(value, types.ModuleType), f"{package}.{name}"
