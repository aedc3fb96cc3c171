"""The input is never changed: an output that is an input file — the media, the batch file, a model or adapter
file or the sidecar .json beside it; by name, through a symlink or a hard link — is refused with exit 2 before
anything runs, whatever --overwrite says. Each story ends by checking the user's file still holds its original
bytes."""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from pathlib import Path

import pytest
from cli_here import run_here
from media_factory import write_test_video, write_test_wav
from mmgen_cli import mmgen_env
from safetensors.torch import save_file
from tiny_model import TINY_FIELDS, tiny_config, tiny_mmunet

from mmgen.adapters import BaseModel, LoraSpec, attach, save_adapter
from mmgen.cli import run
from mmgen.errors import UsageError
from mmgen.files import sha256_file
from mmgen.pipelines import soundtrack
from mmgen.pipelines.settings import SoundtrackSettings
from mmgen.weights import load_model


def test_a_batch_job_that_would_write_over_its_own_input_is_a_problem_with_its_line(tiny, tmp_path):
    source = write_test_video(tmp_path / "clip.mp4", seconds=1.0).path
    original = source.read_bytes()
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(textwrap.dedent(f"""
        output_dir: .
        defaults: {{model: {tiny}, steps: 2}}
        jobs:
          - kind: generate
            name: fine
          - kind: soundtrack
            input: clip.mp4
            name: clip
        """))

    done = run_here("batch", jobs, "--overwrite", env=mmgen_env(tmp_path))

    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == (f"{jobs}:7: job 2 (soundtrack): cannot write {source}: it is the input {source} "
                        "(an output never replaces an input)")
    assert lines[-1] == f"mmgen: error: {jobs}: 1 problem found, nothing was run"
    assert source.read_bytes() == original and not (tmp_path / "fine.mp4").exists()


def test_a_batch_output_hard_linked_to_another_jobs_input_is_refused(tiny, tmp_path):
    source = write_test_video(tmp_path / "clip.mp4", seconds=1.0).path
    os.link(source, tmp_path / "scored.mp4")  # job 1 would write "scored.mp4": the same file as job 2's input
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"output_dir: .\ndefaults: {{model: {tiny}}}\njobs:\n"
                    "  - {kind: generate, name: scored}\n  - {kind: soundtrack, input: clip.mp4, name: other}\n")

    done = run_here("batch", jobs, "--overwrite", env=mmgen_env(tmp_path))

    assert done.returncode == 2, done.stderr
    assert f"job 1 (generate): cannot write {tmp_path / 'scored.mp4'}: it is the input {source}" in done.stderr


@pytest.mark.parametrize("link", ["same name", "symlink", "hard link"])
def test_the_python_api_refuses_too(tiny, tmp_path, link):
    source = write_test_video(tmp_path / "clip.mp4", seconds=1.0).path
    original = source.read_bytes()
    output = {"same name": source, "symlink": tmp_path / "out.mp4", "hard link": tmp_path / "out.mp4"}[link]
    if link == "symlink":
        output.symlink_to(source)
    elif link == "hard link":
        os.link(source, output)

    with pytest.raises(UsageError, match="it is the input"):
        soundtrack(source, output, SoundtrackSettings(model=str(tiny), steps=2), overwrite=True)
    assert source.read_bytes() == original


def test_a_batch_job_never_writes_over_the_batch_file_itself(tiny, tmp_path):
    out = tmp_path / "o5"
    out.mkdir()
    jobs = out / "j5.json"  # the job's sidecar would be o5/j5.json: the batch file
    text = json.dumps({"defaults": {"model": str(tiny), "steps": 2},
                       "jobs": [{"kind": "generate", "name": "j5", "seed": 1, "previews": False}]})
    jobs.write_text(text)

    for flags in ([], ["--overwrite"]):
        done = run_here("batch", jobs, "-o", out, *flags, env=mmgen_env(tmp_path))

        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"{jobs}:1: job 1 (generate): cannot write {jobs}: it is the batch file (an output never replaces an input)",
            f"mmgen: error: {jobs}: 1 problem found, nothing was run",
        ]  # and never "pass --overwrite", which would destroy it
        assert jobs.read_text() == text and sorted(p.name for p in out.iterdir()) == ["j5.json"]


