"""A file's header is a claim: it cannot make mmgen allocate or work without bound.

The hostile files here are small real mp4s (PyAV) whose header — movie, track and media durations, edit list and
the sample table's frame durations — is patched to claim 58 hours. mmgen must refuse them with exit 2 within
seconds and in bounded memory.
"""

from __future__ import annotations

import resource
import struct
import subprocess
from pathlib import Path

from media_factory import write_test_audio, write_test_video
from mmgen_cli import mmgen_command, mmgen_env

CLAIM_S = 58 * 3600
CONTAINERS = {b"moov", b"trak", b"edts", b"mdia", b"minf", b"stbl"}
MEMORY_LIMIT = 4 << 30  # address space for the whole mmgen process (torch included); the claim would need far more


def boxes(data: bytes | bytearray, start: int, end: int):
    """(type, offset, header size, box size) of the MP4 boxes in data[start:end]."""
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[at + 8 : at + 16])[0], 16
        yield kind, at, header, size or end - at
        at += size or end - at


def claim_duration(path: Path, seconds: float) -> None:
    """Rewrite the mp4's header so that it lasts `seconds`: every duration field and every sample's duration."""
    data = bytearray(path.read_bytes())
    movie_scale = 1000

    def put(at: int, version: int, value: float) -> None:
        struct.pack_into(">Q" if version else ">I", data, at, min(int(value), 2**32 - 1 if not version else 2**63))

    def walk(start: int, end: int, media_scale: int = 1000) -> None:
        nonlocal movie_scale
        for kind, at, header, size in boxes(data, start, end):
            body, version = at + header, data[at + header]
            times = 16 if version else 8  # creation + modification time
            if kind in (b"mvhd", b"mdhd"):
                scale = struct.unpack(">I", data[body + 4 + times : body + 8 + times])[0]
                movie_scale = scale if kind == b"mvhd" else movie_scale
                put(body + 8 + times, version, seconds * scale)
            elif kind == b"tkhd":
                put(body + 4 + times + 8, version, seconds * movie_scale)  # after track id and a reserved word
            elif kind == b"elst":
                for entry in range(struct.unpack(">I", data[body + 4 : body + 8])[0]):
                    put(body + 8 + entry * (20 if version else 12), version, seconds * movie_scale)
            elif kind == b"stts":
                entries = [struct.unpack(">II", data[body + 8 + 8 * e : body + 16 + 8 * e])
                           for e in range(struct.unpack(">I", data[body + 4 : body + 8])[0])]
                samples = sum(count for count, _ in entries)
                for e in range(len(entries)):
                    struct.pack_into(">I", data, body + 12 + 8 * e, min(int(seconds * media_scale / samples), 2**31))
            if kind == b"trak":
                walk(body, at + size, media_scale)
            elif kind == b"mdia":
                (mdhd,) = [b for b in boxes(data, body, at + size) if b[0] == b"mdhd"]
                v = data[mdhd[1] + mdhd[2]]
                scale_at = mdhd[1] + mdhd[2] + 4 + (16 if v else 8)
                walk(body, at + size, struct.unpack(">I", data[scale_at : scale_at + 4])[0])
            elif kind in CONTAINERS:
                walk(body, at + size, media_scale)

    walk(0, len(data))
    path.write_bytes(bytes(data))


def limited(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_limited(args: list, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """`mmgen ARGS` with at most MEMORY_LIMIT of address space."""
    return subprocess.run(mmgen_command(*args), env=env, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limited(MEMORY_LIMIT))


def test_a_video_whose_header_claims_58_hours_is_refused_quickly_in_bounded_memory(tiny, tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    clip = write_test_video(folder / "tiny.mp4", seconds=1.0).path  # 10 frames, 9 kB
    claim_duration(clip, CLAIM_S)
    before = sorted(folder.iterdir())

    done = run_limited(["soundtrack", clip, "-m", tiny, "--steps", "2"], mmgen_env(tmp_path))

    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "tiny.mp4: its video timestamps jump from 0.00 s to " in done.stderr
    assert "the file claims a duration its data does not have" in done.stderr
    assert sorted(folder.iterdir()) == before


def test_a_sound_whose_header_claims_58_hours_is_refused_quickly_in_bounded_memory(tiny, tmp_path):
    song = write_test_audio(tmp_path / "song.m4a", seconds=1.0).path
    claim_duration(song, CLAIM_S)

    done = run_limited(["animate", song, "-m", tiny, "--steps", "2"], mmgen_env(tmp_path))

    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "song.m4a: its audio timestamps jump" in done.stderr
    assert not (tmp_path / "song_animate.mp4").exists()
