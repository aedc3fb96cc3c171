"""Frozen dataclasses parsed from YAML once, at the edge, with strict keys and types.

`from_dict(Cls, data, where)` turns a mapping into `Cls`, rejecting unknown keys, missing required fields and
wrong types with a ConfigError that names `where` (a file, or file:line) and the dotted field path.
Supported field types: bool, int, float, str, Path, Literal, Optional/unions with None, tuple[T, ...],
tuple[T1, T2], list[T], dict[str, T] and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from mmgen.errors import ConfigError

T = TypeVar("T")

_MISSING = object()
_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file with safe_load; errors name the file (and line, where YAML knows it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e.__class__.__name__})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass `cls` from a mapping, strictly. `where` prefixes every error message."""
    return _convert(cls, data, where, "")


def to_dict(obj: Any) -> Any:
    """The inverse of from_dict: plain YAML/JSON-safe values (tuples become lists, Paths strings)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _fail(where: str, field: str, msg: str) -> typing.NoReturn:
    raise ConfigError(f"{where}: {field + ': ' if field else ''}{msg}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, where: str, field: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _fail(where, field, f"expected a mapping, got {type(value).__name__}")
        hints = get_type_hints(tp)
        known = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(map(str, value)) - set(known))
        if unknown:
            _fail(where, field, f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                  f"(allowed: {', '.join(known)})")
        kwargs = {}
        for name, f in known.items():
            sub = f"{field}.{name}" if field else name
            if name in value:
                kwargs[name] = _convert(hints[name], value[name], where, sub)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                _fail(where, sub, "required field is missing")
        try:
            return tp(**kwargs)
        except (ValueError, TypeError) as e:  # __post_init__ validation
            _fail(where, field, str(e))
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            _fail(where, field, "must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where, field)
            except ConfigError as e:
                errors.append(str(e))
        _fail(where, field, f"{value!r} is not a valid {' or '.join(_type_name(a) for a in args if a is not type(None))}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            _fail(where, field, f"{value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            _fail(where, field, f"expected a list, got {type(value).__name__}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                _fail(where, field, f"expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, where, f"{field}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        items = [_convert(item, v, where, f"{field}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            _fail(where, field, f"expected a mapping, got {type(value).__name__}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_convert(kt, k, where, field): _convert(vt, v, where, f"{field}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            _fail(where, field, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(where, field, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads "5e-4" (no dot) as a string; users mean the number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(where, field, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(where, field, f"expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            _fail(where, field, f"expected a path, got {value!r}")
        return Path(value)
    raise TypeError(f"from_dict cannot handle field type {tp!r}")
