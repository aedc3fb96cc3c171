"""Safe, bounded YAML: the one way mmgen reads a YAML file (a config, a registry entry, a preset, a batch file).

yaml.safe_load alone builds no Python objects from tags, but keeps the last of a key given twice without a word,
reads a file or an alias "billion laughs" of any size whole, reads `1:30` as 90 and `2001-12-14` as a date, and
says little of where it failed. Here only a small regular file is read; a key given twice, a document too big
and a number too long are refused before anything is built from them, each as one ConfigError naming the file
and, where there is one, the line. Turning what was read into frozen dataclasses is mmgen.config's job.
"""

from __future__ import annotations

import codecs
import os
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from mmgen.config import NUMBER, WHOLE_NUMBER, NotASmallFile, OlderNumber, parse_number, read_small_file
from mmgen.errors import ConfigError

MAX_YAML_BYTES = 16 * 2**20  # a config is a few kB, a batch of 5,000 jobs ~0.5 MB: anything this big is a mistake
MAX_YAML_NODES = 1_000_000  # values as written (an alias once): reading takes time by the value, ~20 µs each here
# (~100 µs without libyaml), so a hostile file takes ~20 s at worst (it took ~110 s before libyaml); a batch of
# 5,000 jobs holds ~100,000, and 20,000-job files, which older versions read, are read
MAX_YAML_VALUES = 1_000_000  # values once aliases are expanded: a "billion laughs" file is refused before use
MAX_NUMBER_CHARS = 1000  # an integer written longer than this is no setting (and past 4300 digits Python refuses it)


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file as safe_load would, through `compose_yaml`'s checks."""
    return compose_yaml(path)[0]


