"""Text as a stream's encoding can hold it: mmgen's lines are written in Unicode (×, →, …, ✓), and a stream that
cannot hold a character (ASCII: `LC_ALL=C PYTHONIOENCODING=ascii`) gets a stand-in or its bytes' escapes instead of
failing the command."""

from __future__ import annotations

import codecs

# What an encoding without them (ASCII: `LC_ALL=C PYTHONIOENCODING=ascii`, `LANG=C` on an older Python) shows for
# the characters mmgen's own lines are written with. The marks ✓ and ✗ stand beside words ("ok", "missing").
ASCII_STAND_INS = {"×": "x", "·": "-", "→": "->", "…": "...", "—": "--", "–": "-", "≤": "<=", "≥": ">=", "±": "+/-",
                   "✓": "+", "✗": "x"}


def _stand_in(error: UnicodeError) -> tuple[str, int]:
    """The codecs error handler `held_by` encodes with: a character the encoding cannot hold as its stand-in
    (ASCII_STAND_INS), any other as the escapes of its UTF-8 bytes (é: \\xc3\\xa9, as path_text shows a byte that is
    not UTF-8): a character of a file name stays its bytes, which `$'...'` in a shell gives back — not
    the code point's escape (\\xe9), which names another file. A stand-in is applied to the whole line, a name in
    it too (a×b.mp4: axb.mp4): the text no longer says which words are a name; `--json` names files exactly."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return "".join(ASCII_STAND_INS.get(c) or _byte_escapes(c) for c in error.object[error.start:error.end]), error.end


def _byte_escapes(c: str) -> str:
    try:
        return "".join(f"\\x{b:02x}" for b in c.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        return c.encode("unicode_escape").decode("ascii")


codecs.register_error("mmgen.stand_in", _stand_in)


def held_by(text: str, encoding: str | None) -> str:
    """`text` as a stream of `encoding` can take it: each character it cannot hold as its ASCII stand-in (×: x,
    →: ->, …: ...) or, lacking one, its bytes' escapes (`_stand_in`). Every stream and console mmgen prints through
    writes what it prints so (GuardedStream, `console`, `say`), instead of failing the command."""
    if text.isascii() or not encoding or encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        return text
    try:
        return text.encode(encoding, "mmgen.stand_in").decode(encoding)
    except LookupError:  # an encoding Python does not know: the stream's own error
        return text
