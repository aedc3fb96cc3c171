"""The model registry: the shipped entries, user entries from $MMGEN_PRESETS and the config dir, strict
schema errors that name the file and field, and `base:` inheritance."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from cli_here import run_here
from mmgen_cli import mmgen_env

from mmgen.errors import ConfigError, ModelNotFound
from mmgen.models.config import MMUNetConfig, SRUNetConfig
from mmgen.weights import ModelCache, availability, load_model, load_registry

SHA = "ab" * 32
OFFICIAL_SOURCES = (
    "https://drive.google.com/drive/folders/1Mno4A3BUXELAdX4m650CJ1VfuMVlkz5p",
    "https://pan.baidu.com/s/1vJIZCHBVlmcq9np1ytstbQ?pwd=vqon",
)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Isolated registry folders: ($MMGEN_PRESETS/models, user config dir models/)."""
    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    presets, user = tmp_path / "presets" / "models", tmp_path / "config" / "mmgen" / "models"
    presets.mkdir(parents=True)
    user.mkdir(parents=True)
    return presets, user


def test_shipped_entries_describe_the_official_models_and_the_demo(dirs):
    registry = load_registry()

    assert {"demo", "landscape", "landscape-sr", "aist++", "aist++-sr"} <= set(registry.names())
    for base in ("landscape", "aist++"):
        entry, sr = registry.get(base), registry.get(f"{base}-sr")
        assert (entry.arch, entry.config, entry.upsampler) == ("mm-unet", MMUNetConfig(), f"{base}-sr")
        assert (sr.arch, sr.config) == ("sr-unet", SRUNetConfig())
        assert not entry.needs_import and not sr.needs_import and entry.weights.format == "pt"
        assert entry.weights.sha256 is None  # no checksum is published for the Drive files: trusted on first use
        assert entry.weights.drive.folder_url == OFFICIAL_SOURCES[0]
        assert (entry.weights.parameters, sr.weights.parameters) == (133_675_524, 311_027_910)
        assert all(link in entry.source for link in OFFICIAL_SOURCES)
        # Their own settings finish in minutes; `--preset paper` is the paper's run.
        assert (entry.sampling.sampler, entry.sampling.steps) == ("paper", 20)
        assert entry.sampling.conditional.steps <= 50
        assert entry.sampling.conditional.guidance in ("replacement", "gradient")
        assert (sr.sampling.sampler, sr.sampling.steps) == ("ddim", 25)
    demo = registry.get("demo")
    assert demo.weights.bundled == "demo.safetensors" and demo.config is None  # its file carries the config
    assert demo.weights.bundled_path.parent.name == "assets"
    expected = "bundled" if demo.weights.bundled_path.is_file() else "bundled (missing)"
    assert availability("demo", demo, ModelCache()) == expected


def test_models_list_shows_every_source_of_weights(dirs, tmp_path):
    presets, _ = dirs
    (presets / "mine.yaml").write_text(
        f"base: demo\nweights: {{urls: [https://example.org/m.safetensors], sha256: {SHA}}}\n"
    )

    result = run_here("models", "list", "--json", env=mmgen_env(tmp_path))

    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows["landscape"]["status"] == "downloadable"
    assert rows["landscape"]["size"] == 4 * 133_675_524 and rows["landscape"]["size_estimated"]
    assert rows["landscape-sr"]["size"] == 4 * 311_027_910
    assert rows["mine"]["status"] == "downloadable"
    assert rows["demo"]["status"] in ("bundled", "bundled (missing)")


def test_user_entries_add_models_and_override_shipped_ones(dirs):
    presets, user = dirs
    (presets / "extra.yaml").write_text("base: landscape\ndescription: from MMGEN_PRESETS\n")
    (user / "landscape.yaml").write_text(
        f"arch: mm-unet\nconfig: {{}}\nweights: {{urls: [https://mirror.example/L.pt], sha256: {SHA}, format: pt}}\n"
    )
    registry = load_registry()

    assert registry.get("extra").description == "from MMGEN_PRESETS"
    assert registry.get("landscape").weights.urls == ("https://mirror.example/L.pt",)
    assert registry.files["landscape"] == user / "landscape.yaml"
    assert registry.get("extra").weights.urls == (
        "https://mirror.example/L.pt",
    )  # base resolves the override


