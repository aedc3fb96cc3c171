"""A project copied back from a Mac: its names come back NFD (`café` as e + a combining accent), and a batch file or a
command line typed NFC names the same files and folders another way. One matcher finds them (spelled_paths): the
output folder (`as_found`), each job's files (Written.spelled), a missing input's hint."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from mmgen import spelled_paths
from mmgen.spelled_paths import SpelledPaths, as_found, unicode_form

NFC, NFD = "caf\u00e9", "cafe\u0301"


def test_a_file_and_its_folder_back_from_a_mac_are_found_in_their_form_and_a_new_name_goes_into_that_folder(
        tmp_path: Path):
    (tmp_path / NFD).mkdir()
    (tmp_path / NFD / f"{NFD}.mp4").write_bytes(b"a clip")
    (tmp_path / "plain.mp4").write_bytes(b"a clip")
    found = SpelledPaths()

    assert found.as_found(tmp_path / NFC / f"{NFC}.mp4") == tmp_path / NFD / f"{NFD}.mp4"
    assert found.as_found(tmp_path / NFC / "new.json") == tmp_path / NFD / "new.json"  # where it would go
    assert found.respelled(tmp_path / NFD / f"{NFD}.mp4") is None  # there as spelled
    assert found.respelled(tmp_path / "plain.mp4") is None
    assert found.as_found(tmp_path / "nowhere" / NFC) == tmp_path / "nowhere" / NFC  # nothing in any form: as given
    assert as_found(tmp_path / NFC) == tmp_path / NFD  # one path alone: the output folder
    assert [unicode_form(name) for name in (NFC, NFD, NFC + NFD)] == ["NFC", "NFD", "mixed forms"]


def test_the_folder_below_which_it_looks_is_taken_as_spelled(tmp_path: Path):
    """A batch's output folder is found once (as_found, as the file is read); its jobs' files are looked for below it,
    so an NFC output folder beside an NFD one is the one given."""
    (tmp_path / NFD).mkdir()
    (tmp_path / NFD / "take.mp4").write_bytes(b"a clip")
    out = tmp_path / NFC

    assert SpelledPaths().respelled(out / "take.mp4") == tmp_path / NFD / "take.mp4"
    assert SpelledPaths().respelled(out / "take.mp4", below=out) is None


def test_many_names_plainly_not_there_cost_one_listing_of_their_folder(tmp_path: Path, monkeypatch):
    """A batch of 100,000 clips asks for 400,000 files: each folder is listed once, not once per name."""
    (tmp_path / f"{NFD}.mp4").write_bytes(b"a clip")
    listed = []
    listdir = os.listdir
    monkeypatch.setattr(spelled_paths.os, "listdir", lambda path: listed.append(path) or listdir(path))
    found = SpelledPaths()

    assert all(found.respelled(tmp_path / f"clip_{k:04d}.mp4", below=tmp_path) is None for k in range(2000))
    assert found.respelled(tmp_path / f"{NFC}.mp4", below=tmp_path) == tmp_path / f"{NFD}.mp4"
    assert listed == [str(tmp_path)]


def test_a_disk_that_holds_both_forms_as_one_name_finds_the_file_as_spelled(tmp_path: Path, monkeypatch):
    """On a macOS disk `café` NFC opens the NFD file: it is there as spelled, no other file beside it."""
    (tmp_path / f"{NFD}.mp4").write_bytes(b"a clip")
    one_name = os.path.lexists
    monkeypatch.setattr(spelled_paths.os.path, "lexists",
                        lambda path: one_name(unicodedata.normalize("NFD", os.fspath(path))))

    assert SpelledPaths().respelled(tmp_path / f"{NFC}.mp4") is None
