"""--debug, the advice every unexpected error ends with: taken wherever a user adds it, and not given once it is on."""

from __future__ import annotations

import pytest
from cli_here import run_here
from mmgen_cli import mmgen_env

from mmgen.cli import _register
from mmgen.cli.app import command


def _commands(group, path=()) -> dict[tuple[str, ...], object]:
    subs = getattr(group, "commands", {})
    return {path: group} if not subs else {p: c for name, sub in subs.items() for p, c in _commands(sub, (*path, name)).items()}


def test_every_command_takes_debug_after_its_name(tmp_path):
    """`mmgen generate … --debug` was `No such option: --debug`: only the root took it (`mmgen --debug generate`)."""
    _register()
    commands = _commands(command())
    assert ("generate",) in commands and ("models", "list") in commands
    for path, each in commands.items():
        assert any("--debug" in param.opts for param in each.params), path
    for path in [("generate",), ("models", "list")]:
        done = run_here(*path, "--debug", "--help", env=mmgen_env(tmp_path))
        assert done.returncode == 0 and "--debug" in done.stdout, (path, done.stderr)


@pytest.fixture
def a_bug(monkeypatch):
    """An internal failure that is no mmgen error: what "run with --debug for the traceback" is for."""
    def broken():
        raise RuntimeError("simulated internal bug")

    monkeypatch.setattr("mmgen.weights.catalog.catalog", broken)


@pytest.mark.parametrize("args", [("--debug", "models", "list", "--json"), ("models", "list", "--json", "--debug")])
def test_with_debug_an_unexpected_error_shows_its_traceback_and_no_advice_to_add_it(a_bug, tmp_path, args):
    done = run_here(*args, env=mmgen_env(tmp_path))
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.splitlines()[-1] == "mmgen: error: RuntimeError: simulated internal bug"


def test_without_debug_an_unexpected_error_is_one_line_that_says_how_to_see_more(a_bug, tmp_path):
    done = run_here("models", "list", "--json", env=mmgen_env(tmp_path))
    assert done.returncode == 1
    assert done.stderr == "mmgen: error: RuntimeError: simulated internal bug (run with --debug for the traceback)\n"


@pytest.mark.parametrize("error, says", [
    (MemoryError(), "mmgen: error: out of memory (close other programs"),
    (ImportError("libavcodec.so.61: cannot open shared object file"),
     "mmgen: error: mmgen could not start: ImportError: libavcodec.so.61: cannot open shared object file"),
])
def test_a_failure_while_the_commands_load_is_one_line_exit_1(tmp_path, monkeypatch, error, says):
    """A MemoryError or an ImportError while mmgen imported its subcommands (cli._register) came out of `run` as a
    Python traceback: before the command's own error handling. It is one line as every failure is (the machine's
    memory: disk_failures.resource_failure's words), exit 1 — and the traceback with --debug."""
    import importlib

    load = importlib.import_module

    def failing(name, *args, **kwargs):
        if name == "mmgen.cli.generate":
            raise error
        return load(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", failing)
    done = run_here("models", "list", env=mmgen_env(tmp_path))
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(says), line
    debug = run_here("models", "list", "--debug", env=mmgen_env(tmp_path))
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