def test_a_batch_file_named_like_the_manifest_of_its_output_folder_is_refused(tiny, tmp_path):
    out = tmp_path / "o6"
    out.mkdir()
    jobs = out / "batch-manifest.jsonl"  # the batch would append its records to it
    text = json.dumps({"defaults": {"model": str(tiny), "steps": 2}, "jobs": [{"kind": "generate", "name": "j6"}]})
    jobs.write_text(text)

    done = run_here("batch", jobs, "-o", out, env=mmgen_env(tmp_path))

    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"mmgen: error: cannot use {jobs} as the batch file: it is batch-manifest.jsonl, which the batch writes in "
        f"{out} (move the batch file, or choose another output folder with the file's `output_dir:` or -o)"]
    assert jobs.read_text() == text and sorted(p.name for p in out.iterdir()) == ["batch-manifest.jsonl"]


def save_model_with_sidecar_config(path: Path) -> Path:
    """The tiny model as bare tensors, its architecture in the sidecar `path.json` (weights/load.py reads it)."""
    save_file({k: v.contiguous() for k, v in tiny_mmunet().state_dict().items()}, path)
    path.with_suffix(".json").write_text(json.dumps({"arch": "mm-unet", "config": TINY_FIELDS}))
    return path


@pytest.mark.parametrize("command", ["generate", "soundtrack", "animate", "retake"])
def test_an_output_never_replaces_the_models_sidecar_config(tmp_path, command):
    folder = tmp_path / "models"
    folder.mkdir()
    model = save_model_with_sidecar_config(folder / "clip_0000.safetensors")
    config = model.with_suffix(".json")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    source = write_test_video(tmp_path / "v.mp4", size=(16, 16)).path
    args = {"generate": ["generate", "-o", folder],  # writes clip_0000.mp4 and clip_0000.json there
            "soundtrack": ["soundtrack", source, "-o", folder / "clip_0000.mp4"],
            "animate": ["animate", source, "-o", folder / "clip_0000.mp4"],
            "retake": ["retake", source, "--range", "0:0.5", "-o", folder / "clip_0000.mp4"]}[command]

    done = run_here(*args, "-m", model, "--steps", "2", "--overwrite", env=mmgen_env(tmp_path))

    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"mmgen: error: cannot write {config}: it is the input {config} "
                                   "(an output never replaces an input)")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_an_output_never_replaces_the_model_file_whatever_it_is_called(tiny, tmp_path):
    folder = tmp_path / "mm"
    folder.mkdir()
    model = folder / "clip_0000.mp4"  # a model file with an output's name
    model.write_bytes(tiny.read_bytes())

    done = run_here("generate", "-m", model, "-o", folder, "--steps", "2", "--overwrite", env=mmgen_env(tmp_path))

    assert done.returncode == 2, done.stderr
    assert f"cannot write {model}: it is the input {model}" in done.stderr
    assert model.read_bytes() == tiny.read_bytes()


def test_an_output_never_replaces_an_adapter_or_its_sidecar(tiny, tmp_path):
    run = tmp_path / "lr"
    run.mkdir()
    adapter = run / "adapter.safetensors"
    model = load_model(tiny).model
    attach(model, LoraSpec(4, 4.0, "attention"))
    save_adapter(adapter, model, LoraSpec(4, 4.0, "attention"),
                 BaseModel(str(tiny), sha256_file(tiny), "mm-unet", dataclasses.asdict(tiny_config())))
    notes = run / "adapter.json"
    notes.write_text('{"rank": 4}\n')
    source = write_test_video(tmp_path / "v.mp4", size=(16, 16)).path

    done = run_here("soundtrack", source, "-m", tiny, "--adapter", adapter, "-o", run / "adapter.mp4",
                     "--steps", "2", "--overwrite", env=mmgen_env(tmp_path))

    assert done.returncode == 2, done.stderr
    assert f"cannot write {notes}: it is the input {notes}" in done.stderr
    assert notes.read_text() == '{"rank": 4}\n' and not (run / "adapter.mp4").exists()


def test_a_batch_job_never_replaces_its_models_sidecar_config(tmp_path):
    model = save_model_with_sidecar_config(tmp_path / "m.safetensors")
    config = model.with_suffix(".json")
    before = config.read_bytes()
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("output_dir: .\ndefaults: {model: m.safetensors, steps: 2}\njobs:\n  - {kind: generate, name: m}\n")

    done = run_here("batch", jobs, "--overwrite", env=mmgen_env(tmp_path))

    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[0] == (
        f"{jobs}:4: job 1 (generate): cannot write {config}: it is the input {config} "
        "(an output never replaces an input)")
    assert config.read_bytes() == before and not (tmp_path / "m.mp4").exists()


