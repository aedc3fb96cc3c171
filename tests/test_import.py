"""Importing checkpoints a user downloaded by hand: an official-format .pt of the tiny fixture model becomes a
cached mmgen model that reproduces the official forward; bad files are refused with the reason."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pickle
import stat
import struct
from dataclasses import fields
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml
from conftest import OFFICIAL, official_json
from mmgen_cli import mmgen_env, run_mmgen

from mmgen.cli import run
from mmgen.errors import ConfigError, StorageError, UsageError, WeightsMismatch
from mmgen.models.config import MMUNetConfig, SRUNetConfig
from mmgen.weights import ModelCache, import_weights, load_model, read_header, save_model

# Official constructor arguments our architecture hard-wires (not MMUNetConfig fields).
FIXED = {
    "video_type": "2d+1d",
    "audio_type": "1d",
    "num_classes": None,
    "use_checkpoint": False,
    "use_fp16": False,
}


def tiny_mmunet_fields() -> dict:
    """The tiny official model's constructor kwargs as MMUNetConfig fields — what a user writes in --config."""
    kwargs = official_json("tiny_mmunet.json")["constructor_kwargs"]
    assert all(kwargs[k] == v for k, v in FIXED.items()) and kwargs["resblock_updown"]
    return {f.name: kwargs[f.name] for f in fields(MMUNetConfig) if f.name in kwargs}


def save_official_style(state: dict[str, torch.Tensor], path: Path) -> Path:
    """torch.save the way the official fp16 trainer leaves it: every tensor a view into one flat storage."""
    flat = torch.cat([t.reshape(-1) for t in state.values()])
    views, offset = {}, 0
    for name, t in state.items():
        views[name] = flat[offset : offset + t.numel()].view(t.shape)
        offset += t.numel()
    torch.save(views, path)
    return path


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    """An isolated cache/config/presets, set here and returned for subprocesses."""
    environment = mmgen_env(tmp_path)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    return environment


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(OFFICIAL / "tiny_mmunet.safetensors")


def test_official_checkpoint_imports_and_reproduces_the_official_forward(tmp_path, env, official_state, capsys):
    checkpoint = save_official_style(official_state, tmp_path / "Tiny.pt")
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_mmunet_fields()))

    code = run(["models", "import", str(checkpoint), "--name", "tiny", "--arch", "mm-unet", "--config",
                str(config_file), "--json"])

    said = capsys.readouterr()
    assert code == 0, said.err
    record = json.loads(said.out)
    assert record["source_format"] == "pt" and record["dtype"] == "float32"
    loaded = load_model("tiny")
    assert loaded.config == MMUNetConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in tiny_mmunet_fields().items()}
    )
    assert loaded.sha256 == record["sha256"] and not loaded.model.training
    io = safetensors.torch.load_file(OFFICIAL / "tiny_mmunet_io.safetensors")
    with torch.no_grad():
        video, audio = loaded.model(io["video"], io["audio"], io["timesteps"])
    torch.testing.assert_close(video, io["video_out"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(audio, io["audio_out"], atol=1e-4, rtol=1e-4)
    header = read_header(loaded.path)  # the cached file describes itself
    assert header.arch == "mm-unet" and header.metadata["source_sha256"] == record["source_sha256"]


def test_a_registry_entry_states_a_non_released_architecture(tmp_path, env, official_state, capsys):
    entry = {
        "arch": "mm-unet",
        "config": tiny_mmunet_fields(),
        "weights": {"format": "pt"},
        "description": "tiny",
    }
    (tmp_path / "presets" / "models").mkdir(parents=True)
    (tmp_path / "presets" / "models" / "tiny-official.yaml").write_text(yaml.safe_dump(entry))
    checkpoint = save_official_style(official_state, tmp_path / "Tiny.pt")

    assert run(["models", "import", str(checkpoint), "--name", "tiny-official"]) == 0
    fp32_size = load_model("tiny-official").path.stat().st_size
    assert run(["models", "import", str(checkpoint), "--name", "tiny-official", "--dtype", "fp16"]) == 2
    assert "already in the cache" in capsys.readouterr().err
    assert (
        run(["models", "import", str(checkpoint), "-n", "tiny-official", "--dtype", "fp16", "--overwrite"])
        == 0
    )
    fp16 = load_model("tiny-official")

    assert fp16.path.stat().st_size < 0.55 * fp32_size
    assert fp16.entry.description == "tiny" and fp16.model.time_embed[0].weight.dtype == torch.float32
    for key, value in fp16.model.state_dict().items():
        torch.testing.assert_close(value, official_state[key].half().float())
    assert run(["models", "list", "--json"]) == 0
    rows = {row["name"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert (
        rows["tiny-official"]["status"] == "cached"
        and rows["tiny-official"]["size"] == fp16.path.stat().st_size
    )


def test_missing_and_misshaped_keys_are_listed(tmp_path, env, official_state, capsys):
    state = dict(official_state)
    missing = "output_blocks.0.0.audio_out_layers.3.audio_conv.bias"
    misshaped = "time_embed.2.weight"
    del state[missing]
    state[misshaped] = torch.zeros(32, 16)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_mmunet_fields()))

    bad = save_official_style(state, tmp_path / "bad.pt")
    code = run(["models", "import", str(bad), "-n", "bad", "--arch", "mm-unet", "--config", str(config_file)])

    assert code == 2
    err = capsys.readouterr().err
    assert f"1 missing: {missing}" in err
    assert f"1 wrong shape: {misshaped} [32, 16] (expected [32, 32])" in err
    assert ModelCache().record("bad") is None


def test_a_failed_import_leaves_the_cache_as_it_was(tmp_path, env, tiny):
    """No empty models/NAME/ folder holding only a lock; a model already there keeps every byte and stamp."""
    wrong = save_official_style({"x": torch.zeros(3)}, tmp_path / "wrong.pt")
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_mmunet_fields()))
    wrong_import = ["models", "import", str(wrong), "--arch", "mm-unet", "--config", str(config_file), "-n"]
    assert run([*wrong_import, "fresh"]) == 2
    assert list((tmp_path / "cache").rglob("*fresh*")) == []

    assert run(["models", "import", str(tiny), "-n", "kept"]) == 0
    folder = ModelCache().folder("kept")
    def stamped():  # the .lock only by name: it holds whoever last held it (a pid, a command)
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) if p.name != ".lock" else () for p in folder.iterdir()}

    before = stamped()
    assert run([*wrong_import, "kept", "--overwrite"]) == 2
    assert stamped() == before