def compose_yaml(path: str | Path) -> tuple[Any, yaml.Node | None]:
    """The one way mmgen reads YAML (configs, registry entries, presets, batch files): safe_load's data plus
    its node tree (for line numbers). Refused with a ConfigError naming the file (and line) before anything
    is built from it: a file over MAX_YAML_BYTES, a key given twice in one mapping (YAML would silently keep
    the last), and aliases that expand to more than MAX_YAML_VALUES values or into themselves — counted on the
    node graph, where an alias is one shared node, so the check itself takes memory linear in the file. The
    nodes are counted as they are composed too (`_Loader.compose_node`), so a file of more than MAX_YAML_NODES
    values is refused once past the limit, never read whole first (a hostile one took ~110 s); an integer written
    with more than MAX_NUMBER_CHARS characters is refused at its line as "a number too long"."""
    # `path` named as given: a str keeps the `./` typed (`--config ./demo-train`), which a Path drops
    try:  # a regular file only (a pipe would block, /dev/zero never end), read to the limit, never further
        text = _text(read_small_file(path, MAX_YAML_BYTES), path)
    except NotASmallFile as e:
        raise ConfigError(f"{path}: {e.problem.replace('too big', 'too big for a YAML config', 1)}") from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError) as e:
        raise ConfigError(f"{path}: cannot read ({e.__class__.__name__})") from None
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_nodes(node, path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}{_syntax_error(e, text)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except _TooManyValues:
        raise ConfigError(f"{path}: holds more than {MAX_YAML_NODES:,} values; refusing to read it (a job holds "
                          "~10-20: split it into several files)") from None
    finally:
        loader.dispose()
    return data, node


def _text(data: bytes, path: str | Path) -> str:
    """A YAML file's bytes as text, in each encoding YAML allows: UTF-8, or UTF-16 or UTF-32 where the file starts
    with its byte order mark (Windows PowerShell 5's `>` and `Out-File` write UTF-16 LE with one) or without one
    where its first characters are ASCII, with zero bytes after each (LE) or before it (BE), as YAML 1.2 tells the
    encoding (such a file was `invalid YAML: unacceptable character #x0000`). Anything else is refused as what it
    is not, at the line of its first byte UTF-8 cannot read (it was `cannot read (UnicodeDecodeError)`), and a UTF-8
    file holding a NUL byte says so (`o\\0utput_dir: x` said `not UTF-16 text`)."""
    encoding = _encoding(data)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1  # of the first byte that cannot be read
        where = f"{path}:{line}" if encoding == "UTF-8" else str(path)
        raise ConfigError(f"{where}: not {encoding[:6]} text; save it as UTF-8") from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ConfigError(f"{path}:{line}: holds a NUL byte, which no text has; save it as UTF-8 text")
    return text


_BYTE_ORDER_MARKS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),  # UTF-32 LE's starts as UTF-16 LE's
                     (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def _encoding(data: bytes) -> str:
    """The encoding of a YAML file's bytes, by its byte order mark, else by the zero bytes around its first two
    characters where they are ASCII (one is too few: a UTF-8 file with a stray NUL as its second byte is no UTF-16),
    else UTF-8. Python's UTF-16 and UTF-32 read the byte order from the mark, and drop it."""
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            return encoding
    for size, encoding in ((4, "UTF-32"), (2, "UTF-16")):
        units = [data[at:at + size] for at in range(0, min(len(data) // size, 2) * size, size)]
        zeros = bytes(size - 1)
        if units and all(unit[0] and unit[1:] == zeros for unit in units):
            return f"{encoding}-LE"
        if units and all(unit[-1] and unit[:-1] == zeros for unit in units):
            return f"{encoding}-BE"
    return "UTF-8"


class _Loader(yaml.SafeLoader):
    """safe_load's loader, less the YAML 1.1 readings no mmgen file wants, which turned what a user wrote into
    something else: a number in another form than the command line's flags take (mmgen.config.NUMBER): `0x10`,
    `0b101`, `017` (octal: 15), `1_000`, `1:30` (base 60: 90); and `2001-12-14` as a date. They stay the strings
    they look like (a time range, a name), so a number field given one refuses it as its flag does; a whole number
    is read in decimal (`017` as 17, as `--seed 017`), and YAML's own `.inf` and `.nan` stay floats."""

    def resolve(self, kind, value, implicit):
        tag = super().resolve(kind, value, implicit)
        if kind is yaml.ScalarNode and implicit[0] and self._older_number(tag, value) is not None:
            return _OLDER  # read otherwise before (017 as octal 15, 1_000 as 1000): refused by a number field
        if kind is yaml.ScalarNode and implicit[0] and WHOLE_NUMBER.fullmatch(value):
            return _INT  # `019` too, which YAML 1.1 reads as text (an octal number gone wrong)
        if tag == _TIMESTAMP or tag == _INT or (tag == _FLOAT and not (NUMBER.fullmatch(value)
                                                                       or _NOT_FINITE.fullmatch(value))):
            return _STRING
        return tag

    def _older_number(self, tag: str, value: str) -> int | float | None:
        """What YAML 1.1 (and so older mmgen versions) read plain `value` as, where that is a number other than
        its decimal reading (parse_number's), or it has none; None otherwise (`.inf` and `.nan` stay YAML's)."""
        if tag not in (_INT, _FLOAT) or len(value) > MAX_NUMBER_CHARS or _NOT_FINITE.fullmatch(value):
            return None
        older = (super().construct_yaml_int if tag == _INT else super().construct_yaml_float)(
            yaml.ScalarNode(tag, value))
        try:
            decimal = parse_number(value, int if tag == _INT else float)
        except ValueError:
            return older
        return None if decimal == older else older

    def construct_older_number(self, node):
        return OlderNumber(node.value, self._older_number(super().resolve(yaml.ScalarNode, node.value, (True, False)),
                                                          node.value))

    anchor_names: dict[int, str] = {}  # id(node) → the name of the anchor it was given (&name)

    def compose_document(self):
        self.get_event()  # as yaml's Composer.compose_document, keeping the anchors' names for merged_from
        node = self.compose_node(None, None)
        self.get_event()
        self.anchor_names = {id(anchored): name for name, anchored in self.anchors.items()}
        self.anchors = {}
        return node

    def flatten_mapping(self, node):
        """yaml's merge of `<<: *name` keys into `node`, noting on it which keys came from which anchor
        (`merged_from`: id(key node) → "<<: *name"), so that a problem with a merged value can say so."""
        sources = [value for key, value in node.value if key.tag == _MERGE]
        super().flatten_mapping(node)
        if not sources:
            return
        merged = {}
        for source in sources:
            for each in reversed(source.value) if isinstance(source, yaml.SequenceNode) else [source]:  # 1st wins
                name = self.anchor_names.get(id(each))
                merged.update({id(key): f"<<: *{name}" if name else "<<" for key, _ in each.value})
        node.merged_from = merged

    composed = 0  # nodes composed so far (an alias counts once here; _check_nodes counts them expanded)

    def compose_node(self, parent, index):
        self.composed += 1
        if self.composed > MAX_YAML_NODES:
            raise _TooManyValues
        return super().compose_node(parent, index)

    def construct_yaml_int(self, node):
        if len(node.value) > MAX_NUMBER_CHARS:  # past 4300 digits int() raises ValueError, advice for Python's users
            raise yaml.constructor.ConstructorError(None, None, "a number too long", node.start_mark)
        if WHOLE_NUMBER.fullmatch(node.value):  # in decimal: YAML 1.1 reads 017 as octal
            return int(node.value)
        return super().construct_yaml_int(node)  # tagged `!!int 0x10`: as asked

    def construct_yaml_str(self, node):
        """A string as the command line's arguments are read: text this system's locale cannot encode (`ü` under
        LC_ALL=C, where Python names files in ASCII) stands for its UTF-8 bytes, as the file's are — each byte
        past ASCII a lone surrogate (surrogateescape), as in sys.argv — so a batch's `input: ünï.mp4` names the
        file `mmgen soundtrack ünï.mp4` does; it was a name no file could have ("does not exist"). Under a UTF-8
        locale every string is as written."""
        text = super().construct_yaml_str(node)
        try:
            os.fsencode(text)
        except UnicodeEncodeError:
            try:
                return os.fsdecode(text.encode("utf-8", "surrogateescape"))
            except UnicodeEncodeError:  # a lone surrogate (`"\\ud800"`) that is no escaped byte: as written
                return text
        return text


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:str", _Loader.construct_yaml_str)
_Loader.add_constructor("tag:mmgen,2026:older-number", _Loader.construct_older_number)


class _TooManyValues(Exception):
    """More than MAX_YAML_NODES nodes composed: the file is refused before the rest of it is read."""


try:
    from yaml.cyaml import CParser
except ImportError:  # a PyYAML built without libyaml: _Loader reads it all, ~3× slower by the value
    CParser = None

if CParser is not None:
    class _CLoader(CParser, _Loader):
        """_Loader reading the file's events through libyaml's parser (C): PyYAML's own scanner and parser, in
        Python, took ~40 µs a value and ~0.5 s a MB of text — most of the time spent reading. Composing, resolving
        and constructing stay _Loader's (Python, as safe_load does them): the same checks, numbers and marks."""

        check_node, get_node, get_single_node = Composer.check_node, Composer.get_node, Composer.get_single_node

        def __init__(self, text: str):
            CParser.__init__(self, text)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

        def dispose(self) -> None:
            CParser.dispose(self)

_LOADER = _Loader if CParser is None else _CLoader


_REREAD_CHARS = 2**20  # PyYAML's own reader re-reads a file up to a syntax error this far in (~1 s at most)


def _syntax_error(error: yaml.YAMLError, text: str) -> str:
    """`:LINE: invalid YAML: PROBLEM` in PyYAML's own words where it can: libyaml's drop details PyYAML gave
    (`found unknown escape character 'q'`, which token was expected, which character cannot start a token), so a
    syntax error libyaml found is read again, up to its line, by PyYAML's reader, scanner and parser (Python:
    slow by the value, so only within _REREAD_CHARS). libyaml's words stay where PyYAML finds nothing there."""
    if _LOADER is not _Loader and not isinstance(error, yaml.constructor.ConstructorError):
        mark = getattr(error, "problem_mark", None)  # none on a reader error: PyYAML's reader checks the whole text
        upto = text if mark is None else "".join(text.splitlines(keepends=True)[:mark.line + 1])
        if len(upto) <= _REREAD_CHARS:
            error = _pyyaml_error(upto) or error
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None and isinstance(error, yaml.reader.ReaderError):  # said by the character: its line from that
        return f":{text[:error.position].count(chr(10)) + 1}: invalid YAML: {problem}"
    return f"{f':{mark.line + 1}' if mark is not None else ''}: invalid YAML: {problem}"


def _pyyaml_error(text: str) -> yaml.YAMLError | None:
    """The syntax error PyYAML's own (Python) reader, scanner and parser find in `text`, if any."""
    try:
        loader = _Loader(text)
        try:
            while loader.get_event() is not None:
                pass
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        return e
    except (UnicodeError, RecursionError):  # what PyYAML's reader cannot take (a lone surrogate): libyaml's words
        pass
    return None


_STRING, _TIMESTAMP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_OLDER = "tag:mmgen,2026:older-number"  # a plain scalar YAML 1.1 read as another number (config.OlderNumber)
_NOT_FINITE = re.compile(r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")  # YAML's own words for them


def _check_nodes(root: yaml.Node, path: str | Path) -> None:
    """Walk the node graph once (each shared node once), checking for duplicate keys and counting how many
    values the document holds with every alias expanded."""
    sizes: dict[int, int] = {}  # id(node) → values under it, aliases expanded
    on_path: set[int] = set()  # the nodes being walked: meeting one again is an alias loop
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, walked = stack.pop()
        key = id(node)
        if walked:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_YAML_VALUES:
                raise ConfigError(f"{path}: holds more than {MAX_YAML_VALUES:,} values once its aliases (*name) "
                                  "are expanded; refusing to read it")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ConfigError(f"{path}:{node.start_mark.line + 1}: invalid YAML: an alias refers to a value that "
                              "contains it (an endless loop)")
        on_path.add(key)
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(node, path)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_unique_keys(node: yaml.MappingNode, path: str | Path) -> None:
    """A key given twice in one mapping is an error naming both lines (merged `<<:` keys may be overridden)."""
    first: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        line, ident = key.start_mark.line + 1, (key.tag, key.value)
        if ident in first:
            raise ConfigError(f"{path}:{line}: key {key.value!r} is given twice (lines {first[ident]} and {line}); "
                              "keep one")
        first[ident] = line
