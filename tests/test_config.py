"""Configs parse strictly: a typo or a wrong type names the file and the field."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_type_hints

import pytest
from cli_here import run_here
from mmgen_cli import mmgen_env
from two_ranks import every_rank_reads_alike, in_a_torchrun_job

from mmgen.config import from_dict, to_dict
from mmgen.errors import ConfigError, UsageError
from mmgen.yaml_files import load_yaml


@dataclass(frozen=True)
class Weights:
    urls: tuple[str, ...] = ()
    sha256: str | None = None


@dataclass(frozen=True)
class Entry:
    arch: Literal["mm-unet", "sr-unet"]
    weights: Weights = field(default_factory=Weights)
    size: tuple[int, int] = (1, 2)
    scale: float = 1.0


def test_valid_mapping_round_trips():
    entry = from_dict(Entry, {"arch": "mm-unet", "weights": {"urls": ["a"]}, "size": [3, 4], "scale": 2})
    assert entry == Entry("mm-unet", Weights(("a",)), (3, 4), 2.0)
    assert from_dict(Entry, to_dict(entry)) == entry


@pytest.mark.parametrize(
    "data, message",
    [
        ({"arch": "x"}, "arch: 'x' is not one of"),
        ({}, "arch: required field is missing"),
        ({"arch": "mm-unet", "colour": 1}, "unknown key 'colour'"),
        ({"arch": "mm-unet", "weights": {"urls": "a"}}, "weights.urls: expected a list"),
        ({"arch": "mm-unet", "size": [1]}, "size: expected 2 items"),
        ({"arch": "mm-unet", "scale": True}, "scale: expected a number"),
        ({"arch": "mm-unet", "weights": {"sha256": 3}}, "weights.sha256:"),
    ],
)
def test_bad_fields_are_named(data, message):
    with pytest.raises(ConfigError, match="^models/x.yaml: " + message.replace("(", r"\(")):
        from_dict(Entry, data, "models/x.yaml")


def test_a_relative_from_file_is_kept_absolute_so_resume_works_from_any_folder(tmp_path, monkeypatch):
    """`finetune clips -o run --from base/model.safetensors`, later `cd elsewhere; finetune ../clips -o ../run
    --resume`: the run's config.yaml must name the base wherever the command runs (a LoRA run needs it)."""
    from mmgen.train.config_layers import run_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "model.safetensors").touch()
    assert run_config(tmp_path / "run", flags={"init": "base/model.safetensors"}).init == str(
        tmp_path / "base" / "model.safetensors"
    )
    assert run_config(tmp_path / "run", flags={"init": "demo"}).init == "demo"  # a registry name stays a name


def test_relative_paths_in_a_config_file_are_read_from_its_folder(tmp_path, monkeypatch):
    """A recipe kept beside its base model (`init: base.safetensors`), used from another folder: the paths in it
    mean what they mean where the file is, as in a batch file; a flag's are read from the current folder."""
    from mmgen.train.config_layers import run_config

    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "base.safetensors").touch()
    recipe = tmp_path / "recipes" / "style.yaml"
    recipe.write_text("init: base.safetensors\ncache_dir: ../clip-cache\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")

    config = run_config(tmp_path / "run", config_file=Path("../recipes/style.yaml"))
    assert config.init == str(tmp_path / "recipes" / "base.safetensors")
    assert config.cache_dir == tmp_path / "recipes" / ".." / "clip-cache"
    flagged = run_config(tmp_path / "run", config_file=recipe, flags={"cache_dir": "cache"})
    assert flagged.cache_dir == tmp_path / "elsewhere" / "cache"
    recipe.write_text("init: demo\n")
    assert run_config(tmp_path / "run", config_file=recipe).init == "demo"  # a registry name stays a name


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("device: banana", "device: 'banana' is not a device"),
        ("init: bogus", "init: unknown model 'bogus'"),
        ("init: missing/model.safetensors", "init: {folder}/missing/model.safetensors: no such model file"),
    ],
)
def test_a_bad_setting_in_a_config_file_is_blamed_on_the_file_not_a_flag(tmp_path, monkeypatch, setting, message):
    """Settings only the machine can judge (a device, a model to start from) are checked where the layers are
    merged, so the error names the file and key it came from — and the flag when it came from the command line."""
    from mmgen.train.config_layers import run_config

    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(setting + "\n")
    with pytest.raises(UsageError) as error:
        run_config(tmp_path / "run", config_file=recipe)
    assert error.value.message.startswith(f"{recipe}: {message.format(folder=tmp_path)}"), error.value.message
    with pytest.raises(UsageError, match="^--device: 'banana' is not a device"):
        run_config(tmp_path / "run", flags={"device": "banana"})
    with pytest.raises(UsageError, match="^--from: unknown model 'bogus'"):
        run_config(tmp_path / "run", flags={"init": "bogus"})


