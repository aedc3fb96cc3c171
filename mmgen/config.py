"""Frozen dataclasses parsed from YAML once, at the edge, with strict keys and types.

YAML is read through mmgen.yaml_files (safe and bounded); JSON records through `read_record`/`parse_json` here.
`from_dict(Cls, data, where)` turns a mapping into `Cls`, rejecting unknown keys (each with the nearest known one), missing required fields and
wrong types with a ConfigError that names `where` (a file, or file:line) and the dotted field path.
Supported field types: bool, int, float, str, Path, Literal, Optional/unions with None, tuple[T, ...],
tuple[T1, T2], list[T], dict[str, T] and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import functools
import json
import numbers
import os
import re
import stat
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from mmgen.disk_failures import read_failure
from mmgen.errors import ConfigError, InvalidSetting

T = TypeVar("T")

# How a number is written to mmgen, the same on the command line and in a YAML file: the ASCII digits 0-9 with a
# sign or not; a float's also with a point and an exponent, or inf/nan (which the settings refuse as not finite).
# int() and float() alone would also take " 5", "1_000", full-width and other scripts' digits; YAML 1.1 would read
# 0x10, 0b101, 017 (octal) and 1:30 (base 60) as numbers.
WHOLE_NUMBER = re.compile(r"[-+]?[0-9]+")
LEADING_ZERO = re.compile(r"[-+]?0[0-9]+")  # 017: a whole number YAML 1.1 read as octal
NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[-+]?(inf|infinity|nan)", re.IGNORECASE)


def parse_number(text: str, kind: type[int] | type[float]) -> Any:
    """`text` as `kind` (int or float) where it is written as WHOLE_NUMBER or NUMBER says; ValueError otherwise
    (NumberTooLong for a whole number of more digits than int() takes)."""
    if not (WHOLE_NUMBER if kind is int else NUMBER).fullmatch(text):
        raise ValueError(f"not a plain decimal {kind.__name__}: {text!r}")
    try:
        return kind(text)
    except ValueError:  # written as a number: past int()'s digit limit (4300, sys.get_int_max_str_digits)
        raise NumberTooLong("a number too long") from None


class NumberTooLong(ValueError):
    """parse_number's refusal of a whole number too long for int(), in the words a YAML file's is refused in
    (yaml_files): a flag or batch key passes it on as it is, not as "expected an integer" (it is one)."""


class OlderNumber(str):
    """A plain scalar of a YAML file that older mmgen versions read (as YAML 1.1 does) as a number other than its
    decimal reading, or that has none: `017` (octal 15), `0x10`, `0b101`, `1_000`, `1:00` (base 60), `1_000.5`.
    It stays the text it is (a string field takes it as written, a time range, a name), and a number field refuses
    it, saying what older versions read it as and what to write (`refusal`): a changed meaning is never silent."""

    older: int | float  # what YAML 1.1 read it as

    def __new__(cls, text: str, older: int | float) -> OlderNumber:
        self = super().__new__(cls, text)
        self.older = older
        return self

    def refusal(self) -> str:
        said = f"older mmgen versions read it as {self.older!r}"
        digits = self.replace("_", "")
        if LEADING_ZERO.fullmatch(digits) and int(digits) != self.older:  # 017, 0_17: octal to YAML 1.1, 17 decimal
            return (f"{self}: a leading zero is ambiguous ({said.replace('as ', 'as octal ', 1)}); write {self.older!r}, "
                    f"or {int(digits)!r}")
        return f"{self}: not a plain decimal number ({said}); write {self.older!r}"


def unquoted(value: Any) -> str:
    """What YAML made of a value that was meant as a string, for the line refusing it: a number or true/false
    read from unquoted text says so, and to quote it."""
    if isinstance(value, (bool, int, float)):
        what = "true/false" if isinstance(value, bool) else "a number"
        return f"{value!r}, {what} (to mean the text, put it in quotes: \"{value}\")"
    return repr(value)


MAX_RECORD_BYTES = 2**20  # a cache, adapter or trust record is a few kB: anything bigger is not one


def read_record(cls: type[T], path: Path, what: str, hint: str) -> T | None:
    """A dataclass kept as a JSON file (a cache or trust record): None when there is none, a ConfigError naming
    the file as damaged, with `hint`, when it is not one — read through `read_small_file` (a regular file, not a
    link, at most MAX_RECORD_BYTES) and `parse_json`, so a record that is a link to /dev/zero, a pipe, a huge
    file or JSON nested a million deep is that record's one line, never a hang or a crash."""
    try:
        raw = read_small_file(path, MAX_RECORD_BYTES, follow=False)
    except FileNotFoundError:
        return None
    except OSError as e:
        if (failure := read_failure(path, e)) is not e:  # the machine's trouble (a failing disk, no permission)
            raise failure from None
        raise ConfigError(f"{path}: unreadable {what} ({e.strerror or e})", hint=hint) from None
    except NotASmallFile as e:
        raise ConfigError(f"{path}: damaged {what}: {e.problem}", hint=hint) from None
    return from_dict(cls, parse_json(raw, str(path), what, hint), str(path))