def test_a_checkpoint_for_another_config_is_refused_with_a_short_list(tmp_path, env, official_state):
    checkpoint = save_official_style(official_state, tmp_path / "Tiny.pt")
    with pytest.raises(WeightsMismatch, match=r"wrong shape: .*\.\.\. and \d+ more") as error:
        import_weights(checkpoint, "landscape")  # the released config is far larger than the tiny model
    assert error.value.exit_code == 2 and len(str(error.value)) < 2000


class CreatesAFile:
    """A pickle payload: unpickling it calls open(path, "w")."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path, env, official_state):
    control = tmp_path / "control.pt"
    torch.save({"weight": torch.ones(1), "payload": CreatesAFile(tmp_path / "control-ran")}, control)
    torch.load(control, weights_only=False)  # plain unpickling would run it ...
    assert (tmp_path / "control-ran").exists()

    evil = tmp_path / "evil.pt"
    torch.save({**official_state, "payload": CreatesAFile(tmp_path / "pwned")}, evil)
    result = run_mmgen("models", "import", evil, "--name", "evil", "--arch", "mm-unet", env=env)

    assert result.returncode == 2
    assert "refused to load" in result.stderr and "weights_only" in result.stderr
    assert not (tmp_path / "pwned").exists()  # ... mmgen never does


def test_mmgen_files_carry_their_own_config(tmp_path, env):
    sr_state = safetensors.torch.load_file(OFFICIAL / "tiny_sr.safetensors")
    kwargs = official_json("tiny_sr.json")["constructor_kwargs"]
    config = SRUNetConfig(**{f.name: tuple(v) if isinstance(v := kwargs[f.name], list) else v
                             for f in fields(SRUNetConfig) if f.name in kwargs})  # fmt: skip
    mine = tmp_path / "run" / "model.safetensors"
    save_model(mine, sr_state, "sr-unet", config, {"steps": 100})
    assert [p.name for p in mine.parent.iterdir()] == ["model.safetensors"]  # no temporary left behind

    by_path = load_model(mine)
    assert (by_path.arch, by_path.config, by_path.entry) == ("sr-unet", config, None)
    record = import_weights(mine, "my-sr")  # no --arch needed: the metadata says it
    assert (record.arch, record.source_format) == ("sr-unet", "safetensors")
    assert load_model("my-sr").sha256 == record.sha256
    with pytest.raises(UsageError, match="bundled with mmgen"):
        import_weights(mine, "demo")

    plain = tmp_path / "plain.safetensors"  # official keys, no metadata: a sidecar json says what it is
    plain.write_bytes((OFFICIAL / "tiny_sr.safetensors").read_bytes())
    with pytest.raises(ConfigError, match="no sidecar plain.json"):
        load_model(plain)
    plain.with_suffix(".json").write_text(json.dumps({"arch": "sr-unet", "config": {**kwargs_for(config)}}))
    assert load_model(plain).config == config


def kwargs_for(config: SRUNetConfig) -> dict:
    return {f.name: getattr(config, f.name) for f in fields(config)}


def test_importing_the_same_checkpoint_again_gives_the_same_model_identity(tmp_path, env, official_state):
    """A model's sha256 is its identity in sidecars and batch records: re-importing (or re-pulling) the same
    checkpoint must not give it a new one (safetensors writes its metadata in a random order)."""
    checkpoint = save_official_style(official_state, tmp_path / "Tiny.pt")
    config = MMUNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in tiny_mmunet_fields().items()})
    digests = {
        import_weights(checkpoint, "tiny", arch="mm-unet", config=config, overwrite=True).sha256 for _ in range(3)
    }

    assert len(digests) == 1
    assert digests == {hashlib.sha256(load_model("tiny").path.read_bytes()).hexdigest()}
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(load_model("tiny").path.stat().st_mode) == 0o666 & ~umask  # like any file of the user's


def test_the_same_weights_under_two_names_are_one_file_with_one_sha256(tmp_path, env):
    """The name and the path it was imported from went into the cached file's metadata, so the same file imported
    as `a` and, from another folder, as `c` got two sha256s — two identities in `models list`, sidecars, batch
    records and adapter checks for byte-identical weights. They are kept in the record only; what still tells two
    files apart is what is in them (README, Models: a stored dtype, the file they were converted from)."""
    from tiny_model import save_tiny_model

    first = save_tiny_model(tmp_path / "one" / "tiny.safetensors")
    second = tmp_path / "two" / "copy.safetensors"
    second.parent.mkdir()
    second.write_bytes(first.read_bytes())
    records = [import_weights(first, "a"), import_weights(second, "c")]  # two names, two folders

    assert [r.source for r in records] == [str(first), str(second)]  # the record still says which
    assert load_model("a").sha256 == records[0].sha256 == records[1].sha256  # what list, verify, sidecars show
    assert ModelCache().weights_path("a").read_bytes() == ModelCache().weights_path("c").read_bytes()


def test_a_cached_model_is_never_imported_over_itself(tmp_path, env, tiny, capsys):
    """An input is never an output: importing a model's own cached file under its name (here to convert it
    to fp16 in place) is refused, however the file is named, and the cached model is left as it was."""
    assert run(["models", "import", str(tiny), "--name", "mygood"]) == 0
    cached = ModelCache().weights_path("mygood")
    link = tmp_path / "link.safetensors"
    link.symlink_to(cached)
    before = {p.name: p.read_bytes() for p in cached.parent.iterdir()}

    for same in (cached, link):
        capsys.readouterr()
        code = run(["models", "import", str(same), "--name", "mygood", "--overwrite", "--dtype", "fp16"])

        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith(f"mmgen: error: {same}: it is already the cached model 'mygood'")
        assert err.count("\n") == 1 and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in cached.parent.iterdir()} == before
    assert run(["models", "import", str(cached), "--name", "mygood-fp16", "--dtype", "fp16"]) == 0, \
        capsys.readouterr().err  # under another name it is a new, converted model
    assert load_model("mygood-fp16").sha256 != load_model("mygood").sha256


def test_one_sha256_names_an_imported_model_and_its_adapters_follow_the_same_weights(tmp_path, env, capsys):
    """The demo ships as float16; `models import` widens it to float32 and says so. The import's sha256 is that of
    the file it loads — in `models list`, `verify`, sidecars and adapter refusals alike — with the file it came
    from shown apart, as "source". An adapter trained on the float16 file applies to its float32 import (and the
    other way round): the same weights, in another container. One for a model narrowed to float16 is refused,
    naming the sha256 that `models list` shows."""
    from tiny_model import tiny_config, tiny_mmunet

    from mmgen.adapters import BaseModel, LoraSpec, attach, check_fits, read_adapter, save_adapter
    from mmgen.weights.catalog import catalog

    half = tmp_path / "half.safetensors"
    save_model(half, tiny_mmunet(), "mm-unet", tiny_config(), dtype=torch.float16)
    full = tmp_path / "full.safetensors"
    save_model(full, tiny_mmunet(), "mm-unet", tiny_config())
    assert run(["models", "import", str(half), "--name", "wide"]) == 0
    assert "(mm-unet, float32, widened from float16: the same weights, " in capsys.readouterr().err
    import_weights(full, "narrow", dtype="fp16")

    rows = {row.name: row for row in catalog()}
    wide, narrow = load_model("wide"), load_model("narrow")
    source = hashlib.sha256(half.read_bytes()).hexdigest()
    assert (rows["wide"].sha256, rows["wide"].source_sha256) == (wide.sha256, source)
    assert rows["narrow"].sha256 == narrow.sha256 != rows["narrow"].source_sha256

    def adapter_on(model, name: str) -> Path:
        network, spec, path = tiny_mmunet(), LoraSpec(2, 2.0, "attention"), tmp_path / f"on_{name}.safetensors"
        attach(network, spec)
        save_adapter(path, network, spec, BaseModel.of(model, name))
        return path

    on_half, on_wide = read_adapter(adapter_on(load_model(half), "half")), read_adapter(adapter_on(wide, "wide"))
    check_fits(on_half, wide.model, "wide", BaseModel.of(wide))
    check_fits(on_wide, load_model(half).model, "half", BaseModel.of(load_model(half)))
    refused = rf"trained on half .*, not on narrow \(sha256 {rows['narrow'].sha256[:12]}…\)"
    with pytest.raises(UsageError, match=refused):
        check_fits(on_half, narrow.model, "narrow", BaseModel.of(narrow))


def test_a_file_whose_safetensors_header_cannot_be_read_is_damaged_whatever_its_length_says(tmp_path, env, capsys):
    """Text named .safetensors (its "header length" is ~8e18 bytes), a length of 2**62 before a '{', and one longer
    than the file: each is the one "damaged" line, exit 2 — with --arch or without, and never "--arch is required"
    for a file that is not readable weights at all. The library's own error was exit 1."""
    import struct

    text = tmp_path / "text.safetensors"
    text.write_text("hello world")
    huge, over = tmp_path / "huge.bin", tmp_path / "over.safetensors"
    huge.write_bytes(struct.pack("<Q", 2**62) + b"{}" + b" " * 64)
    over.write_bytes(struct.pack("<Q", 10**6) + b"{}")
    for file in (text, huge, over):
        for arch in (["--arch", "mm-unet"], []):
            assert run(["models", "import", str(file), "--name", "x", *arch]) == 2, (file, arch)
            err = capsys.readouterr().err
            assert err.startswith(f"mmgen: error: {file}: damaged, or not a safetensors file ("), err
            assert err.count("\n") == 1
    assert ModelCache().record("x") is None


