"""A cache on a read-only mount (a shared, prepared cache) is read as any other: what only reads it never needs to
write there. Read-only is faked (root ignores permission bits): the writes into the cache raise EROFS, as a
read-only mount's do."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from cli_here import run_here
from finetune_clips import write_clip, write_recipe
from mmgen_cli import mmgen_env
from tiny_model import save_tiny_model

import mmgen.data.clip_cache
import mmgen.output_checks
from mmgen.data.clips import ClipFormat, build_clip_dataset


def read_only(path: object) -> OSError:
    return OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))


def test_models_verify_in_a_read_only_cache_says_ok_and_records_nothing(tmp_path, monkeypatch):
    """`models verify` exited 2 with `cannot write …/models/mine/model.json: Read-only file system`: the stamp it
    records (so the next load need not hash the file again) is skipped where the cache takes no write, unsaid."""
    env = mmgen_env(tmp_path)
    assert run_here("models", "import", save_tiny_model(tmp_path / "tiny.safetensors"), "-n", "mine",
                    env=env).returncode == 0
    cache = Path(env["MMGEN_CACHE"])
    record = (cache / "models" / "mine" / "model.json").read_bytes()
    write_text = Path.write_text

    def refused_in_the_cache(self, *args, **kwargs):
        if self.is_relative_to(cache):
            raise read_only(self)
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refused_in_the_cache)
    verified = run_here("models", "verify", "mine", env=env)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("mine: ok, sha256 ") and verified.stderr == ""
    assert (cache / "models" / "mine" / "model.json").read_bytes() == record


def read_only_clip_cache(tmp_path: Path, monkeypatch) -> tuple[Path, Path, Callable]:
    """A clip folder, its clip cache holding every clip (TRAIN_MODEL's), then read-only; and a finetune to run."""
    data, cache, recipe = tmp_path / "data", tmp_path / "clips", write_recipe(tmp_path / "recipe.yaml")
    write_clip(data / "a.mp4", ["red"], 1.0)
    build_clip_dataset(data, ClipFormat(2, 10.0, 8, 8, 8000, 1600), cache)
    try_a_file, acquire = mmgen.output_checks.try_a_file, mmgen.data.clip_cache.acquire

    def no_file_in_the_cache(folder):
        if Path(folder).is_relative_to(cache):
            raise read_only(folder)
        return try_a_file(folder)

    def no_lock_in_the_cache(path, *args, **kwargs):
        if Path(path).is_relative_to(cache):
            raise read_only(path)
        return acquire(path, *args, **kwargs)

    monkeypatch.setattr(mmgen.output_checks, "try_a_file", no_file_in_the_cache)
    monkeypatch.setattr(mmgen.data.clip_cache, "acquire", no_lock_in_the_cache)

    def finetune():
        return run_here("finetune", data, "--scratch", "--config", recipe, "-o", tmp_path / "run", "--cache-dir", cache,
                        "--steps", 1, "--batch-size", 1, "--sample-every", 0, "--probe-every", 0, "--save-every", 0,
                        env=mmgen_env(tmp_path))

    return data, cache, finetune


def test_finetune_reads_a_read_only_clip_cache_that_holds_every_clip(tmp_path, monkeypatch):
    """A run whose clips were all decoded into a clip cache now read-only exited 2 `cannot write into …/clips`
    before reading anything: a cache that is there is only read where it holds every clip."""
    data, cache, finetune = read_only_clip_cache(tmp_path, monkeypatch)
    held = sorted(p.name for p in cache.iterdir())
    done = finetune()
    assert done.returncode == 0, done.stderr
    assert "1 from the clip cache" in done.stderr and sorted(p.name for p in cache.iterdir()) == held


def test_a_clip_to_decode_into_a_read_only_clip_cache_is_refused_naming_both(tmp_path, monkeypatch):
    data, cache, finetune = read_only_clip_cache(tmp_path, monkeypatch)
    write_clip(data / "b.mp4", ["blue"], 1.0)
    done = finetune()
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"mmgen: error: cannot write into {cache}: Read-only file system ({data / 'b.mp4'} is not decoded in this "
        "clip cache yet) (choose another --cache-dir, or set MMGEN_CACHE)")