def finetune(args: list, tmp_path: Path, monkeypatch, capsys) -> tuple[int, str]:
    """`mmgen finetune ARGS` in-process, isolated from the user's cache: (exit code, its last stderr line)."""
    from mmgen_cli import mmgen_env

    from mmgen.cli import run

    for key, value in mmgen_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    code = run(["finetune", *map(str, args)])
    return code, capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("flag", "key", "value", "says"),
    [
        ("--batch-size", "batch_size", 0, "must be at least 1, got 0"),
        ("--save-every", "save_every", -1, "must be at least 0, got -1"),
        ("--seed", "seed", -1, "must be between 0 and 4294967295, got -1"),
    ],
)
def test_a_finetune_number_out_of_range_is_worded_as_every_commands_are(tmp_path, monkeypatch, capsys, flag, key,
                                                                        value, says):
    """`--batch-size 0` says what `generate --steps 0` says ("--steps: must be between 1 and 1000, got 0"), not a
    parser's "Input should be greater than or equal to 1"; a config file's key the same, naming the file."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"{key}: {value}\n")

    assert finetune([tmp_path, flag, value, "-o", tmp_path / "run"], tmp_path, monkeypatch, capsys) == (
        2, f"mmgen: error: {flag}: {says}")
    assert finetune([tmp_path, "--config", recipe, "-o", tmp_path / "run"], tmp_path, monkeypatch, capsys) == (
        2, f"mmgen: error: {recipe}: {key}: {says}")
    assert not (tmp_path / "run").exists()


def test_a_batch_too_big_for_the_machines_memory_is_refused_before_the_run_folder_is_written(tmp_path, monkeypatch,
                                                                                             capsys):
    """`finetune clips/ --batch-size 99999999999` used to build its first batch's index list until memory ran out,
    deaf to SIGTERM, after writing the run folder. A batch larger than the clips repeats them (each copy with its
    own noise), so the clips do not bound it; a batch whose clips alone would not fit in memory is refused."""
    from finetune_clips import write_clip

    write_clip(tmp_path / "clips" / "clip.mp4", ["red"], 2.0)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("batch_size: 99999999999\n")

    for given in (["--batch-size", 99999999999], ["--config", recipe]):
        code, line = finetune([tmp_path / "clips", "--from", "demo", "-o", tmp_path / "run", "--steps", 1,
                               "--device", "cpu", *given], tmp_path, monkeypatch, capsys)
        setting = "--batch-size 99999999999" if given[0] == "--batch-size" else f"{recipe}: batch_size: 99999999999"
        assert code == 2 and line.startswith(f"mmgen: error: {setting}: a training step of this model at this batch "
                                             "takes about 2816.5 PB of memory (its clips and the activations kept "
                                             "for the backward pass), more than this machine has"), line  # not GB
        assert not (tmp_path / "run").exists()


def test_under_torchrun_a_batch_the_processes_do_not_split_is_bad_input_said_once_before_any_decoding(
    tmp_path, monkeypatch, capsys
):
    """`torchrun --nproc_per_node 3 -m mmgen finetune … --batch-size 4` decoded every clip, then each of the 3
    processes printed `ValueError: batch size 4 does not split evenly over 3 processes` and exited 1. It is the
    user's setting: refused as the settings are checked (the process count is the environment's), exit 2, said by
    rank 0 alone; a --resume at another process count is refused alike, naming the run's config.yaml."""
    from finetune_clips import write_clip

    write_clip(tmp_path / "clips" / "clip.mp4", ["red"], 2.0)
    in_a_torchrun_job(monkeypatch, 3)
    every_rank_reads_alike(monkeypatch)
    for rank, said in ((0, "mmgen: error: --batch-size 4 does not split evenly over 3 processes (give a batch size "
                           "that is a multiple of 3, or run a number of processes that divides 4)"), (1, None)):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        done = run_here("finetune", tmp_path / "clips", "--from", "demo", "-o", tmp_path / "run", "--steps", 1,
                        "--batch-size", 4, env=mmgen_env(tmp_path))
        assert (done.returncode, done.stderr) == (2, f"{said}\n" if said else "")
        assert not (tmp_path / "run").exists()
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("init: demo\nsteps: 1\nbatch_size: 4\n")
    monkeypatch.setenv("RANK", "0")
    done = run_here("finetune", tmp_path / "clips", "-o", run, "--resume", env=mmgen_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"mmgen: error: {run / 'config.yaml'}: batch_size: 4 does not split evenly over "
                                  "3 processes"), done.stderr