def test_a_file_that_cannot_be_a_torch_checkpoint_is_damaged_before_any_talk_of_arch(tmp_path, env, capsys):
    """Text, random bytes or nothing named .pt: not a zip archive (torch.save) nor a pickle (its legacy format), told
    from the first bytes, exit 2 with or without --arch. Without it the import asked for --arch, which no value
    could answer; with it, text was `KeyError: 101` (exit 1) and random bytes "holds Python objects"."""
    text, noise, empty = tmp_path / "text.pt", tmp_path / "noise.pt", tmp_path / "empty.pt"
    text.write_text("hello world, these are not weights\n")
    noise.write_bytes(b"\x13" + os.urandom(4095).replace(b"'", b"x"))  # a ' in its first bytes: repr's b"..."
    empty.write_bytes(b"")
    for file, why in ((text, "it begins with b'hello wo': neither a zip archive nor a pickle"),
                      (noise, "it begins with b'\\x13"), (empty, "it is empty")):
        for arch in ([], ["--arch", "mm-unet"]):
            assert run(["models", "import", str(file), "--name", "x", *arch]) == 2, (file, arch)
            err = capsys.readouterr().err
            assert err.startswith(f"mmgen: error: {file}: damaged, or not a PyTorch checkpoint ({why}"), err
            assert err.count("\n") == 1
    # What torch.save writes, zip or legacy, still gets as far as asking which architecture it is.
    for legacy in (False, True):
        saved = tmp_path / f"saved-{legacy}.pt"
        torch.save({"w": torch.ones(2)}, saved, _use_new_zipfile_serialization=not legacy)
        assert run(["models", "import", str(saved), "--name", "x"]) == 2
        assert capsys.readouterr().err == f"mmgen: error: --arch is required to import {saved} as the new model 'x'\n"
    assert ModelCache().record("x") is None


