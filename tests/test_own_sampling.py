"""A creator fine-tunes the demo on their own clips, or merges a LoRA adapter into it: the model that comes out
samples the way the demo does — from t = 650 and its data's mean, with fresh noise at every step — because the
demo's own sampling settings travel in every weights file made from it, by path and once imported by name."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from finetune_clips import write_clip_folder
from mmgen_cli import mmgen_env, run_mmgen

from mmgen.adapters import BaseModel, LoraSpec, adapter_parameters, attach, save_adapter
from mmgen.cli import run
from mmgen.weights import load_model, load_registry
from mmgen.weights.own_sampling import own_sampling

DEMO = load_registry().get("demo").sampling


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One step of fine-tuning the demo on two clips, with a checkpoint."""
    base = tmp_path_factory.mktemp("own-sampling")
    write_clip_folder(base / "clips", good=2, seconds=2.0)
    env = mmgen_env(base, OMP_NUM_THREADS="1")
    run_dir = base / "run"
    result = run_mmgen(
        "finetune", base / "clips", "--from", "demo", "-o", run_dir, "--steps", 1, "--batch-size", 2,
        "--save-every", 1, "--sample-every", 0, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return run_dir, env


def sampled_with(result) -> tuple:
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(result.stdout)
    return sidecar["sampler"], sidecar.get("eta"), sidecar.get("start_timestep")


def test_the_fine_tuned_demo_generates_with_the_demos_own_settings(tuned, tmp_path):
    run_dir, env = tuned
    made = run_mmgen(
        "generate", "-m", run_dir / "model.safetensors", "--steps", 2, "--seed", 1, "--no-previews", "--json",
        "-o", tmp_path / "out", env=env,
    )  # fmt: skip
    assert sampled_with(made) == (DEMO.sampler, DEMO.eta, DEMO.start_timestep) == ("ddim", 1.0, 650)
    checkpoint_files = sorted((run_dir / "checkpoints").glob("*/*.safetensors"))
    assert len(checkpoint_files) == 2  # raw and EMA weights: a preview is regenerated from the EMA file
    for weights in [run_dir / "model.safetensors", *checkpoint_files]:
        assert own_sampling(weights) == DEMO, weights


def test_imported_by_name_the_fine_tune_keeps_them(tuned, monkeypatch):
    run_dir, env = tuned
    for key, value in env.items():  # the import runs in this process, into the run's cache
        monkeypatch.setenv(key, value)
    assert run(["models", "import", str(run_dir / "model.safetensors"), "--name", "my-demo"]) == 0
    assert own_sampling("my-demo") == DEMO


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
    assert own_sampling("demo-styled") == DEMO


def test_a_model_trained_from_scratch_has_no_settings_of_its_own(tmp_path):
    from tiny_model import save_tiny_model

    assert own_sampling(save_tiny_model(tmp_path / "tiny.safetensors")) is None
