"""The clip cache: each video file decoded once, at a model's frame rate, frame size and sample rate, into a shard
shared by every run on the machine; and the files that yield no clip, remembered beside them.

A shard is a safetensors file of uint8 frames (T, 3, H, W) and int16 audio (1, round(T·rate/fps)), named by a hash
of the file's absolute path, mtime, size and those three decode settings (and CACHE_FORMAT). A file that cannot
be used (unreadable, no video or no audio track) is one line of one `skipped.jsonl` — a folder of thousands of
broken files costs one small file, not thousands — and is not retried either. Each line names the run that wrote
it: a failed run takes back only its own (clear_skips_only), never those of a run sharing the cache.

The cache is only a speed-up: a shard that is not one this cache writes (cut short, a link to another file, tensors
of other shapes) is a miss — the file is decoded again and the shard replaced, with a note — never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import av
import safetensors
import torch

from mmgen.config import parse_json
from mmgen.disk_failures import writing
from mmgen.errors import ConfigError, MediaError, in_callers_words
from mmgen.files import atomic_path
from mmgen.locks import acquire, file_lock
from mmgen.media.notes import note
from mmgen.output_checks import why_no_files
from mmgen.weights.safetensors_file import save_file

if TYPE_CHECKING:
    from mmgen.data.clips import ClipFormat

CACHE_FORMAT = 3  # bump when the shard layout or the decoding changes: old shards are then ignored
SKIPPED = "skipped.jsonl"  # files that yield no clip: one JSON line each (key, source, reason, run)
SKIPPED_LOCK = "skipped.lock"  # held to add to SKIPPED, or to take it away: kept, its presence means nothing


class ClipCache:
    """Decoded files by (path, mtime, size, fps, frame size, sample rate), shared by every run on the machine."""

    def __init__(self, root: Path, fmt: ClipFormat, run: str = ""):
        self.root = root
        self.fmt = fmt
        self.run = run  # who uses the cache (a run folder), named in the skip lines it writes
        self._skips: dict[str, str] = {}  # key → why the file yields no clip, as read from SKIPPED so far
        self._skips_read = 0  # bytes of SKIPPED read

    def key(self, path: Path) -> str:
        stat = path.stat()
        identity = {
            "path": str(path.resolve()),
            "mtime_ns": stat.st_mtime_ns,
            "size": stat.st_size,
            "fps": self.fmt.fps,
            "height": self.fmt.height,
            "width": self.fmt.width,
            "sample_rate": self.fmt.sample_rate,
            "format": CACHE_FORMAT,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:40]

    def lookup(self, path: Path) -> tuple[Path | None, str | None, bool]:
        """(shard, skip reason, decoded now): exactly one of shard and reason is set. Decodes and stores the
        file if the cache has no answer for it yet, under the file's lock (mmgen.locks), so that concurrent runs
        never do it twice; the lock file is deleted as its holder leaves (thousands of files must not leave
        thousands of locks)."""
        key = self.key(path)
        shard = self.root / f"{key}.safetensors"
        answer = self._cached(key, shard, fresh=False)
        if answer is not None:
            return *answer, False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = acquire(self.root / f"{key}.lock")
        except OSError as e:
            other = in_callers_words("--cache-dir", "cache_dir=")  # FinetuneConfig's
            raise MediaError(f"cannot write into {self.root}: {why_no_files(e)} ({path} is not decoded in this clip "
                             "cache yet)", hint=f"choose another {other}, or set MMGEN_CACHE") from None
        try:
            return self._decode_once(path, key, shard)
        finally:
            lock.remove()
            lock.release()

    def _decode_once(self, path: Path, key: str, shard: Path) -> tuple[Path | None, str | None, bool]:
        answer = self._cached(key, shard, fresh=True)  # another run may have answered while this one waited
        if answer is not None:
            return *answer, False
        damaged = os.path.lexists(shard)  # and not intact (_cached): replaced by this decoding
        try:
            video, audio = self._decode(path)
        except (MediaError, av.FFmpegError) as e:
            reason = _reason(e, path)
            self._remember_skip(key, path, reason)
            if damaged:
                with writing(shard):
                    shard.unlink(missing_ok=True)
            return None, reason, True
        if damaged:
            note(path, f"its clip-cache entry {shard} was damaged: decoded again", "clip-cache entry damaged, decoded again")
        # A file name that is not UTF-8 (bytes Python keeps as surrogates) is written with replacement marks.
        metadata = {"source": printable(path.resolve()), "fps": str(self.fmt.fps)}
        _write_atomic(
            shard,
            lambda tmp: save_file({"video": video, "audio": audio}, tmp, metadata),
        )
        return shard, None, True

    def _cached(self, key: str, shard: Path, fresh: bool) -> tuple[Path | None, str | None] | None:
        """The cache's answer for `key`, if it has one; `fresh` reads the skip lines other runs appended since."""
        if _intact(shard, self.fmt):
            return shard, None
        if fresh or not self._skips_read:
            self._read_skips()
        reason = self._skips.get(key)
        return None if reason is None else (None, reason)

    def _read_skips(self) -> None:
        """Read SKIPPED's complete lines past what was read before (a line cut short by a killed run is ignored)."""
        try:
            with open(self.root / SKIPPED, "rb") as f:
                f.seek(self._skips_read)
                new = f.read()
        except FileNotFoundError:
            return
        complete = new[: new.rfind(b"\n") + 1]
        self._skips_read += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            try:
                record = parse_json(line, str(self.root / SKIPPED), "list of skipped clips")
                self._skips[str(record["key"])] = str(record["reason"])
            except (ConfigError, KeyError, TypeError):
                continue

    def _remember_skip(self, key: str, path: Path, reason: str) -> None:
        """Append one line to SKIPPED: a single small write with O_APPEND, so concurrent runs never interleave; under
        SKIPPED_LOCK, so that no run takes the file away (clear_skips_only) between reading it and this line."""
        line = json.dumps({"key": key, "source": printable(path), "reason": reason[:500], "run": self.run}) + "\n"
        with writing(self.root / SKIPPED), file_lock(self.root / SKIPPED_LOCK):
            fd = os.open(self.root / SKIPPED, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)

    def _decode(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole file at the model's fps / size / rate: uint8 (T, 3, H, W) and int16 (1, round(T·rate/fps))."""
        from mmgen.media import probe, read_audio, read_video
        from mmgen.media.decode import within_full_scale

        info = probe(path)
        if not info.has_video:
            raise MediaError("no video track")
        if not info.has_audio:
            raise MediaError("no audio track (a video-only file cannot teach the soundtrack)")
        fmt = self.fmt
        video = read_video(path, fmt.fps, (fmt.height, fmt.width))  # (T, 3, H, W) in [-1, 1]
        audio = within_full_scale(read_audio(path, fmt.sample_rate), path)  # (1, L) in [-1, 1], as the model takes it
        length = fmt.audio_offset(video.shape[0])
        audio = torch.nn.functional.pad(audio[:, :length], (0, max(0, length - audio.shape[1])))
        video_u8 = ((video + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        audio_i16 = (audio * 32767).round().clamp(-32768, 32767).to(torch.int16)
        return video_u8.contiguous(), audio_i16.contiguous()


def _intact(shard: Path, fmt: ClipFormat) -> bool:
    """True if `shard` is a shard as this cache writes them: a file of its own (not a link), whole, of uint8 video
    (T, 3, H, W) at `fmt`'s frame size and int16 audio (1, round(T·rate/fps)). Only its header is read."""
    if shard.is_symlink() or not shard.is_file():
        return False
    try:
        with safetensors.safe_open(str(shard), framework="pt") as stored:
            if sorted(stored.keys()) != ["audio", "video"]:
                return False
            video, audio = stored.get_slice("video"), stored.get_slice("audio")
            shapes, types = (video.get_shape(), audio.get_shape()), (video.get_dtype(), audio.get_dtype())
    except Exception:  # SafetensorError (cut short, not safetensors at all), OSError: whatever it is, not a shard
        return False
    if types != ("U8", "I16") or len(shapes[0]) != 4:
        return False
    frames = shapes[0][0]
    return shapes == ([frames, 3, fmt.height, fmt.width], [1, fmt.audio_offset(frames)])


def _reason(error: Exception, path: Path) -> str:
    """A skip reason without the path (the report prints the path beside it)."""
    message = getattr(error, "message", None) or str(error)
    prefix = f"cannot read {path}: "
    return "unreadable: " + message[len(prefix) :] if message.startswith(prefix) else message


def printable(path: Path) -> str:
    """`path` as text that can be written (a file name that is not UTF-8: with replacement marks)."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def clear_skips_only(folder: Path, run: str) -> None:
    """Remove the skip records (SKIPPED, and its lock) from the clip cache `folder` when they are all it holds — no
    decoded clip, nor anything else — and every one is `run`'s: for a cache folder a failed run made itself
    (trainer.run_training), which then leaves none behind. A new run writes them again; decoded clips stay, for the next
    try; and so do the records of a run sharing the new folder (one that also found it missing), whole, under the
    lock that adding a line takes."""
    records = folder / SKIPPED

    def only_records() -> bool:
        return {entry.name for entry in folder.iterdir()} <= {SKIPPED, SKIPPED_LOCK} and records.is_file() \
            and not records.is_symlink()

    if not only_records():
        return
    with file_lock(folder / SKIPPED_LOCK) as lock:
        if only_records() and all(_skip_run(line) == run for line in records.read_bytes().splitlines(keepends=True)):
            records.unlink()
            lock.remove()  # a run waiting for it appends to a new SKIPPED, which then stays


def _skip_run(line: bytes) -> str | None:
    """The run that wrote a SKIPPED line; None for a line cut short or unreadable (no run's to take back)."""
    try:
        record = parse_json(line, SKIPPED, "list of skipped clips") if line.endswith(b"\n") else None
    except ConfigError:
        return None
    return record.get("run") if isinstance(record, dict) else None


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    with atomic_path(path) as tmp:
        write(tmp)