def test_a_legacy_checkpoint_declaring_a_tensor_bigger_than_memory_says_so_not_the_check_torch_failed(
    tmp_path, env, capsys
):
    """torch.save's legacy format declares each storage's size in its pickle; one claiming 2^40 floats makes
    torch's allocator fail ("[enforce fail at alloc_cpu.cpp] err == 0. DefaultCPUAllocator: can't allocate
    memory …"), which read as `(err == 0)`. Nothing is allocated: the claim is far past any machine's memory."""
    saved = tmp_path / "lying.pt"
    torch.save({"w": torch.ones(4)}, saved, _use_new_zipfile_serialization=False)
    data = saved.read_bytes()
    numel = data.index(b"K\x04", data.index(b"cpu"))  # BININT1 4: the storage's declared element count
    saved.write_bytes(data[:numel] + b"\x8a\x06" + (2**40).to_bytes(6, "little") + data[numel + 2 :])  # LONG1 2^40

    assert run(["models", "import", str(saved), "--name", "x", "--arch", "mm-unet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mmgen: error: {saved}: damaged, or not a PyTorch checkpoint ("), err
    assert "err == 0" not in err and err.count("\n") == 1, err


def test_a_zip_that_is_not_a_whole_torch_checkpoint_is_one_damaged_line(tmp_path, env, capsys):
    """A torch.save zip cut short (its first 1000 bytes: a download that stopped), a zip holding no data.pkl, one
    whose data.pkl is garbage and one whose tensor data is cut short: the one "damaged" line, exit 2, with or without
    --arch. They were torch's RuntimeErrors (a paragraph on miniz, or "[enforce fail at inline_container.cc:180]"),
    or garbage said to "hold Python objects", or "--arch is required"."""
    import zipfile

    whole = tmp_path / "whole.pt"
    torch.save({"w": torch.zeros(1000)}, whole)
    cut, foreign, garbage, short_data = (tmp_path / f"{n}.pt" for n in ("cut", "foreign", "garbage", "short"))
    cut.write_bytes(whole.read_bytes()[:1000])
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with zipfile.ZipFile(whole) as source, zipfile.ZipFile(garbage, "w") as bad, zipfile.ZipFile(short_data, "w") as short:
        for name in source.namelist():
            data = source.read(name)
            bad.writestr(name, b"garbage garbage" if name.endswith("data.pkl") else data)
            short.writestr(name, data[:20] if name.endswith("data/0") else data)
    index = "a zip archive cut short or damaged: its index is missing or unreadable"
    for file, why, archs in ((cut, index, ([], ["--arch", "mm-unet"])),
                             (foreign, "a zip archive without the data.pkl that torch.save writes", ([], ["--arch", "mm-unet"])),
                             (garbage, "Unsupported operand 103", (["--arch", "mm-unet"],)),
                             (short_data, "record size (20 bytes) does not match expected size (4000 bytes", (["--arch", "mm-unet"],))):
        for arch in archs:
            assert run(["models", "import", str(file), "--name", "x", *arch]) == 2, (file, arch)
            err = capsys.readouterr().err
            assert err.startswith(f"mmgen: error: {file}: damaged, or not a PyTorch checkpoint ({why}"), err
            assert err.count("\n") == 1 and err.endswith(" (get the file again)\n"), err
    assert ModelCache().record("x") is None


def test_an_import_of_what_is_not_a_file_says_what_it_is(tmp_path, env, capsys):
    """A folder, a device and a symlink loop were all "no such file"; the words are those the media commands use."""
    loop = tmp_path / "loop.safetensors"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    cases = {".": "it is a directory", str(tmp_path): "it is a directory", str(loop): "it is a symlink loop",
             "/dev/zero": "it is not a regular file (a device, pipe or socket)",
             str(tmp_path / "gone.pt"): "no such file"}
    for file, says in cases.items():
        assert run(["models", "import", file, "--name", "x", "--arch", "mm-unet"]) == 2, file
        assert capsys.readouterr().err == f"mmgen: error: {file}: {says}\n"
    for file, says in [(str(loop), "it is a symlink loop"), ("/dev/zero", "it is not a regular file (a device, pipe"),
                       (str(tmp_path / "gone.safetensors"), "no such model file")]:  # as a model to sample with
        assert run(["generate", "-m", file, "-o", str(tmp_path / "out")]) == 2, file
        assert capsys.readouterr().err.startswith(f"mmgen: error: {file}: {says}")


class _BadSector(io.FileIO):
    """A file whose bytes from `bad` on cannot be read: the disk fails under them (EIO), as a dying one does."""

    def __init__(self, path, bad: int):
        super().__init__(path, "rb")
        self.bad = bad

    def _check(self, size: int) -> None:
        if self.tell() + size > self.bad:
            raise OSError(errno.EIO, "Input/output error")

    def read(self, size=-1):
        self._check(size if size is not None and size >= 0 else self.bad + 1)
        return super().read(size)

    def readinto(self, buffer):
        self._check(len(buffer))
        return super().readinto(buffer)


def test_a_checkpoint_on_a_failing_disk_is_the_machines_trouble_not_a_damaged_file(tmp_path, env, monkeypatch,
                                                                                    capsys):
    """An I/O error under a .pt being imported is `cannot read FILE: Input/output error`, exit 1 (the disk, not the
    file: it may read well elsewhere), as for any input mmgen reads; torch.load's read met it and was said as
    `damaged, or not a PyTorch checkpoint ([Errno 5] …)`, exit 2. Met while hashing the file, it was an `OSError`."""
    import builtins

    import torch.serialization

    saved = tmp_path / "saved.pt"
    torch.save({"w": torch.zeros(1000)}, saved)
    expected = (f"mmgen: error: cannot read {saved}: Input/output error (the disk holding it failed; copy it from a "
                "good one and run it again)\n")
    with monkeypatch.context() as patched:  # the bytes fail only as torch.load reads them
        patched.setattr(torch.serialization, "_open_file", lambda name, mode: torch.serialization._open_buffer_reader(
            _BadSector(name, bad=100)))
        assert run(["models", "import", str(saved), "--name", "x", "--arch", "mm-unet"]) == 1
        assert capsys.readouterr().err == expected
    opened = builtins.open
    with monkeypatch.context() as patched:  # for every reader: hashing the file meets it first
        patched.setattr(builtins, "open", lambda file, mode="r", *args, **kwargs: _BadSector(file, bad=100)
                        if Path(file) == saved and mode == "rb" else opened(file, mode, *args, **kwargs))
        assert run(["models", "import", str(saved), "--name", "x", "--arch", "mm-unet"]) == 1
        assert capsys.readouterr().err == expected
    assert ModelCache().record("x") is None


def test_a_safetensors_on_a_failing_disk_is_a_line_not_a_sigbus(tmp_path, env, tiny, monkeypatch, capsys):
    """An I/O error under a .safetensors' tensors, read through the library's memory map, was a SIGBUS: the process
    killed without a line (exit -7). Read with plain reads, it is `cannot read FILE: Input/output error`, exit 1, as
    for a .pt — at import and as a model is loaded. Here the bytes fail only as they are read into the tensors
    (readinto; the file hashes well: a sector read once may fail the next time)."""
    import builtins

    class FailingTensors(io.FileIO):
        def readinto(self, buffer):
            raise OSError(errno.EIO, "Input/output error")

    file = tmp_path / "model.safetensors"
    file.write_bytes(tiny.read_bytes())
    opened = builtins.open
    monkeypatch.setattr(builtins, "open", lambda name, mode="r", *args, **kwargs: FailingTensors(name, "rb")
                        if Path(name) == file and mode == "rb"
                        else opened(name, mode, *args, **kwargs))
    assert run(["models", "import", str(file), "--name", "x"]) == 1
    assert capsys.readouterr().err == (f"mmgen: error: cannot read {file}: Input/output error (the disk holding it "
                                       "failed; copy it from a good one and run it again)\n")
    with pytest.raises(StorageError, match=f"cannot read {file}: Input/output error"):
        load_model(file)
    assert ModelCache().record("x") is None


def test_a_model_this_user_may_not_read_is_not_damaged(tmp_path, env, tiny, unreadable, capsys):
    """A cached model whose weights or record this user may not read (EACCES) is `cannot read FILE: permission denied`,
    exit 1, to `models verify` and to a load — the file is whole, for all mmgen knows. It was a bare `PermissionError`
    line, and an unreadable record `damaged: unreadable cache record (Permission denied) (run mmgen models rm x)`,
    exit 2: advice to remove good weights. A model file by path: safetensors' words were `No such file or directory`."""
    assert run(["models", "import", str(tiny), "--name", "x"]) == 0
    folder, own = Path(env["MMGEN_CACHE"]) / "models" / "x", tmp_path / "own.safetensors"
    own.write_bytes(tiny.read_bytes())
    capsys.readouterr()
    hint = " (the file is whole as far as mmgen knows: give this user read access to it)\n"
    unreadable(folder / "model.safetensors", own)
    for args, denied in [(["models", "verify"], folder / "model.safetensors"),
                         (["generate", "-m", "x", "-o", str(tmp_path / "out")], folder / "model.safetensors"),
                         (["generate", "-m", str(own), "-o", str(tmp_path / "out")], own)]:
        assert run(args) == 1, args
        assert capsys.readouterr().err == f"mmgen: error: cannot read {denied}: permission denied{hint}", args
    unreadable(folder / "model.json")
    assert run(["models", "verify", "x"]) == 1
    assert capsys.readouterr() == ("", f"mmgen: error: cannot read {folder / 'model.json'}: permission denied{hint}")
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "model.json", "model.safetensors"]