class NotASmallFile(ConfigError):
    """What `read_small_file` found instead of a small regular file (`problem`), as one line naming the file."""

    def __init__(self, path: str | os.PathLike, problem: str):
        super().__init__(f"{path}: {problem}")
        self.problem = problem


def read_small_file(path: str | os.PathLike, limit: int, follow: bool = True) -> bytes:
    """The bytes of a small file mmgen reads whole (a record, a memo, a sidecar): opened without blocking (a named
    pipe cannot hang it), then only a regular file of at most `limit` bytes is read, to the limit and never
    further. Anything else is a ConfigError naming `path`; unless `follow`, a symlink is one too (a link in the
    cache is no record of mmgen's). FileNotFoundError where there is nothing; other OS errors as they are."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NotASmallFile(path, "it is a symlink loop" if follow else "it is a symlink, not a file of mmgen's") from None
        if e.errno == errno.ENXIO:  # a socket
            raise NotASmallFile(path, "it is not a regular file (a device, pipe or socket)") from None
        raise
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise NotASmallFile(path, "it is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise NotASmallFile(path, "it is not a regular file (a device, pipe or socket)")
        if info.st_size > limit:
            raise NotASmallFile(path, f"too big ({info.st_size:,} bytes; at most {limit:,} expected)")
        raw = b""
        while len(raw) <= limit and (chunk := os.read(fd, limit + 1 - len(raw))):
            raw += chunk
    finally:
        os.close(fd)
    if len(raw) > limit:
        raise NotASmallFile(path, f"too big (more than {limit:,} bytes expected)")
    return raw


def parse_json(text: str | bytes, where: str, what: str = "file", hint: str | None = None) -> Any:
    """The one way mmgen parses JSON that came from a file (a record, a weights file's metadata, a sidecar):
    text that is not UTF-8, not JSON, holding a number too long for int(), or nested too deeply to parse (RecursionError) is a ConfigError naming
    `where` as a damaged `what`, with `hint`."""
    try:
        return json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except UnicodeDecodeError:
        problem = "not UTF-8 text"
    except RecursionError:
        problem = "JSON nested too deeply"
    except json.JSONDecodeError as e:
        problem = f"not valid JSON: {e}"
    except ValueError:  # an integer past 4300 digits: int()'s words are advice for Python's users
        problem = "a number too long"
    raise ConfigError(f"{where}: damaged {what}: {problem}", hint=hint) from None


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass `cls` from a mapping, strictly. `where` prefixes every error message."""
    return _convert(cls, data, where, "", text=True)


def converted(tp: Any, value: Any, where: str, key: str, *, text: bool = False) -> Any:
    """One value as a field of type `tp` takes it, an error naming it `where: key` (a key that is another name of
    the field). `text`: the value was read from a file's text, as from_dict's are, where YAML 1.1 leaves a number
    in scientific notation without a dot (`5e-4`) a string, taken as the number; from Python a str is no number."""
    return _convert(tp, value, where, key, text)


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


def json_text(value: Any, **options: Any) -> str:
    """json.dumps of what other programs read (sidecars, --json), in ASCII: a file name's byte that is not UTF-8,
    which Python holds as a lone surrogate (surrogateescape), is written as that surrogate's escape — byte 0xff as
    \\udcff — so the name comes back exact (`os.fsencode(json.loads(line)["mp4"])`) and never reads as another
    file's: text \\xff would also be the name of a file literally called `\\xff`. Messages for people show such a
    byte as \\xff (terminal.path_text); the README says the rule where it shows a sidecar."""
    return json.dumps(value, **options)


def nearest_key(key: Any, known: tuple[str, ...]) -> str | None:
    """The known key nearest to a mistyped one (`seeed` → seed), a flag's spelling read as its key's (`--seed`,
    `guidance-scale` → guidance_scale), as the command line's "Did you mean --seed?" offers it; None where none is
    near."""
    close = difflib.get_close_matches(str(key).lstrip("-").replace("-", "_"), known, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_keys(keys: list[Any], allowed: tuple[str, ...]) -> str:
    """The line refusing unknown `keys` of a YAML mapping, each with the allowed key it is nearest to."""
    if len(keys) == 1:
        close = nearest_key(keys[0], allowed)
        return f"unknown key {keys[0]!r}{f'; did you mean {close}?' if close else ''} (allowed: {', '.join(allowed)})"
    said = [f"{key!r}{f' (did you mean {close}?)' if (close := nearest_key(key, allowed)) else ''}" for key in keys]
    return f"unknown keys {', '.join(said)} (allowed: {', '.join(allowed)})"


class ConfigProblems(ConfigError):
    """Several values of one file refused at once, each its own line (`problems`: `FILE: key: why`, as a batch
    file's problems are listed), so that one run of the command says them all; its own line counts them."""

    def __init__(self, where: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{where}: {len(problems)} problems found, nothing was run")


class FieldError(ConfigError):
    """A value from_dict/converted cannot take, its line naming `where` and the dotted `field`; `reason` is the
    line without them (what the settings classes say in their own InvalidSetting)."""

    def __init__(self, where: str, field: str, reason: str):
        super().__init__(f"{where}: {field + ': ' if field else ''}{reason}")
        self.field = field
        self.reason = reason


def _fail(where: str, field: str, msg: str, cause: Exception | None = None) -> typing.NoReturn:
    raise FieldError(where, field, msg) from cause


def kind_text(tp: Any) -> str:
    """What a value of type `tp` looks like, for a line refusing another ("expected an integer or 'model'")."""
    if get_origin(tp) is Literal:
        words = [v for v in get_args(tp) if not isinstance(v, bool)] or list(get_args(tp))  # False: YAML's `off`
        return " or ".join(map(repr, words))
    if get_origin(tp) in (list, tuple):
        return "a list"
    if get_origin(tp) is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", Path: "a path"}.get(
        tp, getattr(tp, "__name__", str(tp)))


@functools.cache
def _fields_of(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """A dataclass's field types and its fields set by __init__, by name: read once per class (get_type_hints
    evaluates every annotation; a batch of 10,000 jobs asked it for each job's settings, ~40% of its planning)."""
    return get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls) if f.init}


def _convert(tp: Any, value: Any, where: str, field: str, text: bool) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(tp, type) and isinstance(value, tp):  # built already (from Python), and checked as it was
            return value
        if not isinstance(value, dict):
            _fail(where, field, f"expected a mapping, got {type(value).__name__}")
        hints, known = _fields_of(tp)
        unknown = sorted(set(map(str, value)) - set(known))
        if unknown:
            _fail(where, field, unknown_keys(unknown, tuple(known)))
        kwargs = {}
        for name, f in known.items():
            sub = f"{field}.{name}" if field else name
            if name in value:
                kwargs[name] = _convert(hints[name], value[name], where, sub, text)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                _fail(where, sub, "required field is missing")
        try:
            return tp(**kwargs)
        except (ValueError, TypeError) as e:  # __post_init__ validation (an InvalidSetting: its cause, for its flag)
            if field and isinstance(e, InvalidSetting) and e.field in known:  # a nested one's field by its dotted key
                _fail(where, "", e.said_as(f"{field}.{e.field}"), e)  # (`model.config: …`), as an unknown key is
            _fail(where, field, str(e), e)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            _fail(where, field, "must not be null")
        arms = [arg for arg in args if arg is not type(None)]
        if len(arms) == 1:  # optional: what the one type says (a nested field's own line), as when not optional
            return _convert(arms[0], value, where, field, text)
        for arg in arms:
            try:
                return _convert(arg, value, where, field, text)
            except ConfigError:
                continue
        if isinstance(value, OlderNumber) and {int, float} & set(arms):
            _fail(where, field, value.refusal())
        _fail(where, field, f"expected {' or '.join(kind_text(arg) for arg in arms)}, got {value!r}")
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
            return tuple(_convert(a, v, where, f"{field}[{i}]", text) for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        items = [_convert(item, v, where, f"{field}[{i}]", text) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            _fail(where, field, f"expected a mapping, got {type(value).__name__}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_convert(kt, k, where, field, text): _convert(vt, v, where, f"{field}.{k}", text) for k, v in value.items()}
    if isinstance(value, OlderNumber):  # a number field refuses it, other fields take its text, as written
        if tp in (int, float):
            _fail(where, field, value.refusal())
        value = str(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            _fail(where, field, f"expected true/false, got {value!r}")
        return value
    if tp is int:  # a whole number, never a bool or a float (7.0 too: as the command line's flags refuse it)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            _fail(where, field, f"expected an integer, got {value!r}")
        return int(value)  # numpy's integers too, from Python
    if tp is float:
        if text and isinstance(value, str) and NUMBER.fullmatch(value):
            return float(value)  # YAML 1.1 reads 5e-4 (no dot), -.5 and inf as text: the flag's forms are numbers
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            _fail(where, field, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, os.PathLike) and isinstance(os.fspath(value), str):
            return os.fspath(value)  # a pathlib.Path given from Python, for a field that names a file (a model)
        if not isinstance(value, str):
            _fail(where, field, f"expected a string, got {unquoted(value)}")
        return value
    if tp is Path:
        if not isinstance(value, (str, os.PathLike)):
            _fail(where, field, f"expected a path, got {value!r}")
        return Path(value)
    raise TypeError(f"from_dict cannot handle field type {tp!r}")