def test_base_inherits_everything_then_overrides_deeply(dirs):
    presets, _ = dirs
    (presets / "tuned.yaml").write_text("base: landscape\nconfig: {dropout: 0.1}\nsampling: {steps: 30}\n")
    (presets / "tuned2.yaml").write_text("base: tuned\ndescription: second generation\n")
    (presets / "hosted.yaml").write_text(
        f"base: demo\nweights: {{urls: [https://example.org/ft.safetensors], sha256: {SHA}}}\n"
    )
    registry = load_registry()

    tuned = registry.get("tuned2")
    assert tuned.config == dataclasses.replace(MMUNetConfig(), dropout=0.1)
    assert (tuned.upsampler, tuned.weights.format, tuned.description) == (
        "landscape-sr",
        "pt",
        "second generation",
    )
    assert tuned.sampling == dataclasses.replace(registry.get("landscape").sampling, steps=30)
    hosted = registry.get("hosted")  # a user-hosted fine-tune in three lines
    assert hosted.weights.bundled is None and hosted.weights.sha256 == SHA  # weights are replaced, not merged
    assert hosted.sampling == registry.get("demo").sampling and hosted.config is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("arch: mm-unet\ncolour: red\n", "unknown key 'colour'"),
        ("arch: transformer\n", "arch: 'transformer' is not one of"),
        ("arch: mm-unet\nsampling: {steps: many}\n", "sampling.steps: expected an integer"),
        ("arch: mm-unet\nsampling: turbo\n", "sampling: unknown preset 'turbo'"),
        ("arch: mm-unet\nconfig: {model_chanels: 64}\n", "config: unknown key 'model_chanels'"),
        ("arch: sr-unet\nconfig: {model_channels: 100}\n", "config: model_channels must be a multiple of 32"),
        ("arch: mm-unet\nweights: {urls: [https://x.org/a.pt]}\n", "weights: sha256 is required"),
        (f"arch: mm-unet\nweights: {{urls: [http://x.org/a], sha256: {SHA}}}\n", "weights: unsupported url"),
        ("arch: mm-unet\nweights: {sha256: 123}\n", "weights.sha256: expected a string, got 123, a number"),
        ("arch: mm-unet\nweights: {size: 0}\n", "weights: size must be a positive number of bytes"),
        ("arch: mm-unet\nweights: {format: pt}\n", "config: required for format pt"),
        ("arch: mm-unet\nupsampler: demo\n", "upsampler: 'demo' is not an sr-unet entry"),
        ("base: nowhere\n", "base: unknown model 'nowhere'"),
        ("base: landscpe\n", "did you mean landscape"),
        ("base: mine\n", "base: inheritance cycle mine -> mine"),
        ("- just\n- a list\n", "expected a mapping"),
        ("arch: [mm-unet\n", "invalid YAML"),
    ],
)
def test_schema_errors_name_the_file_and_field(dirs, text, message):
    presets, _ = dirs
    (presets / "mine.yaml").write_text(text)
    registry = load_registry()  # one invalid entry is not the end of the registry: it refuses where it is used
    assert "mine" in registry and "mine" not in registry.names() and "demo" in registry.names()
    with pytest.raises(ConfigError, match=f"^{presets / 'mine.yaml'}.*{message}".replace("+", r"\+")):
        registry.get("mine")


def test_an_inheritance_cycle_through_two_files_is_reported(dirs):
    presets, _ = dirs
    (presets / "a.yaml").write_text("base: b\n")
    (presets / "b.yaml").write_text("base: a\n")
    with pytest.raises(ConfigError, match="inheritance cycle"):
        load_registry().get("a")


@pytest.mark.parametrize("child, base", [("a-child", "z-base"), ("z-child", "a-base")])
@pytest.mark.parametrize("fault, field", [("weights: {format: pt}\n", "config: required for format pt"),
                                          ("upsampler: demo\n", "upsampler: 'demo' is not an sr-unet entry")])