def test_a_pickle_cut_inside_a_class_name_is_damaged_not_a_python_object(tmp_path, env, capsys):
    """A download cut inside a class name (`torch._utils._rebu`) left weights_only an unknown global to refuse, and
    mmgen said the file "holds Python objects other than tensors" (a file to distrust, not one to fetch again); cut
    just after one, it was `IndexError: index out of range`, exit 1. Both are cut short, told from the pickle's
    own instructions (nothing unpickled), in the legacy format and in a zip archive's data.pkl. A whole pickle
    naming a foreign class still says so."""
    import zipfile

    legacy, zipped = tmp_path / "legacy.pt", tmp_path / "zipped.pt"
    torch.save({"w": torch.zeros(4)}, legacy, _use_new_zipfile_serialization=False)
    torch.save({"w": torch.zeros(4)}, zipped)
    whole = legacy.read_bytes()
    inside, after = whole.index(b"_rebuild_tensor") + 5, whole.index(b"_rebuild_tensor") + 19
    cut = [tmp_path / "inside.pt", tmp_path / "after.pt", tmp_path / "zip-inside.pt"]
    cut[0].write_bytes(whole[:inside])
    cut[1].write_bytes(whole[:after])
    with zipfile.ZipFile(zipped) as source, zipfile.ZipFile(cut[2], "w") as damaged:
        for name in source.namelist():
            data = source.read(name)
            damaged.writestr(name, data[: data.index(b"_rebuild_tensor") + 5] if name.endswith("data.pkl") else data)
    for file in cut:
        assert run(["models", "import", str(file), "--name", "x", "--arch", "mm-unet"]) == 2, file
        assert capsys.readouterr().err == (f"mmgen: error: {file}: damaged, or not a PyTorch checkpoint (its pickle is "
                                           "cut short) (get the file again)\n")
    changed = tmp_path / "changed.pt"  # a byte of a class name changed: data.pkl fails its CRC-32
    data = bytearray(zipped.read_bytes())
    data[data.index(b"_rebuild_tensor") + 3] = ord("X")
    changed.write_bytes(data)
    assert run(["models", "import", str(changed), "--name", "x", "--arch", "mm-unet"]) == 2
    assert capsys.readouterr().err == (f"mmgen: error: {changed}: damaged, or not a PyTorch checkpoint (Bad CRC-32 "
                                       "for file 'zipped/data.pkl') (get the file again)\n")
    foreign = tmp_path / "foreign.pt"
    torch.save({"w": CreatesAFile(tmp_path / "ran")}, foreign, _use_new_zipfile_serialization=False)
    assert run(["models", "import", str(foreign), "--name", "x", "--arch", "mm-unet"]) == 2
    assert "refused to load: it holds Python objects other than tensors" in capsys.readouterr().err
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("protocol", [3, 4, 5])
@pytest.mark.parametrize("zipped", [True, False])
def test_a_checkpoint_saved_with_another_pickle_protocol_loads_as_torch_loads_it(tmp_path, env, capsys, protocol,
                                                                                 zipped):
    """`torch.save(..., pickle_protocol=4)` is a whole checkpoint that torch.load(weights_only=True) may not read
    (PyTorch 2.13 refuses protocol 4's FRAME instruction): mmgen reads what torch reads — here as far as the
    architecture check — and says of the rest which protocol it is and how to save it again. It said "damaged,
    or not a PyTorch checkpoint (Unsupported operand 149)": get the file again, which would not help."""
    import warnings

    file = tmp_path / "saved.pt"
    torch.save({"w": torch.zeros(4)}, file, pickle_protocol=protocol, _use_new_zipfile_serialization=zipped)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns of a protocol other than 2 as it reads one
            torch.load(file, weights_only=True)
    except pickle.UnpicklingError:
        torch_reads = False
    else:
        torch_reads = True
    assert run(["models", "import", str(file), "--name", "x", "--arch", "mm-unet"]) == 2
    err = capsys.readouterr().err
    if torch_reads:
        assert err.startswith(f"mmgen: error: {file} does not fit the architecture: "), err  # its keys, checked
    else:
        assert err == (f"mmgen: error: {file}: saved with pickle protocol {protocol}, whose FRAME instruction "
                       f"torch.load(weights_only=True) does not read (PyTorch {torch.__version__}) (load it and save "
                       "it again with torch.save's default pickle_protocol (2))\n")


