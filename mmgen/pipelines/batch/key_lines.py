"""Where each key of a batch file is: its line, and where a `<<: *name` merge gave it from, for the problems
mmgen.pipelines.batch.schema finds. Line numbers come from composing the YAML (node marks) and constructing the
data from the same nodes, so there is one parse and every key keeps its line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mmgen.yaml_files import compose_yaml


class Lines(dict):
    """The line of every mapping key and list item by its path, e.g. ("jobs", 2, "mix"); a key a `<<: *name`
    merged in is at its mapping's line (the job's), and `merged` says where it came from ("<<: *gen, line 6")."""

    def __init__(self):
        super().__init__()
        self.merged: dict[tuple, str] = {}

    def said(self, path: tuple, message: str, where: str) -> str:
        """`message` (`where: KEY…`) about the key at `path`, saying where a merged key came from."""
        return from_anchor(message, where, str(path[-1]), self.merged.get(path))


def from_anchor(message: str, where: str, key: str, origin: str | None) -> str:
    """`message` (`where: KEY…`) about `key`, saying where it came from when a `<<:` merge gave it (`origin`:
    "<<: *gen, line 6"): `where: KEY (from <<: *gen, line 6)…`."""
    if origin is None or not message.startswith(f"{where}: {key}"):
        return message
    return f"{where}: {key} (from {origin}){message[len(f'{where}: {key}'):]}"


def compose(path: Path) -> tuple[Any, Lines]:
    """The YAML's data, and the line of every mapping key and list item by its path (Lines). A syntax error stops
    here (nothing after it can be read reliably)."""
    data, node = compose_yaml(path)
    lines = Lines()
    if node is not None:
        _locate(node, (), lines)
    return data, lines


def _locate(node: yaml.Node, path: tuple, lines: Lines) -> None:
    if isinstance(node, yaml.MappingNode):
        merged = getattr(node, "merged_from", {})  # yaml_files._Loader.flatten_mapping: merged keys come first
        for key, value in node.value:  # the last of a key is its value, as in the data
            at = (*path, key.value)
            if id(key) in merged:
                lines[at] = node.start_mark.line + 1
                lines.merged[at] = f"{merged[id(key)]}, line {key.start_mark.line + 1}"
            else:
                lines[at] = key.start_mark.line + 1
                lines.merged.pop(at, None)
            _locate(value, at, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _locate(item, (*path, i), lines)
