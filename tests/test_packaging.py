"""What a wheel installed into a fresh environment needs from pyproject: every package mmgen imports is one it
declares (not one that arrives only through another's dependencies), and the README's first command leaves no
file in the way of the Quickstart's next one."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_package_mmgen_imports_is_a_declared_dependency():
    """urllib3 (mmgen.weights.download) arrived only through requests: a requests that stops needing it, or an
    environment that pins it apart, breaks the import."""
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.S | re.M).group(1)
    declared = {canonical(re.match(r"[A-Za-z0-9_.-]+", spec).group()) for spec in re.findall(r'"([^"]+)"', block)}
    imported = set()
    for file in (REPO / "mmgen").rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.partition(".")[0])
    distributions = importlib.metadata.packages_distributions()
    undeclared = {module: distributions.get(module) for module in imported - set(sys.stdlib_module_names) - {"mmgen"}
                  if not declared & {canonical(d) for d in distributions.get(module, [module])}}
    assert undeclared == {}


def test_the_readmes_first_command_leaves_the_quickstarts_folder_free():
    """`mmgen generate -n 1 -o out/` wrote out/clip_0000.mp4, and the Quickstart's `mmgen generate -n 2 --seed 7
    -o out` that follows stopped with `already exists`."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first = next(line for line in readme.splitlines() if line.startswith("pip install "))
    quickstart = readme.split("## Quickstart", 1)[1]
    then = next(line for line in quickstart.splitlines() if line.startswith("$ mmgen generate "))

    def out(command: str) -> str:
        return re.search(r"mmgen generate .*?-o (\S+)", command).group(1).rstrip("/")

    assert out(first) != out(then)


def test_an_editable_install_puts_no_mmgen_folder_in_site_packages(tmp_path, monkeypatch):
    """`pip install -e .` copied the force-included presets into site-packages/mmgen/presets/, and `pip uninstall
    mmgen` left that folder: `import mmgen` then found an empty namespace package instead of failing. The editable
    wheel now holds a path file naming the checkout (whose presets/ mmgen reads) and its metadata, nothing else."""
    hatchling = pytest.importorskip("hatchling.build")
    monkeypatch.chdir(REPO)
    editable = tmp_path / hatchling.build_editable(str(tmp_path))
    with zipfile.ZipFile(editable) as wheel:
        names = wheel.namelist()
        [path_file] = [name for name in names if name.endswith(".pth")]
        assert wheel.read(path_file).decode() == str(REPO)
    assert [name for name in names if not name.startswith("mmgen-") and name != path_file] == []