@pytest.mark.parametrize("protocol", [0, 1])
@pytest.mark.parametrize("zipped", [True, False])
def test_a_checkpoint_saved_with_pickle_protocol_0_or_1_says_so_and_what_to_do(tmp_path, env, capsys, protocol,
                                                                               zipped):
    """`torch.save(sd, f, pickle_protocol=1, _use_new_zipfile_serialization=False)` writes its magic number as text
    (no PROTO before it): it read as "neither a zip archive nor a pickle"; zipped, it asked for --arch first. Neither
    is read by torch.load(weights_only=True); protocol 0 by no torch.load at all (its storages are named in text),
    so the way out is to save the weights again, not to load them."""
    file = tmp_path / "old.pt"
    torch.save({"w": torch.zeros(4)}, file, pickle_protocol=protocol, _use_new_zipfile_serialization=zipped)
    # The first instruction torch meets that it does not read: the legacy format's magic number (LONG), or in the
    # archive the state dict (DICT) or a tensor's requires_grad (INT: protocols 0 and 1 have no True/False)
    instruction = ("DICT" if protocol == 0 else "INT") if zipped else "LONG"
    again = ("load it and save it again" if protocol else
             "no torch.load reads protocol 0 back: save the weights again, from where they were made,")
    for arch in ([], ["--arch", "mm-unet"]):
        assert run(["models", "import", str(file), "--name", "x", *arch]) == 2, arch
        assert capsys.readouterr().err == (
            f"mmgen: error: {file}: saved with pickle protocol {protocol}, whose {instruction} instruction "
            f"torch.load(weights_only=True) does not read (PyTorch {torch.__version__}) ({again} with torch.save's "
            "default pickle_protocol (2))\n")
    assert ModelCache().record("x") is None