def test_a_finetune_config_s_unknown_keys_get_the_nearest_key_as_a_batch_file_s_do(tmp_path):
    """A batch file said `unknown key 'seeed'; did you mean seed?`; `finetune --config` (and a registry entry, and
    every YAML read into a dataclass) listed only the allowed keys, a flag's spelling (`--lr`, `batch-size`) too."""
    recipe = tmp_path / "recipe.yaml"
    args = ("finetune", tmp_path, "-o", tmp_path / "run", "--config", recipe)
    recipe.write_text("batch-size: 2\n")
    done = run_here(*args, env=mmgen_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"mmgen: error: {recipe}: unknown key 'batch-size'; did you mean batch_size? "
                                  "(allowed: init, model, "), done.stderr
    recipe.write_text("--lr: 0.001\nstepz: 3\nflavour: 1\n")
    done = run_here(*args, env=mmgen_env(tmp_path))
    assert done.stderr.startswith(f"mmgen: error: {recipe}: unknown keys '--lr' (did you mean lr?), 'flavour', "
                                  "'stepz' (did you mean steps?) (allowed: init, "), done.stderr


def test_a_finetune_config_s_number_that_older_versions_read_otherwise_says_what_to_write(tmp_path):
    """`steps: 1_000` was refused as `expected an integer, got '1_000'` and `seed: 017` read as 17, where mmgen before
    2026-12 read them (YAML 1.1) as 1000 and octal 15: each says what it was read as and what to write, as in a
    batch file (one mechanism: yaml_files marks the scalar, the field's conversion refuses it)."""
    recipe = tmp_path / "recipe.yaml"
    args = ("finetune", tmp_path, "-o", tmp_path / "run", "--config", recipe)
    for written, said in (("steps: 1_000", "steps: 1_000: not a plain decimal number (older mmgen versions read it "
                                           "as 1000); write 1000"),
                          ("seed: 017", "seed: 017: a leading zero is ambiguous (older mmgen versions read it as "
                                        "octal 15); write 15, or 17"),
                          ("lr: 1_0.5e4", "lr: expected a number, got '1_0.5e4'")):  # text to YAML 1.1 too
        recipe.write_text(written + "\n")
        done = run_here(*args, env=mmgen_env(tmp_path))
        assert (done.returncode, done.stderr) == (2, f"mmgen: error: {recipe}: {said}\n")
    for written, read in (("lr: .inf", float("inf")), ("steps: 007", 7), ("steps: 1:00", "1:00")):
        (tmp_path / "plain.yaml").write_text(written + "\n")
        assert load_yaml(tmp_path / "plain.yaml")[written.split(":")[0]] == read


def test_a_finetune_config_s_problems_are_all_said_at_once_as_a_batch_file_s_are(tmp_path):
    """`finetune --config` said only its first problem (`steps: 1_000`; fix it, run again, meet `seed: 017`); a
    batch file lists them all. Each refused value (and unknown key) is its own line, then the count, exit 2; a
    single problem is still the one error line."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("steps: 1_000\nseed: 017\nlr: 0x1\nstepz: 3\n")
    done = run_here("finetune", tmp_path, "-o", tmp_path / "run", "--config", recipe, env=mmgen_env(tmp_path))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"{recipe}: unknown key 'stepz'; did you mean steps? (allowed: init, ")
    assert lines[1:] == [
        f"{recipe}: steps: 1_000: not a plain decimal number (older mmgen versions read it as 1000); write 1000",
        f"{recipe}: seed: 017: a leading zero is ambiguous (older mmgen versions read it as octal 15); write 15, or 17",
        f"{recipe}: lr: 0x1: not a plain decimal number (older mmgen versions read it as 1); write 1",
        f"mmgen: error: {recipe}: 4 problems found, nothing was run"]


def test_a_finetune_config_s_values_out_of_range_are_said_with_its_other_problems(tmp_path):
    """Only a value of the wrong type was listed at once: `steps: 0` beside `lr: abc` said lr alone, then (fixed)
    steps, then lora_rank. A value's range (LIMITS) and its own rules are checked with its type, every one said."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("steps: 0\nlr: abc\nlora_rank: 0\n")
    done = run_here("finetune", tmp_path, "-o", tmp_path / "run", "--config", recipe, env=mmgen_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{recipe}: steps: must be at least 1, got 0",
        f"{recipe}: lr: expected a number, got 'abc'",
        f"{recipe}: lora_rank: must be at least 1, got 0",
        f"mmgen: error: {recipe}: 3 problems found, nothing was run"]