def test_a_symlink_to_nothing_at_an_output_name_is_an_existing_output(tiny, tmp_path):
    source = write_test_video(tmp_path / "f.mp4", size=(16, 16)).path
    link = tmp_path / "dl.mp4"
    link.symlink_to("nowhere.mp4")

    done = run_here("soundtrack", source, "-m", tiny, "--steps", "2", "-o", link, env=mmgen_env(tmp_path))

    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"mmgen: error: {link} already exists (pass --overwrite to replace it)"
    assert link.is_symlink() and os.readlink(link) == "nowhere.mp4"
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"output_dir: .\ndefaults: {{model: {tiny}}}\njobs:\n  - {{kind: generate, name: dl}}\n")
    planned = run_here("batch", jobs, "--dry-run", env=mmgen_env(tmp_path))
    assert planned.returncode == 2 and f"{link} exists and was not written by this batch" in planned.stderr


def test_an_output_never_replaces_the_cache_record_of_a_model_or_adapter_given_by_name(tiny, tmp_path, monkeypatch,
                                                                                       capsys):
    """`-o <cache>/models/NAME/model.mp4 --overwrite` once wrote its sidecar over the cached model's record, and
    `-o <cache>/adapters/NAME/adapter.mp4` over an adapter's record where the command did not use it: an output is
    never inside mmgen's own cache folders."""
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    model = load_model(tiny).model
    attach(model, LoraSpec(4, 4.0, "attention"))
    adapter = tmp_path / "adapter.safetensors"
    save_adapter(adapter, model, LoraSpec(4, 4.0, "attention"),
                 BaseModel(str(tiny), sha256_file(tiny), "mm-unet", dataclasses.asdict(tiny_config())))
    assert run(["models", "import", str(tiny), "--name", "mine"]) == 0
    assert run(["models", "import", str(adapter), "--name", "style"]) == 0
    cache = tmp_path / "cache"
    before = {p: p.read_bytes() for p in cache.rglob("*.json")}
    source = write_test_video(tmp_path / "v.mp4", size=(16, 16)).path
    capsys.readouterr()

    for output, own in ((cache / "models" / "mine" / "model.mp4", cache / "models"),
                        (cache / "adapters" / "style" / "adapter.mp4", cache / "adapters")):
        for uses in (["-m", "mine", "--adapter", "style"], ["-m", str(tiny)]):  # its input, or not: the cache's
            assert run(["soundtrack", str(source), *uses, "-o", str(output), "--overwrite"]) == 2
            assert capsys.readouterr().err.strip() == (
                f"mmgen: error: cannot write {output}: it is inside mmgen's cache ({own}) (write outputs elsewhere; "
                "the cache holds mmgen's own models and records)")
            assert not output.exists()
    assert {p: p.read_bytes() for p in cache.rglob("*.json")} == before


def test_the_cache_folder_itself_is_no_output_folder_either(tmp_path):
    """`-o $MMGEN_CACHE` (the cache's root, where file-hashes.json lives) was taken as an output folder, and a batch
    planned its manifest there (or in `<cache>/models`) — only outputs inside `models/`, `adapters/`, … were refused.
    Anywhere in the cache is the same one line, exit 2, before any work; nothing is written."""
    env = mmgen_env(tmp_path)
    cache = tmp_path / "cache"
    (cache / "mine").mkdir(parents=True)
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("jobs:\n  - {kind: generate, name: g}\n")
    hint = "(write outputs elsewhere; the cache holds mmgen's own models and records)"
    for args, output, own in (
        (["generate", "--steps", "1", "-o", cache], cache / "clip_0000.mp4", cache),
        (["generate", "--steps", "1", "-o", cache / "mine"], cache / "mine" / "clip_0000.mp4", cache),
        (["batch", jobs, "--dry-run", "-o", cache], cache / "batch-manifest.jsonl", cache),
        (["batch", jobs, "--dry-run", "-o", cache / "models"], cache / "models" / "batch-manifest.jsonl",
         cache / "models"),
    ):
        refused = run_here(*args, env=env)
        assert (refused.returncode, refused.stderr.strip()) == (
            2, f"mmgen: error: cannot write {output}: it is inside mmgen's cache ({own}) {hint}")
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*")) == ["mine"]


