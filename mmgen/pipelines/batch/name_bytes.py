"""File names as the bytes they stand for, whatever the locale: where Python names files in ASCII (LC_ALL=C,
PYTHONUTF8=0) it reads the bytes of `naïve` as `na\\udcc3\\udcafve`, and a UTF-8 locale as `naïve`. The manifest and
the job hashes record a name as a UTF-8 locale reads it, so a batch run under one locale is done under the other."""

from __future__ import annotations

import os


def utf8_name(name: str) -> str:
    """A name as a UTF-8 locale reads its bytes (its odd bytes as lone surrogates)."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no file name has
        return name


def ascii_name(name: str) -> str:
    """A name as an ASCII locale reads its bytes: how mmgen before 2026-12-02 hashed an input's path there."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return name


def local_name(name: str) -> str:
    """A recorded name as this process names the file it stands for (`utf8_name`'s inverse)."""
    try:
        return os.fsdecode(name.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return name