def _with_config(model: Path, target: Path, **changes) -> Path:
    """A copy of the mmgen model file `model` whose metadata config has `changes` laid over it; the same weights."""
    tensors = safetensors.torch.load_file(str(model))
    with safetensors.safe_open(str(model), framework="pt") as f:
        metadata = f.metadata()
    metadata["config"] = json.dumps({**json.loads(metadata["config"]), **changes})
    safetensors.torch.save_file(tensors, str(target), metadata=metadata)
    return target


@pytest.mark.parametrize("changes, says", [
    ({"video_size": [8, 3, 2048, 2048]}, "video_size (F, C, H, W) must be within (1..1024, 1..4, 1..1024, 1..1024)"),
    ({"video_size": [100000, 3, 100000, 100000]}, "got [100000, 3, 100000, 100000]"),
    ({"video_size": [1024, 3, 1024, 1024]}, "video_size F × C × H × W must be at most 16,777,216 values"),
    ({"audio_size": [1, 64000000]}, "audio_size (C, L) must be within (1..4, 1..4,194,304), got [1, 64000000]"),
    ({"cross_attention_windows": [1, 4, 10**9]}, "every cross_attention_windows must be between 1 and the 16 frames"),
    ({"sample_rate": 2**31 - 1}, "sample_rate must be between 1,000 and 192,000 Hz, got 2147483647"),
    ({"fps": 1e-6}, "fps must be between 1 and 240, got 1e-06"),
])
def test_a_config_for_clips_no_machine_could_sample_is_refused_at_import_and_at_load(tmp_path, env, tiny, capsys,
                                                                                     changes, says):
    """A model file's config decides the size of every sample drawn from it: video_size [8, 3, 2048, 2048] had
    `generate` allocate 5.3 GB and fail with a RuntimeError (exit 1) naming no file, and [100000, 3, 100000, 100000]
    was imported into the cache; windows of 10⁹ frames asked for 1.6 TB, a 2³¹ Hz rate a 2 GB resampling, and an fps
    of 10⁻⁶ divided by zero. Refused with the file's name, exit 2, before anything is allocated."""
    bad = _with_config(tiny, tmp_path / "big.safetensors", **changes)
    assert run(["models", "import", str(bad), "--name", "big"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mmgen: error: {bad}: metadata config: ") and says in err and err.count("\n") == 1, err
    assert ModelCache().record("big") is None
    with pytest.raises(ConfigError, match=f"{bad}: metadata config: "):
        load_model(bad)  # what `generate -m FILE` loads


def test_a_zip_whose_entries_would_inflate_past_its_size_is_refused_before_torch_reads_it(tmp_path, env, capsys):
    """A "zip bomb" .pt (19 MB, one deflated entry of 4 GiB) had torch.load inflate it all (4.5 GB) before anything
    refused it. torch.save stores its entries as they are: an archive with an entry compressed, or with entries
    claiming more bytes than the file holds, is not its file, told from the index before torch.load. Here small:
    a deflated entry, and a stored one whose index claims 1 TB."""
    import zipfile

    whole = tmp_path / "whole.pt"
    torch.save({"w": torch.zeros(1000)}, whole)
    deflated, lying = tmp_path / "deflated.pt", tmp_path / "lying.pt"
    with zipfile.ZipFile(whole) as source, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as bomb:
        for name in source.namelist():
            method = zipfile.ZIP_DEFLATED if "/data/" in name else zipfile.ZIP_STORED
            bomb.writestr(name, source.read(name), compress_type=method)
    data = bytearray(whole.read_bytes())
    entries = [i for i in range(len(data)) if data[i : i + 4] == b"PK\x01\x02"]  # the central directory's
    entry = next(i for i in entries if data[i + 46 : i + 46 + int.from_bytes(data[i + 28 : i + 30], "little")]
                 .endswith(b"/data/0"))  # the tensor's bytes: its uncompressed size (offset 24) made 4 GB
    data[entry + 24 : entry + 28] = (2**32 - 2).to_bytes(4, "little")
    lying.write_bytes(data)
    for file, why in ((deflated, "its entry whole/data/0 is compressed, which torch.save never does"),
                      (lying, "a zip archive whose entries claim 4,294,")):
        for arch in ([], ["--arch", "mm-unet"]):
            assert run(["models", "import", str(file), "--name", "x", *arch]) == 2, (file, arch)
            err = capsys.readouterr().err
            assert err.startswith(f"mmgen: error: {file}: damaged, or not a PyTorch checkpoint ({why}"), err
            assert err.count("\n") == 1
    assert ModelCache().record("x") is None


def test_a_weight_whose_dtype_is_not_floating_point_is_refused_naming_it(tmp_path, env, tiny, capsys):
    """One tensor's dtype changed F32 → I32 in the header (the same shape and bytes): `generate -m FILE` failed in
    torch's load_state_dict, exit 1, with four lines ending "Only Tensors of floating point and complex dtype can
    require gradients". One line naming the file and the tensor, exit 2, at import and at load."""
    data = tiny.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    name = sorted(k for k in header if k != "__metadata__")[0]
    assert header[name]["dtype"] == "F32"
    header[name]["dtype"] = "I32"
    text = json.dumps(header, separators=(",", ":")).encode()
    bad = tmp_path / "ints.safetensors"
    bad.write_bytes(data[:8] + text.ljust(length) + data[8 + length :])
    says = (f"mmgen: error: {bad}: not a model's weights: {name} holds int32 values, where every weight is "
            "floating-point (get the file again)\n")
    assert run(["models", "import", str(bad), "--name", "ints"]) == 2
    assert capsys.readouterr().err == says
    assert run(["generate", "-m", str(bad), "--steps", "1", "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == says
    assert ModelCache().record("ints") is None and not (tmp_path / "out").exists()


def test_an_extra_integer_entry_is_an_unexpected_key_not_a_damaged_weight(tmp_path, env, tiny, capsys):
    """A training script's state dict with a step counter (or BatchNorm's num_batches_tracked) beside the weights:
    the file is whole, it only holds one entry the architecture has none of. It was "not a model's weights: step
    holds int64 values … (get the file again)", sending the user after a download that would change nothing."""
    state = dict(safetensors.torch.load_file(tiny))
    state["step"] = torch.tensor(1000)
    extra = tmp_path / "with_step.safetensors"
    safetensors.torch.save_file(state, extra, metadata=read_header(tiny).metadata)
    assert run(["models", "import", str(extra), "--name", "stepped"]) == 2
    err = capsys.readouterr().err
    assert "does not fit the architecture: 1 unexpected: step" in err and "get the file again" not in err, err


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_pickle_naming_a_foreign_global_is_said_to_hold_python_objects_however_it_is_packed(tmp_path, env, capsys,
                                                                                               protocol):
    """A plain pickle.dump named .pt, a bare pickle calling os.system, and torch.save's zip with its data.pkl
    swapped for one: each refused and never run, but said to be "a pickle, but not one torch.save wrote" or
    "damaged (Weights only load failed)" — a file to fetch again — where it is one to distrust. Told from the
    pickle's instructions (GLOBAL, or protocol 4's STACK_GLOBAL through the memo), nothing unpickled."""
    import zipfile

    payload = {"w": CreatesAFile(tmp_path / "ran")}
    plain, zipped = tmp_path / "plain.pt", tmp_path / "zipped.pt"
    plain.write_bytes(pickle.dumps(payload, protocol=protocol))
    torch.save({"w": torch.zeros(2)}, zipped)
    swapped = tmp_path / "swapped.pt"
    with zipfile.ZipFile(zipped) as source, zipfile.ZipFile(swapped, "w") as evil:
        for entry in source.infolist():
            evil.writestr(entry, pickle.dumps(payload, protocol=protocol) if entry.filename.endswith("data.pkl")
                          else source.read(entry))
    bare = tmp_path / "bare.pt"  # GLOBAL written by hand: the module and name os.system lives under
    bare.write_bytes(b"\x80\x02c" + os.system.__module__.encode() + b"\nsystem\nX\x04\x00\x00\x00true\x85R.")
    legacy = tmp_path / "legacy.pt"  # torch.save's own legacy format around the object
    torch.save(payload, legacy, _use_new_zipfile_serialization=False)
    for file, names in ((plain, "io.open"), (swapped, "io.open"), (bare, f"{os.system.__module__}.system"),
                        (legacy, "io.open")):
        for arch in (["--arch", "mm-unet"], []):  # without --arch it was "--arch is required", as if one would do
            assert run(["models", "import", str(file), "--name", "x", *arch]) == 2, (file, arch)
            assert capsys.readouterr().err == (
                f"mmgen: error: {file}: refused to load: it holds Python objects other than tensors ({names}) (mmgen "
                "only opens checkpoints with torch.load(weights_only=True); get the file from a trusted source)\n")
    assert not (tmp_path / "ran").exists()