def test_a_yaml_file_of_too_many_plain_values_is_refused_while_composing_not_after(tmp_path, monkeypatch):
    """A 16 MB flow list of 8 M integers was composed whole (2 GB, minutes) before the value limit was checked;
    the nodes are now counted as they are composed, so the file is refused before its end is even read (here a
    syntax error there is never reached)."""
    from mmgen import yaml_files

    monkeypatch.setattr(yaml_files, "MAX_YAML_NODES", 1000)
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs: [" + "1," * 5000 + "1]\nbroken: [\n")
    with pytest.raises(ConfigError, match=r"jobs\.yaml: holds more than 1,000 values; refusing"):
        yaml_files.load_yaml(path)


def test_a_job_file_of_more_values_than_a_batch_needs_is_refused_in_a_line_before_it_is_read_whole(
        tmp_path, monkeypatch):
    """A job file of ~10^6 values took ~110 s of parsing before anything was said (~20 s now, by libyaml's parser).
    One past the limit is refused in one line naming the file, the limit and the way on, exit 2 (the limit is
    lowered here: 10^6 values take seconds). A 4 MB limit and 200,000 values refused 20,000-job files older
    versions read: the limits are the old ones, the reading faster."""
    from mmgen import yaml_files

    assert (yaml_files.MAX_YAML_NODES, yaml_files.MAX_YAML_BYTES) == (1_000_000, 16 * 2**20)
    monkeypatch.setattr(yaml_files, "MAX_YAML_NODES", 2000)
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("defaults: &x {seed: 1}\njobs: [" + "*x, " * 2001 + "*x]\n")
    done = run_here("batch", jobs, "--dry-run", env=mmgen_env(tmp_path))
    assert (done.returncode, done.stdout) == (2, ""), done
    assert done.stderr == (f"mmgen: error: {jobs}: holds more than 2,000 values; refusing to read it (a job holds "
                           "~10-20: split it into several files)\n")


@pytest.mark.parametrize(("text", "said"), [
    ('jobs:\n  - name: "a\\qb"\n', ":2: invalid YAML: found unknown escape character 'q'"),
    ("\ufeffoutput_dir: @out\n", ":1: invalid YAML: found character '@' that cannot start any token"),
    ("a: 1\nb: [1,\n  2\n", ":4: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ("a: 1\nb: x\x07\n", ":2: invalid YAML: unacceptable character #x0007: special characters are not allowed"),
], ids=["escape", "bom", "unclosed", "control"])
def test_a_syntax_error_is_said_in_pyyaml_s_words_at_its_line(tmp_path, text, said):
    """libyaml's parser reads the files (fast) but words errors with less (`found unknown escape character`, no
    character; a BOM shifted the column it named a character by; a control character was a ReaderError, exit 1):
    an error it finds is read again by PyYAML's own parser up to its line, and said as older versions said it."""
    from mmgen.yaml_files import load_yaml

    path = tmp_path / "jobs.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_yaml(path)
    assert str(refused.value) == f"{path}{said}"


def test_a_job_file_of_5000_jobs_is_read(tmp_path):
    """What a creator's biggest batch file holds is well within the bounds (and is read in about a second)."""
    from mmgen.yaml_files import compose_yaml

    job = "  - {kind: soundtrack, input: clips/take_%d.mp4, name: scored/take_%d, seed: %d, mix: 0.2, steps: 25}\n"
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("defaults: {model: demo, device: cpu}\njobs:\n" + "".join(job % (n, n, n) for n in range(5000)))
    data, _ = compose_yaml(jobs)
    assert len(data["jobs"]) == 5000 and data["jobs"][-1]["seed"] == 4999


@pytest.mark.parametrize("number", ["1" + "0" * 5000, "!!int 0x" + "f" * 5000, "-" + "9" * 1001],
                         ids=["decimal", "hexadecimal", "negative"])
def test_a_number_too_long_in_yaml_or_json_is_refused_at_its_line_without_python_s_advice(tmp_path, number):
    """int() refuses past 4300 digits with "use sys.set_int_max_str_digits()" (exit 1, no file named), and a long
    hexadecimal one was read, to fail where it was printed: each is "a number too long" at its file and line."""
    from mmgen.config import parse_json
    from mmgen.yaml_files import load_yaml

    path = tmp_path / "jobs.yaml"
    path.write_text(f"output_dir: out\nseed: {number}\n")
    with pytest.raises(ConfigError, match=r"jobs\.yaml:2: invalid YAML: a number too long$"):
        load_yaml(path)
    with pytest.raises(ConfigError, match=r"^meta: damaged config: a number too long$"):
        parse_json('{"num_heads": ' + "9" * 5000 + "}", "meta", "config")


def test_a_dataclass_s_field_types_are_read_once_for_every_value_built_from_it(monkeypatch):
    """from_dict evaluated every annotation of the class (typing.get_type_hints) for each value it built: for a
    batch of 10,000 jobs, ~40% of its planning. Once per class; a bad value is refused as before."""
    import mmgen.config as config_module

    asked = []
    monkeypatch.setattr(config_module, "get_type_hints", lambda cls, read=get_type_hints: asked.append(cls) or read(cls))
    config_module._fields_of.cache_clear()

    @dataclass(frozen=True)
    class Take:
        steps: int = 1
        name: str = ""

    assert [from_dict(Take, {"steps": k}) for k in (1, 2, 3)] == [Take(1), Take(2), Take(3)]
    assert asked == [Take]
    with pytest.raises(ConfigError, match=r"^take: steps: expected an integer"):
        from_dict(Take, {"steps": "two"}, "take")


@pytest.mark.parametrize(("given", "says"), [
    ({"steps": 2.5}, "steps: expected an integer, got 2.5"),  # trained 3 steps and recorded `steps: 2.5`
    ({"batch_size": True}, "batch_size: expected an integer, got True"),
    ({"lr": "1e-4"}, "lr: expected a number, got '1e-4'"),  # a TypeError comparing it
    ({"init": "demo", "model": "ArchitectureSpec"}, "model: set either init (a model to fine-tune) or model (an "
                                                   "architecture to train from scratch)"),  # a plain ValueError
    ({"lora_rank": 2, "lora_targets": "bogus"}, "lora_targets: 'bogus' is not one of 'attention', 'attention+conv', "
                                                "'all'"),
    ({"betas": (0.9, "0.99")}, "betas[1]: expected a number, got '0.99'"),
], ids=lambda value: str(value)[:30])
def test_a_finetune_config_built_from_python_is_checked_as_the_settings_classes_are(given, says):
    """FinetuneConfig took a value of any type from Python: a YAML file's or a flag's was checked (from_dict), one
    built in a program was not."""
    from mmgen.errors import InvalidSetting
    from mmgen.train.config import ArchitectureSpec, FinetuneConfig

    given = {key: ArchitectureSpec() if value == "ArchitectureSpec" else value for key, value in given.items()}
    with pytest.raises(InvalidSetting) as refused:
        FinetuneConfig(**given)
    assert str(refused.value) == says


@pytest.mark.parametrize(("given", "says"), [
    ({"arch": "sr-unet"}, "arch: 'sr-unet' is not one of 'mm-unet'"),  # an AttributeError deep in the run
    ({"config": "abc"}, "config: expected a mapping, got str"),
    ({"config": {"bogus": 1}}, "config: unknown key 'bogus'"),  # said only once the run had begun
    ({"config": {"model_channels": -3}}, "config: model_channels must be"),
], ids=lambda value: str(value)[:30])
def test_an_architecture_built_from_python_is_checked_as_it_is_built(given, says):
    """ArchitectureSpec (finetune's --scratch model) took any value from Python; a YAML file's was checked."""
    from mmgen.errors import InvalidSetting
    from mmgen.train.config import ArchitectureSpec

    with pytest.raises(InvalidSetting) as refused:
        ArchitectureSpec(**given)
    assert str(refused.value).startswith(says), str(refused.value)
    assert ArchitectureSpec(config={"fps": 8.0}).config == {"fps": 8.0}


def test_an_architecture_a_config_file_gives_is_refused_as_the_files_key(tmp_path, monkeypatch):
    """The architecture's own check names the file and its dotted key, as before it was checked when built."""
    from mmgen.train.config_layers import run_config

    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("{model: {config: {model_channels: -3}}}\n")
    with pytest.raises(UsageError) as error:
        run_config(tmp_path / "run", config_file=recipe, scratch=True)
    assert error.value.message.startswith(f"{recipe}: model.config: model_channels must be"), error.value.message


def test_a_finetune_config_takes_what_a_yaml_file_gives_as_the_fields_types():
    import numpy as np

    from mmgen.train.config import ArchitectureSpec, FinetuneConfig

    config = FinetuneConfig(init=Path("base.safetensors"), steps=np.int64(3), betas=[0.5, 0], probe_timesteps=[1, 2])
    assert (config.init, config.steps, config.betas, config.probe_timesteps) == ("base.safetensors", 3, (0.5, 0.0), (1, 2))
    assert type(config.steps) is int
    assert FinetuneConfig(model=ArchitectureSpec()).model == ArchitectureSpec()


def test_finetune_refuses_a_wrong_argument_before_any_work(tmp_path):
    """finetune(5, …) was a TypeError, config=None or a dict an AttributeError, on_event=5 a TypeError after the
    work had begun."""
    from mmgen.errors import InvalidArgument
    from mmgen.train import finetune
    from mmgen.train.config import FinetuneConfig

    config = FinetuneConfig(steps=1)
    for args, options, says in [
        ((5, tmp_path / "run", config), {}, "data_dir must be a path (a str or a pathlib.Path), got 5"),
        ((tmp_path, None, config), {}, "run_dir must be a path (a str or a pathlib.Path), got None"),
        ((tmp_path, tmp_path / "run", None), {}, "config must be a FinetuneConfig, got None"),
        ((tmp_path, tmp_path / "run", {"steps": 1}), {}, "config must be a FinetuneConfig, got {'steps': 1}"),
        ((tmp_path, tmp_path / "run", config), {"on_event": 5}, "on_event must be a function, got 5"),
        ((tmp_path, tmp_path / "run", config), {"resume": "no"}, "resume must be True or False, got 'no'"),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            finetune(*args, **options)
        assert str(refused.value) == f"finetune(): {says}"
    assert list(tmp_path.iterdir()) == []


def test_a_yaml_name_this_locale_cannot_encode_names_the_file_the_command_line_would(tmp_path):
    """Under a locale that is not UTF-8 (LC_ALL=C, PYTHONUTF8=0: Python names files in ASCII), a batch's
    `input: ünï.mp4` was reported as 'does not exist' while `mmgen soundtrack ünï.mp4` found it: the YAML's text
    was a name no file could have. It stands for its UTF-8 bytes, as an argument's do."""
    import os
    import subprocess
    import sys

    (tmp_path / "\u00fcn\u00ef\u2014.mp4").write_bytes(b"x")
    (tmp_path / "b.yaml").write_text("input: \u00fcn\u00ef\u2014.mp4\nplain: clip.mp4\n", encoding="utf-8")
    script = ("import sys; from pathlib import Path; from mmgen.yaml_files import load_yaml; "
              "data = load_yaml('b.yaml'); "
              "print(sys.getfilesystemencoding(), Path(data['input']).is_file(), data['plain'] == 'clip.mp4')")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    encoding, found, plain = done.stdout.split()
    assert encoding == "ascii" and found == "True" and plain == "True", done.stdout


def test_a_leading_tilde_in_a_config_files_paths_is_the_home_folder_and_a_runs_record_resumes_as_before(
        tmp_path, monkeypatch):
    """`init: ~/models/base.safetensors` in a --config file was read as a folder named `~` beside the file (as a
    batch file's paths were before they expanded it: `cache_dir: ~/clips` made one). A run's config.yaml records
    its paths absolute, so a `~` inside one (what such a run recorded) stays as it is, resumed or reused."""
    from mmgen.train.config_layers import run_config
    from mmgen.train.run_folder import RUN_HEADER

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "base.safetensors").touch()
    monkeypatch.setenv("HOME", str(home))
    (tmp_path / "recipes").mkdir()
    recipe = tmp_path / "recipes" / "style.yaml"
    recipe.write_text("init: ~/models/base.safetensors\ncache_dir: ~/clip-cache\n")
    monkeypatch.chdir(tmp_path)

    config = run_config(tmp_path / "run", config_file=recipe)
    assert config.init == str(home / "models" / "base.safetensors")
    assert config.cache_dir == home / "clip-cache"
    assert not (tmp_path / "recipes" / "~").exists()

    old = tmp_path / "recipes" / "~"  # where such a run's paths went, recorded absolute
    (old / "models").mkdir(parents=True)
    (old / "models" / "base.safetensors").touch()
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "config.yaml").write_text(f"{RUN_HEADER}\ninit: {old}/models/base.safetensors\ncache_dir: {old}/clip-cache\n")
    for again in (run_config(run, resume=True), run_config(tmp_path / "run", config_file=run / "config.yaml")):
        assert again.init == str(old / "models" / "base.safetensors")
        assert again.cache_dir == old / "clip-cache"


def test_a_cache_dir_written_as_windows_writes_it_is_refused_naming_the_key_and_file_not_made_as_a_folder_named_c(
        tmp_path, monkeypatch):
    """`cache_dir: C:/clips` in a --config file made a folder named `C:` beside the file and decoded the clips there
    (`C:\\clips`, one named with the backslash; `c:clips`, drive C:'s current folder, one named `c:clips`), as a batch
    file's `output_dir:` did: refused in the batch file's words, in one line naming the file and key. A folder's name
    with a colon (`12:30 take`) is a name; a run's record holds its paths absolute, as they were made, and resumes
    as before."""
    from mmgen.train.config_layers import run_config
    from mmgen.train.run_folder import RUN_HEADER

    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    drive = "on Windows; here it would be a folder named {} (write the folder as this system names it)"
    for written, said in [("C:/clips", f"'C:/clips' reads as drive C: {drive.format('C:')}"),
                          ("d:", f"'d:' reads as drive D: {drive.format('d:')}"),
                          ("c:clips", f"'c:clips' reads as drive C: {drive.format('c:clips')}"),
                          ("C:\\clips", "'C:\\\\clips': write paths with / ; \\ is not a folder separator here"),
                          ("clips\\x", "'clips\\\\x': write paths with / ; \\ is not a folder separator here")]:
        recipe.write_text(f"cache_dir: '{written}'\n")
        with pytest.raises(ConfigError) as refused:
            run_config(tmp_path / "run", config_file=recipe)
        assert str(refused.value) == f"{recipe}: cache_dir: {said}"
    recipe.write_text("cache_dir: '12:30 take'\n")
    assert run_config(tmp_path / "run", config_file=recipe).cache_dir == tmp_path / "12:30 take"

    run = tmp_path / "old-run"  # made by a run before this: its cache folder is there, named as it was
    run.mkdir()
    (run / "config.yaml").write_text(f"{RUN_HEADER}\ninit: demo\ncache_dir: '{tmp_path}/C:\\clips'\n")
    assert run_config(run, resume=True).cache_dir == tmp_path / "C:\\clips"


def test_a_cache_dir_written_as_a_bare_tilde_is_refused_as_yaml_s_null_not_taken_as_the_default_cache(
        tmp_path, monkeypatch):
    """`cache_dir: ~` in a --config file is YAML's null: it silently used the default cache, where a leading `~` is
    the home folder in every other path the file names. Refused at its line with how to write the home folder;
    `cache_dir: null` still means the default, and `'~'` is the home folder."""
    from mmgen.train.config_layers import run_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("lr: 1.0e-4\ncache_dir: ~\n")
    with pytest.raises(ConfigError) as refused:
        run_config(tmp_path / "run", config_file=recipe)
    assert str(refused.value) == (f"{recipe}:2: cache_dir: a bare ~ is YAML's null: write '~' in quotes or ~/ for the "
                                  "home folder")
    recipe.write_text("cache_dir: '~'\n")
    assert run_config(tmp_path / "run", config_file=recipe).cache_dir == tmp_path / "home"
    recipe.write_text("cache_dir: null\n")
    assert run_config(tmp_path / "run", config_file=recipe).cache_dir is None


def test_the_commands_a_packaged_recipe_shows_name_recipes_as_an_installed_mmgen_takes_them():
    """The recipes' comments said `--config presets/demo-train.yaml`, a file only a checkout has: an installed wheel
    keeps them inside site-packages. Each `--config` they show is a recipe's name, which `--config` takes anywhere."""
    import re

    from mmgen.presets import preset_dir, training_recipes

    for name in training_recipes():
        shown = re.findall(r"--config ([\w./-]+)", (preset_dir() / f"{name}.yaml").read_text())
        assert shown and set(shown) <= set(training_recipes()), (name, shown)


def test_a_config_s_paths_through_a_variable_a_backslash_or_a_drive_say_so_as_a_batch_file_s_do(tmp_path, monkeypatch):
    """`cache_dir: $HOME/cc` in a --config file made a folder named `$HOME` beside it, and `init: $HOME/m.safetensors`,
    `init: models\\base.safetensors` and `init: C:/models/…` said only `no such model file`, where a batch file says
    why. A folder to be made through a variable is refused; a model file missing through one gets the batch's hint."""
    from mmgen.train.config_layers import run_config

    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    for written in ("$HOME/cc", "${HOME}/cc", "%APPDATA%/cc", "cache/$USER", "./$HOME/cc"):
        recipe.write_text(f"cache_dir: '{written}'\n")
        with pytest.raises(ConfigError) as refused:
            run_config(tmp_path / "run", config_file=recipe)
        assert str(refused.value) == (f"{recipe}: cache_dir: {written!r}: environment variables are not expanded in a "
                                      "YAML file (write the folder out, or ~ for the home folder)")
    assert not any(tmp_path.glob("**/*[$%]*"))
    (tmp_path / "cache" / "$USER").mkdir(parents=True)  # one already there is taken as written: mmgen makes none
    for written in ("price$5", "cache/$USER"):  # a `$` not before a name is a folder's name
        recipe.write_text(f"cache_dir: '{written}'\n")
        assert run_config(tmp_path / "run", config_file=recipe).cache_dir == tmp_path / written
    variable, windows = "(environment variables are not expanded in a YAML file)", "(write paths with / ; \\ is not"
    drive = "('C:/models/base.safetensors' reads as drive C: on Windows; here it is a relative path)"
    for written, hint in [("$HOME/m.safetensors", variable), ("models\\base.safetensors", windows),
                          ("C:/models/base.safetensors", drive)]:
        recipe.write_text(f"init: '{written}'\n")
        with pytest.raises(UsageError) as refused:
            run_config(tmp_path / "run", config_file=recipe)
        assert str(refused.value).startswith(f"{recipe}: init: {tmp_path / written}: no such model file {hint}")
    with pytest.raises(UsageError) as refused:  # a flag's path is the shell's: no hint
        run_config(tmp_path / "run", flags={"init": str(tmp_path / "$HOME" / "m.safetensors")})
    assert str(refused.value).endswith(": no such model file")


def test_config_takes_a_packaged_recipe_by_its_bare_name_and_a_path_as_before(tmp_path, monkeypatch):
    """`--config presets/demo-train.yaml` worked only from a checkout: an installed wheel keeps its presets inside
    site-packages. A bare name (no folder, no .yaml) that names no file here is the packaged recipe; a file of that
    name here is still the file; an unknown name is refused naming the recipes."""
    from mmgen.presets import preset_dir
    from mmgen.train.config_layers import run_config

    monkeypatch.chdir(tmp_path)
    for name in ("demo-train", "demo-train-stage2"):
        packaged = load_yaml(preset_dir() / f"{name}.yaml")
        config = run_config(tmp_path / "run", scratch=name == "demo-train", config_file=Path(name))
        assert (config.steps, config.lr) == (packaged["steps"], packaged["lr"])

    (tmp_path / "demo-train").write_text("steps: 7\n")  # a file of that name here is read as given
    assert run_config(tmp_path / "run", config_file=Path("demo-train")).steps == 7

    refused = run_here("finetune", tmp_path, "--config", "demo-trian", "-o", tmp_path / "run2", env=mmgen_env(tmp_path))
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("mmgen: error: --config demo-trian: no such file, nor a packaged recipe "
                                      "(recipes: demo-train, demo-train-stage2)")


def test_a_run_folder_named_as_a_recipe_does_not_hide_it_and_a_dot_slash_path_is_never_a_recipe(tmp_path, monkeypatch):
    """A run made with `-o demo-train` left a folder of that name here, and `--config demo-train` then said
    `demo-train: it is a directory`; `--config ./demo-train`, meant as the file here, silently took the recipe."""
    from mmgen.presets import preset_dir
    from mmgen.train.config_layers import run_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo-train").mkdir()
    packaged = load_yaml(preset_dir() / "demo-train.yaml")
    assert run_config(tmp_path / "run", scratch=True, config_file=Path("demo-train")).steps == packaged["steps"]

    (tmp_path / "demo-train").rmdir()
    dotted = run_here("finetune", tmp_path, "--config", "./demo-train", "-o", tmp_path / "run", env=mmgen_env(tmp_path))
    assert (dotted.returncode, dotted.stderr) == (2, "mmgen: error: ./demo-train: no such file\n")  # as typed
    (tmp_path / "demo-train").mkdir()  # it said `demo-train: it is a directory`, the `./` the user typed left out
    with pytest.raises(ConfigError, match="^\\./demo-train: it is a directory$"):
        run_config(tmp_path / "run", scratch=True, config_file="./demo-train")
    (tmp_path / "demo-train").rmdir()
    (tmp_path / "mine").mkdir()
    with pytest.raises(UsageError, match="^--config mine: a folder, not a file, nor a packaged recipe \\(recipes: "):
        run_config(tmp_path / "run", config_file="mine")


def test_a_run_s_ran_on_is_read_past_only_in_its_own_record_and_only_as_a_run_writes_it(tmp_path, monkeypatch):
    """`ran_on: [1, 2]` in a run's config.yaml was taken silently by `--config RUN/config.yaml`, while a new file
    holding `ran_on:` is refused as unknown: a run's record is read past as the record a run writes, and no other.
    Its settings are kept as the run records them: `device: CPU` is cpu, as `precision: BF16` is bf16."""
    from mmgen.train.config_layers import run_config
    from mmgen.train.run_folder import RUN_HEADER

    monkeypatch.chdir(tmp_path)
    record = tmp_path / "config.yaml"
    record.write_text(f"{RUN_HEADER}clips: every setting\nsteps: 3\ndevice: CPU\nprecision: BF16\nran_on: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: ran_on: \[1, 2\] is not the record a run writes "):
        run_config(tmp_path / "run", config_file=record)
    record.write_text(record.read_text().replace("[1, 2]", "{device: cpu, precision: fp32}"))
    config = run_config(tmp_path / "run", config_file=record)
    assert (config.device, config.precision) == ("cpu", "bf16")  # picked again, not the record's fp32
    fresh = tmp_path / "mine.yaml"
    fresh.write_text("steps: 3\nran_on: {device: cpu, precision: fp32}\n")
    with pytest.raises(ConfigError, match="unknown key 'ran_on'"):
        run_config(tmp_path / "run", config_file=fresh)


def test_a_run_s_config_yaml_holds_only_settings_so_an_older_mmgen_still_resumes_it(tmp_path, monkeypatch):
    """One start of a run with this mmgen closed its config.yaml with `ran_on: {device, precision}`, a key every
    older mmgen refuses (`run/config.yaml: unknown key 'ran_on'`): the run no longer resumed with it. The record is a
    comment line; the settings are read as every mmgen reads them, unknown keys refused."""
    import torch

    from mmgen.runtime.device import Compute
    from mmgen.train.config import FinetuneConfig
    from mmgen.train.config_layers import run_config
    from mmgen.train.setup import _write_config

    monkeypatch.chdir(tmp_path)
    _write_config(tmp_path / "run", tmp_path / "clips", FinetuneConfig(steps=3), Compute(torch.device("cpu"),
                                                                                         torch.bfloat16))
    record = tmp_path / "run" / "config.yaml"
    assert from_dict(FinetuneConfig, load_yaml(record), "run/config.yaml").steps == 3  # as an older mmgen reads it
    assert record.read_text().endswith("\n# ran_on: {device: cpu, precision: bf16}\n")
    assert run_config(tmp_path / "run", config_file=record).precision == "auto"  # picked again
