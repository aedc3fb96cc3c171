"""A creator fine-tunes the demo on their own clips, or merges a LoRA adapter into it: the model that comes out
samples the way the demo does — from t = 650 and its data's mean, with fresh noise at every step — because the
demo's own sampling settings travel in every weights file made from it, by path and once imported by name; and a
model with an upsampler passes that on the same way."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from cli_here import run_here
from finetune_clips import write_clip_folder
from mmgen_cli import mmgen_env
from tiny_model import register_tiny_with_upsampler

from mmgen import stamps
from mmgen.adapters import BaseModel, LoraSpec, adapter_parameters, attach, save_adapter
from mmgen.cli import run
from mmgen.weights import ModelCache, load_model, load_registry
from mmgen.weights.catalog import catalog
from mmgen.weights.lineage import Lineage, own_lineage

DEMO = load_registry().get("demo").sampling


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One step of fine-tuning the demo on two clips, with a checkpoint."""
    base = tmp_path_factory.mktemp("own-sampling")
    write_clip_folder(base / "clips", good=2, seconds=2.0)
    env = mmgen_env(base, OMP_NUM_THREADS="1")
    run_dir = base / "run"
    done = run_here(
        "finetune", base / "clips", "--from", "demo", "-o", run_dir, "--steps", 1, "--batch-size", 2,
        "--save-every", 1, "--sample-every", 0, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return run_dir, env


def sampled_with(result) -> tuple:
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(result.stdout)
    return sidecar["sampler"], sidecar.get("eta"), sidecar.get("start_timestep")


def test_the_fine_tuned_demo_generates_with_the_demos_own_settings(tuned, tmp_path):
    run_dir, env = tuned
    made = run_here(
        "generate", "-m", run_dir / "model.safetensors", "--steps", 2, "--seed", 1, "--no-previews", "--json",
        "-o", tmp_path / "out", env=env,
    )  # fmt: skip
    assert sampled_with(made) == (DEMO.sampler, DEMO.eta, DEMO.start_timestep) == ("ddim", 1.0, 650)
    checkpoint_files = sorted((run_dir / "checkpoints").glob("*/*.safetensors"))
    assert len(checkpoint_files) == 2  # raw and EMA weights: a preview is regenerated from the EMA file
    for weights in [run_dir / "model.safetensors", *checkpoint_files]:
        assert own_lineage(weights).sampling == DEMO, weights


def test_imported_by_name_the_fine_tune_keeps_them(tuned, monkeypatch):
    run_dir, env = tuned
    for key, value in env.items():  # the import runs in this process, into the run's cache
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(run_dir / "model.safetensors"), "--name", "my-demo"]) == 0
    assert own_lineage("my-demo").sampling == DEMO


def test_an_adapter_merged_into_the_demo_samples_like_the_demo(tmp_path, monkeypatch):
    model = load_model("demo")
    spec = LoraSpec(2, 2.0, "attention")
    attach(model.model, spec)
    with torch.no_grad():
        for _, p in adapter_parameters(model.model):
            p.normal_(0, 0.01)
    adapter = tmp_path / "style.safetensors"
    save_adapter(
        adapter,
        model.model,
        spec,
        BaseModel("demo", model.sha256, "mm-unet", dataclasses.asdict(model.config)),
    )
    for key, value in mmgen_env(tmp_path).items():  # the merge runs in this process, into this test's cache
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(adapter), "--name", "demo-styled", "--merge"]) == 0
    assert own_lineage("demo-styled").sampling == DEMO


def test_a_copy_of_the_demo_imported_under_a_new_name_samples_like_the_demo_and_says_so(tmp_path, monkeypatch, capsys):
    """The demo's file holds no sampling settings (its registry entry states them): a renamed copy sampled with the
    default preset (dpm++, from pure noise). Known by its sha256, it takes the demo's — and so does a re-import of
    that import's cached file, which was converted from the demo's."""
    import shutil

    copy = tmp_path / "d.safetensors"
    shutil.copyfile(load_registry().get("demo").weights.bundled_path, copy)
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)

    assert run(["models", "import", str(copy), "--name", "d1"]) == 0
    assert capsys.readouterr().err.rstrip().endswith("; the weights of 'demo': it samples as 'demo' does")
    assert own_lineage("d1").sampling == DEMO
    assert run(["models", "import", str(ModelCache().weights_path("d1")), "--name", "d2"]) == 0
    assert "the weights of 'demo'" in capsys.readouterr().err
    assert own_lineage("d2").sampling == DEMO


def test_a_copy_of_the_demo_given_by_path_samples_like_the_demo_and_is_hashed_once(tmp_path, monkeypatch):
    """`-m copy.safetensors` with the demo's file copied elsewhere sampled with the default preset (dpm++, from pure
    noise) while `models import` of the same file took the demo's settings. Known by its sha256 the same way, it
    samples as the demo does; that sha256 is kept with the file's stamp (the cache's file-hashes.json), so the next
    run reads no byte of it to know it, and its sidecar names it."""
    import shutil

    demo_file = load_registry().get("demo").weights.bundled_path
    copy = tmp_path / "elsewhere" / "copy.safetensors"
    copy.parent.mkdir()
    shutil.copyfile(demo_file, copy)
    env = mmgen_env(tmp_path)
    made = run_here("generate", "-m", copy, "--steps", 2, "--seed", 1, "--no-previews", "--json", "-o",
                    tmp_path / "out", env=env)
    assert sampled_with(made) == (DEMO.sampler, DEMO.eta, DEMO.start_timestep)
    sha256 = load_registry().get("demo").weights.sha256
    assert json.loads(made.stdout)["model_sha256"] == sha256
    memo = json.loads((tmp_path / "cache" / "file-hashes.json").read_text())
    assert memo[str(copy.resolve())]["sha256"] == sha256

    def no_hashing(path):
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(stamps, "sha256_file", no_hashing)  # its stamp holds: the next run reads no byte to hash
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert own_lineage(copy).sampling == DEMO  # as the next run's settings are chosen
    assert load_model(copy).sha256 == sha256  # as it loads, for its sidecar