def test_an_entry_on_a_broken_base_names_the_base_file_and_field_whatever_the_read_order(dirs, child, base, fault,
                                                                                        field):
    """A child read before its broken base merged the base's fields and was refused at its own file with the
    inherited fault (`a-child.yaml: config: required…`); read after it, as "its base is broken". Both orders: the
    latter, naming the base's file and field."""
    presets, _ = dirs
    (presets / f"{base}.yaml").write_text(f"arch: mm-unet\n{fault}")
    (presets / f"{child}.yaml").write_text(f"base: {base}\n")
    registry = load_registry()
    with pytest.raises(ConfigError) as refused:
        registry.get(child)
    assert str(refused.value).startswith(f"{presets / child}.yaml: base: {base!r} is broken: {presets / base}.yaml: "
                                         f"{field}")


def test_one_broken_user_entry_refuses_where_it_is_used_and_nowhere_else(tmp_path):
    """An invalid downloaded preset (`format: pt` without `config`) made every command exit 2, the bundled demo's
    `generate` too: it is refused where it is named, listed as damaged, and everything else works."""
    env = mmgen_env(tmp_path)
    models = tmp_path / "presets" / "models"
    models.mkdir(parents=True)
    (models / "evil.yaml").write_text("arch: mm-unet\nweights: {format: pt}\n")
    (models / "child.yaml").write_text("base: evil\n")
    said = f"{models / 'evil.yaml'}: config: required for format pt"
    for args, where in ((["models", "pull", "evil"], said), (["models", "info", "evil"], said),
                        (["models", "info", "child"], f"child.yaml: base: 'evil' is broken: {said}")):
        refused = run_here(*args, env=env)
        assert refused.returncode == 2 and where in refused.stderr, args
    listed = run_here("models", "list", "--json", env=env)
    assert listed.returncode == 0
    rows = {row["name"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows["evil"]["status"] == "damaged" and said in rows["evil"]["description"]
    assert rows["demo"]["status"] == "bundled"
    assert run_here("models", "info", "demo", env=env).returncode == 0  # as `generate` reads it (~10 s to run)


def test_unknown_and_unimported_models_say_what_to_do(dirs, monkeypatch):
    with pytest.raises(ModelNotFound, match="unknown model 'landscpe'.*did you mean landscape") as unknown:
        load_model("landscpe")
    assert unknown.value.exit_code == 2
    monkeypatch.setenv("MMGEN_OFFLINE", "1")  # not cached, and no download allowed
    with pytest.raises(ModelNotFound, match=r"mmgen models import AIST\+\+_SR.pt --name aist\+\+-sr"):
        load_model("aist++-sr")


def test_info_reports_entry_and_status(dirs, capsys):
    from mmgen.cli import run

    assert run(["models", "info", "landscape", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["status"] == "downloadable" and info["upsampler"] == "landscape-sr"
    assert info["pull_fetches"] == f"Landscape.pt from {OFFICIAL_SOURCES[0]}"
    assert "trusted_on_first_use" not in info  # nothing pulled yet
    assert info["config"]["video_size"] == [16, 3, 64, 64] and info["registry_file"].endswith(
        "landscape.yaml"
    )
    assert run(["models", "info", "nothing-like-it"]) == 2
    assert "unknown model or adapter 'nothing-like-it'" in capsys.readouterr().err


def test_the_registry_is_read_once_and_again_when_another_process_changes_its_files(dirs, monkeypatch):
    """The registry was parsed at every call (17 ms each; `models list` calls it many times): it is read once per
    process, and again when one of its files was added, replaced or removed — by another process too."""
    from mmgen.weights import registry

    presets, _ = dirs
    reads = []
    real = registry.load_yaml
    monkeypatch.setattr(registry, "load_yaml", lambda path: reads.append(path) or real(path))
    monkeypatch.setattr(registry, "_read", None)  # as a new process starts
    first = load_registry()
    assert reads and load_registry() is first and len(reads) == len(set(reads))  # read once
    mine = presets / "mine.yaml"

    def another_process(code: str) -> None:
        subprocess.run([sys.executable, "-c", f"import os, pathlib; mine = pathlib.Path({str(mine)!r}); {code}"],
                       check=True)

    another_process("mine.write_text('base: demo\\ndescription: one\\n')")
    assert load_registry().get("mine").description == "one"
    another_process("new = mine.with_suffix('.new'); new.write_text('base: demo\\ndescription: two\\n'); "
                    "os.replace(new, mine)")  # as an editor saves it: the same size, a new file in its place
    assert load_registry().get("mine").description == "two"
    another_process("mine.unlink()")
    assert "mine" not in load_registry()
