"""A folder of a creator's videos as a dataset of model-length clips, decoded once into an on-disk cache.

Every video file under the folder (mp4, mov, mkv, webm, avi; recursive) is decoded ONCE at the model's frame
rate, frame size and sample rate, and stored whole as a cache shard: uint8 frames (T, 3, H, W) and int16 audio
(1, round(T·rate/fps)) in a safetensors file named by a hash of the file's absolute path, mtime, size and those
three decode settings. Clips are then cut from the shard on the fly — frames [s, s+F) and the audio samples that
span the same time — so the clip length and stride can change without decoding again, and later epochs,
resumed runs and new runs over the same folder read only the cache. Files that cannot be used (unreadable, no
video or no audio track) are remembered in the cache too — one line each in one `skipped.jsonl`, so a folder of
thousands of broken files costs one small file, not thousands — and are not retried either. Each line names the run
that wrote it: a failed run takes back only its own (clear_skips_only), never those of a run sharing the cache.

Memory: a file is decoded whole at model size before it is stored (an hour at 10 fps and 64×64 is ~0.4 GB as
uint8); reading clips afterwards memory-maps the shard.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import safetensors
import torch

from mmgen.config import parse_json
from mmgen.disk_failures import writing
from mmgen.errors import ConfigError, MediaError
from mmgen.files import atomic_path
from mmgen.locks import acquire, file_lock
from mmgen.media.notes import gathered_notes
from mmgen.modal import Modal
from mmgen.output_checks import why_no_files
from mmgen.terminal import rate_text
from mmgen.weights.safetensors_file import save_file

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
CACHE_FORMAT = 3  # bump when the shard layout or the decoding changes: old shards are then ignored
SKIPPED = "skipped.jsonl"  # files that yield no clip: one JSON line each (key, source, reason, run)
SKIPPED_LOCK = "skipped.lock"  # held to add to SKIPPED, or to take it away: kept, its presence means nothing


@dataclass(frozen=True)
class ClipFormat:
    """What one training clip is: F frames of H×W at `fps`, and `samples` audio samples at `sample_rate`."""

    frames: int
    fps: float
    height: int
    width: int
    sample_rate: int
    samples: int

    def __post_init__(self):
        span = self.frames / self.fps * self.sample_rate
        if abs(self.samples - span) > 0.01 * span:
            raise ConfigError(
                f"the model's audio ({self.samples} samples at {self.sample_rate} Hz = "
                f"{self.samples / self.sample_rate:.3f} s) does not span its video ({self.frames} frames at "
                f"{rate_text(self.fps)} fps = {self.frames / self.fps:.3f} s): real clips cannot be cut for it"
            )

    @classmethod
    def of_model(cls, config) -> ClipFormat:
        """The clip format an MMUNetConfig trains on."""
        frames, _, height, width = config.video_size
        return cls(frames, float(config.fps), height, width, int(config.sample_rate), config.audio_size[1])

    def audio_offset(self, frame: int) -> int:
        """The audio sample at which video frame `frame` starts."""
        return round(frame * self.sample_rate / self.fps)


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


def scan_media(
    root: Path, leave_out: Callable[[Path], str | None] = lambda folder: None
) -> tuple[list[Path], list[Skipped]]:
    """Video files under `root`, recursively, in a stable (sorted) order, hidden files and folders skipped; and
    the folders left out because `leave_out` gave a reason (their files are not looked at)."""
    if not root.is_dir():
        raise MediaError(f"{root}: not a folder", "give the folder that holds your video clips")
    found, left_out = [], []
    for folder, subfolders, names in os.walk(root):  # symbolic links to folders are not followed (no loops)
        here = Path(folder)
        kept = []
        for name in sorted(subfolders):
            reason = None if name.startswith(".") else leave_out(here / name)
            if reason is not None:
                left_out.append(Skipped(here / name, reason))
            elif not name.startswith("."):
                kept.append(name)
        subfolders[:] = kept
        found += [
            here / name
            for name in names
            if not name.startswith(".")
            and Path(name).suffix.lower() in VIDEO_SUFFIXES
            and ((here / name).is_file() or _dangling(here / name))  # a broken link is reported as skipped
        ]
    return sorted(found), left_out


def folder_fingerprint(root: Path, files: list[Path]) -> str:
    """What a folder of clips holds — its video files' paths below it and their sizes — to tell the same clips in a
    moved folder from other clips (a resumed run compares them)."""
    digest = hashlib.sha256()
    for path in files:
        size = -1 if _dangling(path) else path.stat().st_size
        digest.update(f"{_printable(path.relative_to(root))}\0{size}\n".encode())
    return digest.hexdigest()[:20]


@dataclass
class ScanReport:
    """What building the dataset found: counts for the terminal and the run log."""

    files: int = 0
    decoded: int = 0  # files decoded in this call
    reused: int = 0  # files (usable or skipped) answered from the cache without decoding
    clips: int = 0
    skipped: list[Skipped] = field(default_factory=list)  # files that yield no clip
    left_out: list[Skipped] = field(default_factory=list)  # folders not scanned (mmgen's own run folders)
    notes: list[str] = field(default_factory=list)  # a line per kind of decoding note, naming a few files each

    def summary(self) -> str:
        return (
            f"{self.clips} clips from {self.files - len(self.skipped)} of {self.files} files "
            f"({self.decoded} decoded, {self.reused} from the clip cache, {len(self.skipped)} skipped)"
        )


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
            raise MediaError(f"cannot write into {self.root}: {why_no_files(e)} ({path} is not decoded in this clip "
                             "cache yet)", hint="choose another --cache-dir, or set MMGEN_CACHE") from None
        try:
            return self._decode_once(path, key, shard)
        finally:
            lock.remove()
            lock.release()

    def _decode_once(self, path: Path, key: str, shard: Path) -> tuple[Path | None, str | None, bool]:
        answer = self._cached(key, shard, fresh=True)  # another run may have answered while this one waited
        if answer is not None:
            return *answer, False
        try:
            video, audio = self._decode(path)
        except (MediaError, av.FFmpegError) as e:
            reason = _reason(e, path)
            self._remember_skip(key, path, reason)
            return None, reason, True
        # A file name that is not UTF-8 (bytes Python keeps as surrogates) is written with replacement marks.
        metadata = {"source": _printable(path.resolve()), "fps": str(self.fmt.fps)}
        _write_atomic(
            shard,
            lambda tmp: save_file({"video": video, "audio": audio}, tmp, metadata),
        )
        return shard, None, True

    def _cached(self, key: str, shard: Path, fresh: bool) -> tuple[Path | None, str | None] | None:
        """The cache's answer for `key`, if it has one; `fresh` reads the skip lines other runs appended since."""
        if shard.is_file():
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
        line = json.dumps({"key": key, "source": _printable(path), "reason": reason[:500], "run": self.run}) + "\n"
        with writing(self.root / SKIPPED), file_lock(self.root / SKIPPED_LOCK):
            fd = os.open(self.root / SKIPPED, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)

    def _decode(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole file at the model's fps / size / rate: uint8 (T, 3, H, W) and int16 (1, round(T·rate/fps))."""
        from mmgen.media import probe, read_audio, read_video

        info = probe(path)
        if not info.has_video:
            raise MediaError("no video track")
        if not info.has_audio:
            raise MediaError("no audio track (a video-only file cannot teach the soundtrack)")
        fmt = self.fmt
        video = read_video(path, fmt.fps, (fmt.height, fmt.width))  # (T, 3, H, W) in [-1, 1]
        audio = read_audio(path, fmt.sample_rate)  # (1, L) in [-1, 1]
        length = fmt.audio_offset(video.shape[0])
        audio = torch.nn.functional.pad(audio[:, :length], (0, max(0, length - audio.shape[1])))
        video_u8 = ((video + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        audio_i16 = (audio * 32767).round().clamp(-32768, 32767).to(torch.int16)
        return video_u8.contiguous(), audio_i16.contiguous()


def _index(
    cache: ClipCache, path: Path, fmt: ClipFormat, stride: int, clips: list[tuple[Path, int]], report: ScanReport
) -> None:
    """Add the clips of `path` (decoded now, or from the cache) to `clips`, and what happened to `report`."""
    if _dangling(path):
        report.skipped.append(Skipped(path, f"a broken symbolic link (to {os.readlink(path)}, which does not exist)"))
        return
    shard, reason, decoded = cache.lookup(path)
    report.decoded += decoded
    report.reused += not decoded
    if shard is not None:
        with safetensors.safe_open(str(shard), framework="pt") as stored:
            frames = stored.get_slice("video").get_shape()[0]
        if frames < fmt.frames:
            reason = f"shorter than one clip ({frames / fmt.fps:.2f} s < {fmt.frames / fmt.fps:.2f} s)"
        clips.extend((shard, start) for start in range(0, frames - fmt.frames + 1, stride))
    if reason is not None:
        report.skipped.append(Skipped(path, reason))


def _dangling(path: Path) -> bool:
    """A symbolic link to nothing: not a clip, but named as a skipped file rather than passed over silently."""
    return path.is_symlink() and not path.exists()


def _reason(error: Exception, path: Path) -> str:
    """A skip reason without the path (the report prints the path beside it)."""
    message = getattr(error, "message", None) or str(error)
    prefix = f"cannot read {path}: "
    return "unreadable: " + message[len(prefix) :] if message.startswith(prefix) else message


def _printable(path: Path) -> str:
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def clear_skips_only(folder: Path, run: str) -> None:
    """Remove the skip records (SKIPPED, and its lock) from the clip cache `folder` when they are all it holds — no
    decoded clip, nor anything else — and every one is `run`'s: for a cache folder a failed run made itself
    (trainer.finetune), which then leaves none behind. A new run writes them again; decoded clips stay, for the next
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


class ClipDataset(torch.utils.data.Dataset):
    """Model-length clips cut from cache shards: item i = {"video": (F, 3, H, W), "audio": (1, L)} as float
    in [-1, 1]. Shards are opened lazily per process (so DataLoader workers each open their own)."""

    def __init__(self, clips: list[tuple[Path, int]], fmt: ClipFormat):
        self.clips = clips  # (shard, first frame)
        self.fmt = fmt
        self._open: dict[Path, object] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def __getstate__(self):
        return {**self.__dict__, "_open": {}}

    def __getitem__(self, index: int) -> Modal:
        shard, start = self.clips[index]
        if shard not in self._open:
            self._open[shard] = safetensors.safe_open(str(shard), framework="pt")
        stored = self._open[shard]
        fmt = self.fmt
        video = stored.get_slice("video")[start : start + fmt.frames]  # (F, 3, H, W) uint8
        offset = fmt.audio_offset(start)
        audio = stored.get_slice("audio")[:, offset : offset + fmt.samples]  # (1, ≤L) int16
        audio = torch.nn.functional.pad(audio, (0, fmt.samples - audio.shape[1]))
        return {"video": video.float() / 127.5 - 1.0, "audio": audio.float() / 32767}


ProgressFn = Callable[[int, int, Path], None]  # (files done, files total, current file)


def build_clip_dataset(
    root: Path,
    fmt: ClipFormat,
    cache_dir: Path,
    *,
    stride: int | None = None,
    progress: ProgressFn | None = None,
    leave_out: Callable[[Path], str | None] = lambda folder: None,
    scanned: tuple[list[Path], list[Skipped]] | None = None,
    run: str = "",
) -> tuple[ClipDataset, ScanReport]:
    """Scan `root` (but not the folders `leave_out` names a reason for) unless `scanned` is scan_media's answer
    already, decode what the cache does not know yet, and index every clip (start frames 0, stride, 2·stride, …
    of each file; default stride = the clip length). `run`: who decodes (its run folder), named in the skip records
    it writes. MediaError if no file yields a clip."""
    stride = stride or fmt.frames
    files, left_out = scanned if scanned is not None else scan_media(root, leave_out)
    report = ScanReport(files=len(files), left_out=left_out)
    cache = ClipCache(cache_dir, fmt, run)
    clips: list[tuple[Path, int]] = []
    with gathered_notes(root) as report.notes:  # said once for the folder, not once per file
        for done, path in enumerate(files):
            if progress is not None:
                progress(done, len(files), path)
            _index(cache, path, fmt, stride, clips, report)
    if progress is not None:
        progress(len(files), len(files), root)
    report.clips = len(clips)
    if not clips:
        detail = (
            f"; {len(report.skipped)} skipped, e.g. {report.skipped[0].path.name}: {report.skipped[0].reason}"
            if report.skipped
            else ""
        )
        raise MediaError(
            f"{root}: no usable clips in {len(files)} video file{'s' if len(files) != 1 else ''}{detail}",
            f"clips need a video and an audio track and at least {fmt.frames / fmt.fps:.2f} s "
            f"({', '.join(VIDEO_SUFFIXES)})",
        )
    return ClipDataset(clips, fmt), report
