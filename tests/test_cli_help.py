"""`--help` is the manual a user reads first: every command says what it does and every option what it is for."""

from __future__ import annotations

import re

import pytest
import typer
from cli_here import run_here
from mmgen_cli import REPO, mmgen_env, run_mmgen

from mmgen.cli import _register
from mmgen.cli.app import command as mmgen_command
from mmgen.cli.options import DEVICE_METAVAR


def commands() -> dict[str, object]:
    """Every runnable command by its full name ("generate", "models import", ...), as click runs them."""
    _register()
    found: dict[str, object] = {}

    def walk(command, path: tuple[str, ...]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, (*path, name))
        else:
            found[" ".join(path)] = command

    walk(mmgen_command(), ())
    return found


COMMANDS = commands()


def test_the_media_commands_are_all_there():
    assert {"generate", "soundtrack", "animate", "doctor"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_and_each_of_its_options_has_help(name):
    command = COMMANDS[name]
    assert (command.help or "").strip(), f"`mmgen {name}` has no description"
    undocumented = [p.name for p in command.params if not (getattr(p, "help", None) or "").strip()]
    assert undocumented == [], f"`mmgen {name}`: no help for {undocumented}"


@pytest.mark.parametrize("name", ["generate", "soundtrack", "animate", "doctor", "finetune"])
def test_help_shows_each_option_with_its_explanation(name, tmp_path):
    done = run_here(name, "--help", env=mmgen_env(tmp_path, COLUMNS="200", NO_COLOR="1"))
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # rich wraps and pads; compare words
    for param in COMMANDS[name].params:
        if getattr(param, "hidden", False):  # a flag's older name, still taken (finetune's --gradient-checkpointing)
            continue
        if isinstance(param, typer.core.TyperOption):
            assert param.opts[0] in text, f"{param.opts[0]} missing from `mmgen {name} --help`"
        first_words = " ".join(param.help.split()[:3])
        assert first_words in text, f"help of {param.name} missing from `mmgen {name} --help`"


OTHER_PROGRAMS = ("torchrun",)  # an example's flags before `mmgen` are its launcher's (torchrun --nproc_per_node 4)


def _flags_named(text: str) -> list[tuple[str, str]]:
    """Each `--flag` a help text names, with the command line it belongs to: what follows `mmgen` (or a launcher)
    in its own example — a `quoted` one, or one of an epilog's examples between ·s — else "" (the command's own)."""
    named = []
    for found in re.finditer(r"(?<![\w-])--[a-z][\w-]*", text):
        before = text[: found.start()]
        example = before[before.rindex("`") + 1:] if before.count("`") % 2 else before.split("·")[-1] if "·" in text else ""
        program = re.findall(rf"\b(?:mmgen|{'|'.join(OTHER_PROGRAMS)})\b[^-]*", example)
        named.append((found.group(), program[-1].strip() if program else ""))
    return named


def test_every_flag_a_help_names_is_one_its_command_takes():
    """`generate --help` said "--sampler, --steps and --guidance override single fields" of --preset: generate has no
    --guidance (`No such option`). A flag named in a command's help is its own, or one of the command line quoted."""
    root = mmgen_command()
    by_name = {"": root, **COMMANDS}
    texts = {"": [root.help]} | {name: [c.help, c.epilog, *(getattr(p, "help", "") for p in c.params)]
                                 for name, c in COMMANDS.items()}
    wrong = []
    for name, helps in texts.items():
        for text in filter(None, helps):
            for flag, line in _flags_named(text):
                if line.startswith(OTHER_PROGRAMS):
                    continue
                words = line.split()[1:] if line else name.split()
                path = max((" ".join(words[:i]) for i in range(len(words) + 1) if " ".join(words[:i]) in by_name), key=len)
                takes = {o for p in by_name[path].params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
                if flag not in takes:
                    wrong.append(f"`mmgen {name} --help` names {flag}, which `mmgen {path}` does not take")
    assert wrong == []


def option_blocks(command: str, tmp_path) -> dict[str, str]:
    """Each option's rows in `mmgen COMMAND --help`, from its flag to the next flag, by flag."""
    done = run_here(command, "--help", env=mmgen_env(tmp_path, COLUMNS="200", NO_COLOR="1"))
    assert done.returncode == 0, done.stderr
    return blocks_of(done.stdout)


def blocks_of(help_text: str) -> dict[str, str]:
    """option_blocks of a help text already printed."""
    blocks: dict[str, str] = {}
    flag = None
    for line in help_text.splitlines():
        words = line.strip("│╭╰─ ").split()
        if words and words[0].startswith("--"):
            flag = words[0]
        if flag is not None:
            blocks[flag] = blocks.get(flag, "") + " " + " ".join(words)
    return blocks


def test_the_sampling_options_say_their_default_is_the_models_own(tmp_path):
    """--steps showed no default: it is not one number but whatever the model's sampling settings say."""
    blocks = option_blocks("soundtrack", tmp_path)
    for flag in ("--sampler", "--steps", "--guidance", "--guidance-scale"):
        assert "[default: (the model's settings)]" in blocks[flag], blocks[flag]


def test_version_prints_the_installed_packages_version(capsys):
    from importlib.metadata import version

    from mmgen.cli import run

    assert run(["--version"]) == 0
    assert capsys.readouterr().out == f"mmgen {version('mmgen')}\n"


def test_version_with_stdout_closed_is_refused_as_every_printing_command_is(monkeypatch, capsys):
    """`mmgen --version >&-` printed nowhere and exited 0; `doctor >&-` and `--json >&-` are exit 2 with one line."""
    import sys

    from mmgen.cli import run

    monkeypatch.setattr(sys, "stdout", None)  # what Python makes of a closed descriptor 1
    assert run(["--version"]) == 2
    assert capsys.readouterr().err == ("mmgen: error: standard output is closed: there is nowhere to print "
                                       "the version\n")


def test_finetune_help_names_every_recipe_an_installed_mmgen_packs(tmp_path):
    """`--config`'s help named demo-train and demo-train-stage2 by hand: a recipe a wheel packs besides them was
    taken by `--config NAME` but never named in --help. Here an installed layout (presets/ inside the package)
    that packs a third recipe."""
    import shutil

    from mmgen.presets import training_recipes

    site = tmp_path / "site-packages"
    shutil.copytree(REPO / "mmgen", site / "mmgen", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "presets", site / "mmgen" / "presets")
    (site / "mmgen" / "presets" / "night-train.yaml").write_text("steps: 10\n")
    env = mmgen_env(tmp_path, PYTHONPATH=str(site), COLUMNS="200", NO_COLOR="1")
    # run outside the checkout: `python -m` puts the working folder first on sys.path, ahead of PYTHONPATH
    done = run_mmgen("finetune", "--help", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    recipes = sorted([*training_recipes(), "night-train"])
    assert f"A bare name is a packaged recipe: {', '.join(recipes)}." in blocks_of(done.stdout)["--config"]


def test_finetune_help_shows_the_default_of_every_setting(tmp_path):
    """The defaults shown are the training config's own, and rich markup does not swallow them."""
    from mmgen.train import FinetuneConfig

    blocks = option_blocks("finetune", tmp_path)
    config = FinetuneConfig()
    shown = {
        "--steps": config.steps, "--batch-size": config.batch_size, "--lr": config.lr, "--warmup": config.warmup,
        "--ema-decay": config.ema_decay, "--grad-clip": config.grad_clip, "--loss-weights": "video=1,audio=1",
        "--timesteps": config.timesteps, "--seed": config.seed, "--stride": "(the clip length, no overlap)",
        "--flip": "flip", "--num-workers": config.num_workers, "--save-every": config.save_every,
        "--sample-every": config.sample_every, "--probe-every": "(as --sample-every)", "--device": config.device,
        "--precision": config.precision, "--recompute": "no-recompute",
        "--from": "(demo)",
    }  # fmt: skip
    for flag, default in shown.items():
        assert f"[default: {default}]" in blocks[flag], blocks[flag]


def test_a_flag_shows_no_value_in_help(tmp_path):
    """typer's rich help gave every flag a type, `--debug <bool>`, as if it took a value."""
    from cli_here import run_here

    for command in ([], ["generate"]):
        done = run_here(*command, "--help", env=mmgen_env(tmp_path, COLUMNS="200", NO_COLOR="1"))
        assert done.returncode == 0, done.stderr
        assert "<bool>" not in done.stdout, done.stdout
    assert "STEPS [1<=x<=1000]" in done.stdout  # an option that takes a value still shows it


@pytest.mark.parametrize("name", ["generate", "soundtrack", "animate", "retake", "batch", "finetune"])
def test_a_value_s_name_says_what_it_is_and_is_not_cut_at_80_columns(tmp_path, name):
    """Numbers read `--steps <int range>`, `--seed <int range> [x>=0]`: what kind of value, not what it is; and in
    animate's and generate's narrower Sampling panel `<dpm++|ddim|ddpm|paper>` was folded over two lines and words
    of the help (`--sampler/--steps/--guida…`) cut short; finetune's `--gradient-checkpointing/--no-gradient-checkpointing`
    was `--gradient-check…  --no-gradient-c…`, its default `no-gradient-chec…`."""
    import re

    from cli_here import run_here

    done = run_here(*name.split(), "--help", env=mmgen_env(tmp_path, COLUMNS="80", NO_COLOR="1"))
    assert done.returncode == 0, done.stderr
    assert not re.search(r"<(int|float) range>", done.stdout), done.stdout
    rows = done.stdout.splitlines()
    assert not [row for row in rows if re.search(r"\S…", row)], done.stdout
    assert not [row for row in rows if re.search(r"<[^>\s]*\|[^>\s]*$", row.strip("│ "))], done.stdout  # <a|b> folded


@pytest.mark.parametrize(("given", "says"), [
    (["generate", "--steps", "1e3"], "--steps: expected an integer, got '1e3'"),
    (["generate", "-n", "x"], "--num: expected an integer, got 'x'"),
    (["generate", "--sampler", "x"], "--sampler: 'x' is not one of 'dpm++', 'ddim', 'ddpm', 'paper'"),
])
def test_a_value_an_option_cannot_take_is_refused_in_mmgen_s_words(tmp_path, given, says):
    """As settings.LIMITS speak (`--batch-size: must be at least 1, got 0`), not typer's "Invalid value for '--steps':"."""
    from cli_here import run_here

    done = run_here(*given, "-o", tmp_path / "out", env=mmgen_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"mmgen: error: {says}") and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize("group", [[], ["models"]], ids=["mmgen", "mmgen models"])
def test_a_group_without_its_command_prints_its_help_and_no_empty_error_line(group, capsys):
    """`mmgen` or `mmgen models` alone: the help on stdout and exit 2, as click and typer give a missing command —
    it was followed by `mmgen: error: ` with nothing after it."""
    from mmgen.cli import run

    assert run(group) == 2
    out, err = capsys.readouterr()
    assert f"Usage: mmgen {' '.join(group)}".replace("  ", " ") in out and "COMMAND [ARGS]" in out
    assert err == ""


def test_finetune_s_gradient_checkpointing_flags_are_still_taken_by_their_first_names(tmp_path, monkeypatch):
    """`--recompute/--no-recompute` fit an 80-column --help; the names the flag had first still set it, over a
    config file's `gradient_checkpointing` as any flag does (the training itself is not run: the config is the point)."""
    import mmgen.train

    chosen = []

    def finetune(data_dir, run_dir, config, **options):
        chosen.append(config.gradient_checkpointing)
        raise KeyError("not trained here")

    monkeypatch.setattr(mmgen.train, "finetune", finetune)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("gradient_checkpointing: true\n")
    for flags in ([], ["--no-gradient-checkpointing"], ["--no-recompute"]):
        run_here("finetune", tmp_path, "--from", "demo", "-o", tmp_path / "run", "--config", recipe, *flags,
                 env=mmgen_env(tmp_path))
    for flag in ("--gradient-checkpointing", "--recompute"):
        run_here("finetune", tmp_path, "--from", "demo", "-o", tmp_path / "run", flag, env=mmgen_env(tmp_path))
    assert chosen == [True, False, False, True, True]


def test_finetune_s_config_takes_the_switch_s_name_as_its_key_and_refuses_it_given_both_ways(tmp_path, monkeypatch):
    """`recompute: true` in a --config file sets what --recompute sets (as `gradient_checkpointing:` does); the two
    names of the switch given both ways on one command line (`--recompute --no-gradient-checkpointing`) contradict
    each other and are refused, exit 2, not won by the last; a flag's name given as a key that is no field's
    (`lora: 8`) names the key that flag sets."""
    import mmgen.train

    chosen = []

    def finetune(data_dir, run_dir, config, **options):
        chosen.append(config.gradient_checkpointing)
        raise KeyError("not trained here")

    monkeypatch.setattr(mmgen.train, "finetune", finetune)
    env = mmgen_env(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    args = ("finetune", tmp_path, "--from", "demo", "-o", tmp_path / "run", "--config", recipe)
    recipe.write_text("recompute: true\n")
    run_here(*args, env=env)
    run_here(*args, "--no-recompute", env=env)
    assert chosen == [True, False]
    recipe.write_text("recompute: true\ngradient_checkpointing: false\n")
    done = run_here(*args, env=env)
    assert (done.returncode, done.stderr.strip()) == (
        2, f"mmgen: error: {recipe}: recompute and gradient_checkpointing are one setting: give one of them")
    recipe.write_text("recompute: maybe\n")
    done = run_here(*args, env=env)
    assert (done.returncode, done.stderr.strip()) == (2, f"mmgen: error: {recipe}: recompute: expected true/false, got 'maybe'")
    recipe.write_text("lora: 8\n")
    done = run_here(*args, env=env)
    assert (done.returncode, done.stderr.strip()) == (
        2, f"mmgen: error: {recipe}: unknown key 'lora': the key of --lora is 'lora_rank'")
    recipe.write_text("")
    for flags, said in ((["--recompute", "--no-gradient-checkpointing"], "--recompute and --no-gradient-checkpointing"),
                        (["--gradient-checkpointing", "--no-recompute"], "--no-recompute and --gradient-checkpointing")):
        done = run_here(*args, *flags, env=env)
        assert (done.returncode, done.stderr.strip()) == (2, f"mmgen: error: {said} contradict each other: give one")
    assert chosen == [True, False]


def test_batch_s_summary_names_every_kind_of_job_it_takes():
    """It said `generate / soundtrack / animate jobs`, and a batch file takes `kind: retake` too."""
    from mmgen.pipelines.batch.schema import KINDS

    summary = COMMANDS["batch"].help.splitlines()[0]
    assert all(kind in summary for kind in KINDS), summary


def _option_help(command: str, flag: str) -> str:
    return next(p.help for p in COMMANDS[command].params if flag in getattr(p, "opts", ()))


def test_help_says_what_precision_and_wav_do_as_the_code_and_readme_do():
    """--precision said `fp16 on MPS` where the README (and the code: no autocast there) has fp32 with a torch before
    2.5; retake's --wav said `the new audio alone`, where its wav is the whole retaken sound."""
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert "on Apple MPS it is fp16, or fp32 with a torch before 2.5" in readme
    for command in ("generate", "soundtrack", "animate", "retake"):
        assert "fp16 on MPS (fp32 with a torch before 2.5)" in _option_help(command, "--precision"), command
    for command in ("soundtrack", "retake"):
        wav = _option_help(command, "--wav")
        assert "soundtrack's new audio (before any mix" in wav and "retake's whole sound" in wav, wav


def test_help_says_each_number_s_range_and_what_0_means_where_typer_does_not():
    """A probe read these --help lines and could not tell the seed's upper limit, what --save-every 0 and
    --probe-every 0 do, what --ema-decay, --grad-clip and --lora-alpha take, or that finetune's auto precision keeps
    a narrow model (the demo) in fp32 on a bf16 CPU, as the README says."""
    for command in ("generate", "soundtrack", "animate", "retake", "finetune"):
        seed = next(p for p in COMMANDS[command].params if "--seed" in getattr(p, "opts", ()))
        # all a generator keeps, as one range type on every command: [0<=x<=4294967295] (finetune's was [x>=0])
        assert (seed.min, seed.max) == (0, 2**32 - 1), command
    assert "0 for none but the last" in _option_help("finetune", "--save-every")
    assert "0 for none" in _option_help("finetune", "--probe-every")
    assert "above 0" in _option_help("finetune", "--lr")
    assert "at least 0 and below 1" in _option_help("finetune", "--ema-decay")
    assert "at least 0" in _option_help("finetune", "--grad-clip")
    assert "a positive number" in _option_help("finetune", "--lora-alpha")
    assert "fp32 for narrower ones such as the demo" in _option_help("finetune", "--precision")
    verify = COMMANDS["models verify"]
    assert "only the models with --model, only the adapters with --adapter" in " ".join(verify.help.split())


def test_a_group_lists_its_commands_each_in_one_paragraph_the_terminal_wraps(tmp_path):
    """typer's rich help kept a docstring's line breaks in its group's list of commands: `mmgen models --help` broke
    "the weights file mmgen⏎ loads" and "a cached⏎ file", whatever the terminal's width. Each is one paragraph."""
    done = run_here("models", "--help", env=mmgen_env(tmp_path, COLUMNS="300", NO_COLOR="1"))
    assert done.returncode == 0, done.stderr
    rows = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    assert "the sha256 of the weights file mmgen loads (and of the file it came from" in rows["list"]
    assert "a cached file that changed on disk is fetched again." in rows["pull"]
    assert "as safetensors; register a LoRA adapter under a name" in rows["import"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_name_is_cut_in_a_narrow_terminal(tmp_path, name):
    """At 40 columns typer's table cut every column short (`--na…`, `--lora-a…`, descriptions `lands…`), so a user
    could not tell which flag was which: each option's names are whole, on a line of their own if need be."""
    done = run_here(*name.split(), "--help", env=mmgen_env(tmp_path, COLUMNS="40", NO_COLOR="1"))
    assert done.returncode == 0, done.stderr
    assert not re.search(r"\S…", done.stdout), done.stdout  # cut short (generate's "clip_0000.mp4, …" is its own)
    words = set(re.findall(r"[^\s│]+", done.stdout))
    for param in COMMANDS[name].params:
        if isinstance(param, typer.core.TyperOption) and not param.hidden:
            for flag in param.opts + param.secondary_opts:
                assert flag in words, f"{flag} not whole in `mmgen {name} --help`:\n{done.stdout}"


@pytest.mark.parametrize(("name", "whole"), [
    ("animate", "[0.0<=x<=1000000000.0]"), ("finetune", "<auto|fp32|fp16|bf16>"), ("finetune", DEVICE_METAVAR),
])
def test_a_range_or_a_choice_is_never_split_mid_word_at_80_columns(tmp_path, name, whole):
    """typer folded a value's name over two lines where its column was narrower: `[0.0<=x<=100000000` / `0.0]`."""
    done = run_here(name, "--help", env=mmgen_env(tmp_path, COLUMNS="80", NO_COLOR="1"))
    assert whole in done.stdout, done.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_paragraph_of_a_command_s_description_is_one_the_terminal_wraps(tmp_path, name):
    """The docstring's line breaks were kept after its first paragraph: at 80 columns animate's "lasts exactly as
    long as the" ended a half-empty line, and "input; …" began the next."""
    import inspect

    done = run_here(*name.split(), "--help", env=mmgen_env(tmp_path, COLUMNS="400", NO_COLOR="1"))
    lines = [line.strip() for line in done.stdout.splitlines()]
    for paragraph in inspect.cleandoc(COMMANDS[name].help or "").split("\n\n"):
        assert " ".join(paragraph.split()) in lines, done.stdout


def test_animate_says_its_delivery_defaults_and_no_other_command_speaks_of_animate(tmp_path):
    """animate keeps its input's own sound unless --loudness or --sample-rate is given: its --help showed no default
    for either, while generate's, soundtrack's and retake's --loudness spoke of animate's."""
    done = run_here("animate", "--help", env=mmgen_env(tmp_path, COLUMNS="300", NO_COLOR="1"))
    assert "[default: (the input's own sound, copied as it is)]" in done.stdout, done.stdout
    assert "[default: (the input's own rate, its sound copied as it is)]" in done.stdout, done.stdout
    for name in ("generate", "soundtrack", "retake"):
        done = run_here(name, "--help", env=mmgen_env(tmp_path, COLUMNS="300", NO_COLOR="1"))
        assert "animate" not in done.stdout, done.stdout


def _panel_layouts(help_text: str) -> dict[str, str]:
    """Each panel of a --help by its title: "stacked" where an option's description is under its names (a line of
    the panel starts 4 columns in), else "columns"."""
    layouts, title, rows = {}, None, []
    for line in help_text.splitlines():
        if opened := re.match(r"^╭─ (.*?) ─", line):
            title, rows = opened[1], []
        elif line.startswith("╰") and title:
            layouts[title] = "stacked" if any(re.match(r"^│ {5}\S", row) for row in rows) else "columns"
        else:
            rows.append(line)
    return layouts


@pytest.mark.parametrize("name", ["", "models", *sorted(COMMANDS)])
def test_every_panel_of_a_command_s_help_is_laid_out_alike(tmp_path, name):
    """At 80 columns animate's Sampling panel, finetune's Hardware panel and `models import`'s Options were each an
    option's names over its description, between panels of columns: each table chose alone. A command's panels
    now share one layout, stacked if any one of them is too wide for columns."""
    for width in ("80", "100"):
        done = run_here(*name.split(), "--help", env=mmgen_env(tmp_path, COLUMNS=width, NO_COLOR="1"))
        layouts = _panel_layouts(done.stdout)
        assert done.returncode == 0 and layouts, done
        assert len(set(layouts.values())) == 1, (width, layouts, done.stdout)


def test_help_with_stdout_closed_is_refused_as_version_is(monkeypatch, capsys):
    """`mmgen --help >&-` and `mmgen generate --help >&-` printed nowhere and exited 0; --version and every other
    command that only prints are exit 2 with one line."""
    import sys

    from mmgen.cli import run

    monkeypatch.setattr(sys, "stdout", None)  # what Python makes of a closed descriptor 1
    for args in (["--help"], ["generate", "--help"], ["models", "--help"]):
        assert run(args) == 2, args
        assert capsys.readouterr().err == ("mmgen: error: standard output is closed: there is nowhere to print "
                                           "the help\n"), args


@pytest.mark.parametrize(("name", "width", "whole"), [
    ("finetune", "30", "[default:(runs/finetune-<date>-<time>)]"),
    ("models import", "30", "(RUN/adapter.safetensorsof`mmgenfinetune--lora`)"),
    ("generate", "20", "MMGEN_DEBUG=1"),
    ("soundtrack", "20", "--guidance-scale;"),
])
def test_a_narrow_terminal_s_help_folds_a_long_word_and_cuts_nothing(tmp_path, name, width, whole):
    """Where each option's description is stacked under its names, a word longer than the line was cut with `…`:
    at 30 columns finetune's --output default read `(runs/finetune-<date>…`, at 20 `MMGEN_DEBUG…`. It is folded
    onto the next line, whole."""
    done = run_here(*name.split(), "--help", env=mmgen_env(tmp_path, COLUMNS=width, NO_COLOR="1"))
    assert done.returncode == 0 and not re.search(r"\S…", done.stdout), done.stdout
    assert max(map(len, done.stdout.splitlines())) <= int(width), done.stdout
    assert whole in re.sub(r"[\s│]", "", done.stdout), done.stdout


@pytest.mark.parametrize("name", ["soundtrack", "animate", "finetune"])
def test_help_on_an_ascii_stream_is_laid_out_as_shown(tmp_path, name):
    """`PYTHONIOENCODING=ascii mmgen soundtrack --help`: the help was laid out before its stand-ins, so each line
    with one (… as ...) pushed its box's border out of line, `3·2²⁰` read `3-2\\xc2\\xb2\\xe2\\x81\\xb0` and the
    examples' `·` separator a dash, as if an option. mmgen's own help is ASCII where nothing stands in for it, and
    what stands in is measured as shown."""
    import io

    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii", write_through=True)
    done = run_here(name, "--help", env=mmgen_env(tmp_path, COLUMNS="100", NO_COLOR="1"), stdout=stdout)
    shown = stdout.buffer.getvalue().decode("ascii")
    assert done.returncode == 0 and "\\x" not in shown and "   -   " not in shown, shown
    assert {len(line) for line in shown.splitlines() if line} == {100}, shown
    words = re.sub(r"[\s|]", "", shown)
    assert ("(A/RANK)*B*A" if name == "finetune" else "3*2^20=3,145,728") in words, shown


def test_a_columns_that_is_no_width_is_as_if_unset(tmp_path, monkeypatch):
    """`COLUMNS=0 mmgen --help` printed an empty line (rich took a width of 0 and dropped every line, as it dropped
    a run's bars, `wrote` lines and summary), and COLUMNS=² failed the command: a COLUMNS that is no positive number
    is as if unset — the terminal's width, else 80 — and is the caller's again after the command."""
    import os

    for value in ("0", "-3", "²"):
        monkeypatch.setenv("COLUMNS", value)  # the caller's, as an embedding program's environment
        done = run_here("--help", env=mmgen_env(tmp_path, NO_COLOR="1"))
        lines = done.stdout.splitlines()
        assert done.returncode == 0 and "Usage: mmgen" in done.stdout, (value, done)
        assert max(map(len, lines)) == 80 and "generate" in done.stdout, (value, done.stdout)
        assert os.environ["COLUMNS"] == value


def test_a_columns_too_wide_or_too_narrow_for_help_is_brought_within_range(tmp_path, monkeypatch):
    """`COLUMNS=99999999999 mmgen generate --help` ran out of memory (rich lays out a line as wide as it is told;
    COLUMNS=10000000 took 2 GB and 16 s), and COLUMNS=1 printed box borders and no text: a width is brought within
    20..1000 columns while the command runs, and is the caller's again after it."""
    import os

    for value, width in (("1", 20), ("99999999999", 1000)):
        monkeypatch.setenv("COLUMNS", value)
        done = run_here("generate", "--help", env=mmgen_env(tmp_path, NO_COLOR="1"))
        assert done.returncode == 0 and max(map(len, done.stdout.splitlines())) == width, (value, done)
        assert "seed" in re.sub(r"[\s|│]", "", done.stdout), (value, done.stdout)
        assert os.environ["COLUMNS"] == value