def test_a_copy_edited_in_place_with_its_mtime_set_back_is_hashed_again(tmp_path, monkeypatch):
    """The memo's stamp held size, mtime and inode: a same-size edit whose mtime was set back (`os.utime`, `touch -d`)
    kept the demo's sha256 and settings for other bytes. Its ctime, which no call sets back, moved: read again."""
    import hashlib
    import os
    import shutil
    import time

    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    copy = tmp_path / "copy.safetensors"
    shutil.copyfile(load_registry().get("demo").weights.bundled_path, copy)
    assert own_lineage(copy).sampling == DEMO  # known by its sha256, now in the memo with its stamp
    stat = copy.stat()
    time.sleep(0.05)  # past the clock tick of the copy's last change
    data = bytearray(copy.read_bytes())
    data[-2] ^= 1  # the last fp16 weight's lowest mantissa bit
    copy.write_bytes(data)
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (copy.stat().st_size, copy.stat().st_mtime_ns, copy.stat().st_ino) == (
        stat.st_size, stat.st_mtime_ns, stat.st_ino)

    assert own_lineage(copy).sampling != DEMO  # no longer taken for the demo
    assert load_model(copy).sha256 == hashlib.sha256(data).hexdigest()  # what its sidecar names


def test_a_copy_of_a_cached_model_with_no_registered_sha256_is_known_by_path_and_on_import(tmp_path, monkeypatch):
    """A model trusted on first use (the paper's landscape) has no sha256 in its entry: a copy of its cached file,
    given by path or imported under a new name, is known by the cache record's sha256s instead."""
    import shutil

    from tiny_model import save_tiny_model

    models = tmp_path / "presets" / "models"
    models.mkdir(parents=True)
    models.joinpath("hand.yaml").write_text(
        "arch: mm-unet\nweights: {format: safetensors}\nsampling: {sampler: ddim, steps: 3, eta: 0.5}\n"
    )
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(save_tiny_model(tmp_path / "t.safetensors")), "--name", "hand"]) == 0
    copy = tmp_path / "copy.safetensors"
    shutil.copyfile(ModelCache().weights_path("hand"), copy)
    assert own_lineage(copy).sampling == own_lineage("hand").sampling != Lineage().sampling
    assert run(["models", "import", str(copy), "--name", "hand2"]) == 0
    assert own_lineage("hand2").sampling == own_lineage("hand").sampling


def test_a_model_trained_from_scratch_has_no_settings_of_its_own(tmp_path):
    from tiny_model import save_tiny_model

    assert own_lineage(save_tiny_model(tmp_path / "tiny.safetensors")) == Lineage()


def test_a_model_fine_tuned_from_one_with_an_upsampler_is_upscaled_by_it(tmp_path, monkeypatch):
    """As `landscape` fine-tuned on a user's clips is still upscaled 64→256 by `landscape-sr`: the fine-tune of
    `tiny` (whose entry names `tiny-sr`) makes 32×32 video with --upscale, and by default once `tiny-sr` is cached,
    by path and imported by name."""
    register_tiny_with_upsampler(tmp_path)
    write_clip_folder(tmp_path / "clips", good=2, seconds=2.0)
    env = mmgen_env(tmp_path, OMP_NUM_THREADS="1")

    def mmgen(*args):  # in this process (tests/cli_here.py)
        return run_here(*args, env=env)

    tuned = mmgen(
        "finetune", tmp_path / "clips", "--from", "tiny", "-o", tmp_path / "run", "--steps", 1, "--batch-size", 2,
        "--sample-every", 0,
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr

    made = mmgen(
        "generate", "-m", tmp_path / "run" / "model.safetensors", "--steps", 2, "--seed", 1, "--upscale",
        "--json", "-o", tmp_path / "out",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    assert (record["upscaled"], record["upsampler"], record["width"], record["height"]) == (True, "tiny-sr", 32, 32)

    assert mmgen("models", "import", tmp_path / "run" / "model.safetensors", "--name", "my-tiny").returncode == 0
    for key, value in env.items():  # for catalog() below, as `models list` reads it
        monkeypatch.setenv(key, value)
    assert own_lineage("my-tiny").upsampler == "tiny-sr"
    assert next(row for row in catalog() if row.name == "my-tiny").upsampler == "tiny-sr"  # `models list --json`
    by_name = mmgen("generate", "-m", "my-tiny", "--steps", 2, "--json", "-o", tmp_path / "again")
    assert by_name.returncode == 0, by_name.stderr
    assert (json.loads(by_name.stdout)["upsampler"], json.loads(by_name.stdout)["width"]) == ("tiny-sr", 32)