def test_an_output_in_another_container_never_takes_the_sidecar_of_one_still_there(tiny, tmp_path):
    """`-o out.mkv --overwrite` beside out.mp4 replaced out.json — out.mp4's sidecar, as both names' sidecar is
    out.json. While out.mp4 is there it is a clash (exit 2, one line, with or without --overwrite), nothing
    written; once it is gone, its old sidecar is an old output's, replaced with --overwrite as any is."""
    out = write_test_video(tmp_path / "out.mp4", seconds=1.0).path
    sound = write_test_wav(tmp_path / "sound.wav", seconds=1.0).path
    sidecar = out.with_suffix(".json")
    sidecar.write_text(json.dumps({"mp4": str(out)}))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    env = mmgen_env(tmp_path)
    for overwrite in ([], ["--overwrite"]):
        refused = run_here("animate", sound, "-o", tmp_path / "out.mkv", *overwrite, "-m", tiny, "--steps", "1",
                           env=env)
        assert (refused.returncode, refused.stderr.strip()) == (2, (
            f"mmgen: error: cannot write {tmp_path / 'out.mkv'}: {sidecar} is the sidecar of {out}, and out.mkv's "
            "would take its place (one name in two containers shares its sidecar, previews and wav) (choose another "
            "name with -o, or move out.mp4 and its files away)"))
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before

    from mmgen.pipelines.outputs import beside, check_not_anothers

    out.unlink()  # its old sidecar is an old output's now
    check_not_anothers(beside(tmp_path / "out.mkv"))


def test_overwrite_keeps_an_input_that_was_the_old_outputs_wav_companion(tiny, tmp_path):
    """OUT.wav, written by an earlier run beside OUT.mp4 (its sidecar records it), animated into OUT.mp4 again with
    --overwrite: the old sidecar's wav is this run's input, not a stale companion to remove before it is read."""
    out = write_test_video(tmp_path / "out.mp4", seconds=1.0).path
    sound = write_test_wav(tmp_path / "out.wav", seconds=1.0).path
    out.with_suffix(".json").write_text(json.dumps({"mp4": str(out), "wav": str(sound)}))  # after the wav, as mmgen does
    original = sound.read_bytes()

    done = run_here("animate", sound, "-o", out, "--overwrite", "-m", tiny, "--steps", "2", env=mmgen_env(tmp_path))

    assert done.returncode == 0, done.stderr
    assert sound.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["out.json", "out.mp4", "out.wav"]
    assert "wav" not in json.loads(out.with_suffix(".json").read_text())


@pytest.mark.parametrize("command", ["generate", "batch"])
def test_overwrite_keeps_a_model_file_that_was_the_old_outputs_preview(tiny, tmp_path, command):
    """A model file where an old output's preview was (`-m out/clip_0000_frames.png`, a companion that the old
    sidecar records): generate --overwrite --no-previews, and a batch's generate job likewise, retired it as a stale
    companion, then loaded the model from memory and left it gone — as soundtrack/animate never do with their
    inputs. The model and adapter files count as inputs wherever outputs are checked."""
    out = tmp_path / "out"
    out.mkdir()
    model = out / "clip_0000_frames.png"
    model.write_bytes(tiny.read_bytes())
    write_test_video(out / "clip_0000.mp4", seconds=1.0)
    (out / "clip_0000.json").write_text(json.dumps({"mp4": str(out / "clip_0000.mp4"), "frames_png": str(model)}))
    original = model.read_bytes()
    if command == "generate":
        args = ["generate", "-m", model, "-o", out, "--steps", 2, "--no-previews"]
    else:
        jobs = tmp_path / "jobs.yaml"
        jobs.write_text(f"output_dir: out\ndefaults: {{model: {model}, steps: 2, previews: false}}\n"
                        "jobs:\n  - {kind: generate, name: clip_0000}\n")
        args = ["batch", jobs]

    done = run_here(*args, "--overwrite", env=mmgen_env(tmp_path))

    assert done.returncode == 0, done.stderr
    assert model.read_bytes() == original
    assert "frames_png" not in json.loads((out / "clip_0000.json").read_text())


def test_a_batch_keeps_one_jobs_input_that_is_another_jobs_stale_companion(tiny, tmp_path):
    """Job 1 makes clip_0000 again without its wav (--overwrite), job 2 animates the old clip_0000.wav: that wav is
    job 1's stale companion, but a batch's every input stays while any of its jobs writes — job 1 retired it before
    job 2 read it."""
    out = tmp_path / "out"
    out.mkdir()
    write_test_video(out / "clip_0000.mp4", seconds=1.0)
    sound = write_test_wav(out / "clip_0000.wav", seconds=1.0).path
    (out / "clip_0000.json").write_text(json.dumps({"mp4": str(out / "clip_0000.mp4"), "wav": str(sound)}))
    original = sound.read_bytes()
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"output_dir: out\ndefaults: {{model: {tiny}, steps: 1, previews: false}}\njobs:\n"
                    "  - {kind: generate, name: clip_0000}\n  - {kind: animate, input: out/clip_0000.wav, name: dance}\n")

    done = run_here("batch", jobs, "--overwrite", env=mmgen_env(tmp_path))

    assert done.returncode == 0, done.stderr
    assert sound.read_bytes() == original
    assert (out / "dance.mp4").is_file()
    assert "wav" not in json.loads((out / "clip_0000.json").read_text())
