"""A batch whose training step could never fit in this machine's memory is refused before torch loads, counting
the activations the backward pass keeps (mmgen.train.batch_memory), not only the clips: `finetune --batch-size 4000`
of the demo model (50 KB of clips each, ~28-54 MB of activations) was killed by the kernel at ~24 GB. The machine's
memory is set to 64 MB here (mmgen.runtime.memory.physical_memory), so what is refused is the same everywhere:
the tests' tiny model keeps ~5.3 MB a clip by the estimate (5.7 MB measured in bf16, more in fp32)."""

from __future__ import annotations

import subprocess
import sys

from cli_here import run_here
from finetune_clips import TRAIN_MODEL, write_clip, write_recipe
from mmgen_cli import mmgen_env

MEMORY = 64_000_000
SMALL_MACHINE = f"import mmgen.runtime.memory as memory; memory.physical_memory = lambda: {MEMORY}"


def test_a_batch_whose_step_could_never_fit_is_refused_in_one_line_before_torch_loads(tmp_path):
    """1,000 clips of the tiny model: 8 MB of clips (which the check counted alone, and let through), ~5.3 GB with
    their activations. Torch cannot load in this process at all: the refusal must come first."""
    write_clip(tmp_path / "clips" / "clip.mp4", ["red"], 2.0)
    recipe = write_recipe(tmp_path / "recipe.yaml")
    script = (f"import sys; sys.modules['torch'] = None; {SMALL_MACHINE}; from mmgen.cli import run; "
              "sys.exit(run(sys.argv[1:]))")
    argv = ["finetune", tmp_path / "clips", "--scratch", "--config", recipe, "-o", tmp_path / "run", "--steps", 1,
            "--device", "cpu", "--batch-size", 1000]
    done = subprocess.run([sys.executable, "-c", script, *map(str, argv)], env=mmgen_env(tmp_path, COLUMNS="300"),
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr.splitlines()) == (2, [
        "mmgen: error: --batch-size 1000: a training step of this model at this batch takes about 5.3 GB of memory "
        "(its clips and the activations kept for the backward pass), more than this machine has (64.0 MB) "
        "(choose a smaller batch: about 12 fit; --recompute keeps less)"]), done.stderr
    assert not (tmp_path / "run").exists()


def test_a_batch_the_estimate_puts_a_little_past_the_memory_still_trains(tmp_path, monkeypatch):
    """The estimate is not a measurement: 16 clips (~85 MB by it, on a 64 MB machine) are within its margin."""
    write_clip(tmp_path / "clips" / "clip.mp4", ["red"], 2.0)
    recipe = write_recipe(tmp_path / "recipe.yaml", TRAIN_MODEL, sample_every=0)
    monkeypatch.setattr("mmgen.runtime.memory.physical_memory", lambda: MEMORY)
    done = run_here("finetune", tmp_path / "clips", "--scratch", "--config", recipe, "-o", tmp_path / "run",
                    "--steps", 1, "--device", "cpu", "--batch-size", 16, env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "model.safetensors").is_file()



def test_torchrun_processes_on_one_machine_share_its_memory(monkeypatch):
    """`torchrun --nproc_per_node 2 … --batch-size 20`: each process trains 10 clips, both on this machine, so 20
    clips' step (5 MB each by the stand-in estimate: 100 MB) must fit in its 64 MB (+ margin): refused, with a batch
    that fits. The check counted one process's share (10 clips, 50 MB) against the whole memory. The same job over
    two machines (one process each) is let by."""
    from types import SimpleNamespace

    import pytest

    from mmgen.errors import UsageError
    from mmgen.train import batch_memory, run_checks
    from mmgen.train.config import Setting

    monkeypatch.setattr("mmgen.runtime.memory.physical_memory", lambda: MEMORY)
    monkeypatch.setattr(batch_memory, "clip_bytes", lambda model: 1_000_000)
    monkeypatch.setattr(batch_memory, "activation_bytes", lambda model, recompute: 4_000_000)
    monkeypatch.setattr(batch_memory, "trains_in_ram", lambda device: True)
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    config = SimpleNamespace(batch_size=20, lora=None, device="cpu", gradient_checkpointing=False)
    model = SimpleNamespace(video_size=(16, 3, 64, 64))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(UsageError) as refused:
        run_checks._check_batch_fits(config, model, Setting("batch_size"))
    assert "takes about 100.0 MB of memory" in str(refused.value) and "about 12 fit" in refused.value.hint
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    run_checks._check_batch_fits(config, model, Setting("batch_size"))
