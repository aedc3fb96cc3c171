"""A folder of a creator's videos as a dataset of model-length clips, decoded once into an on-disk cache.

Every video file under the folder (mp4, mov, mkv, webm, avi; recursive) is decoded ONCE at the model's frame
rate, frame size and sample rate, and stored whole as a shard of the clip cache (mmgen.data.clip_cache), which
also remembers the files that yield no clip. Clips are then cut from the shard on the fly — frames [s, s+F) and
the audio samples that span the same time — so the clip length and stride can change without decoding again, and
later epochs, resumed runs and new runs over the same folder read only the cache.

Memory: a file is decoded whole at model size before it is stored (an hour at 10 fps and 64×64 is ~0.4 GB as
uint8); reading clips afterwards memory-maps the shard.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import safetensors
import torch

from mmgen.data.clip_cache import ClipCache, printable
from mmgen.data.clip_folder import check_clip_folder
from mmgen.errors import ConfigError, MediaError
from mmgen.media.notes import gather_in, gathered_notes, gathered_so_far
from mmgen.modal import Modal
from mmgen.terminal import counted, rate_text

if TYPE_CHECKING:
    from mmgen.runtime.processes import Processes

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")


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
    check_clip_folder(root)
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
        digest.update(f"{printable(path.relative_to(root))}\0{size}\n".encode())
    return digest.hexdigest()[:20]


@dataclass
class ScanReport:
    """What building the dataset found: counts for the terminal and the run log."""

    files: int = 0
    decoded: int = 0  # usable files decoded in this call (by any process of the job)
    reused: int = 0  # usable files answered from the cache without decoding
    clips: int = 0
    skipped: list[Skipped] = field(default_factory=list)  # files that yield no clip (decoded now or known already)
    left_out: list[Skipped] = field(default_factory=list)  # folders not scanned (mmgen's own run folders)
    notes: list[str] = field(default_factory=list)  # a line per kind of decoding note, naming a few files each

    def summary(self) -> str:
        return (
            f"{counted(self.clips, 'clip')} from {self.files - len(self.skipped)} of {counted(self.files, 'file')} "
            f"({self.decoded} decoded, {self.reused} from the clip cache, {len(self.skipped)} skipped)"
        )


def _index(
    cache: ClipCache, path: Path, fmt: ClipFormat, stride: int, clips: list[tuple[Path, int]], report: ScanReport
) -> bool:
    """Add the clips of `path` (decoded now, or from the cache) to `clips`, and its skip to `report`; True if it
    was decoded now."""
    if _dangling(path):
        report.skipped.append(Skipped(path, f"a broken symbolic link (to {os.readlink(path)}, which does not exist)"))
        return False
    shard, reason, decoded = cache.lookup(path)
    if shard is not None:
        with safetensors.safe_open(str(shard), framework="pt") as stored:
            frames = stored.get_slice("video").get_shape()[0]
        if frames < fmt.frames:
            reason = f"shorter than one clip ({frames / fmt.fps:.2f} s < {fmt.frames / fmt.fps:.2f} s)"
        clips.extend((shard, start) for start in range(0, frames - fmt.frames + 1, stride))
    if reason is not None:
        report.skipped.append(Skipped(path, reason))
    return decoded


def _dangling(path: Path) -> bool:
    """A symbolic link to nothing: not a clip, but named as a skipped file rather than passed over silently."""
    return path.is_symlink() and not path.exists()


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
    processes: Processes | None = None,
) -> tuple[ClipDataset, ScanReport]:
    """Scan `root` (but not the folders `leave_out` names a reason for) unless `scanned` is scan_media's answer
    already, decode what the cache does not know yet, and index every clip (start frames 0, stride, 2·stride, …
    of each file; default stride = the clip length). `run`: who decodes (its run folder), named in the skip records
    it writes. MediaError if no file yields a clip.

    `processes`: a torchrun job's, whose processes share the decoding — file i by rank i % world size — and meet
    (a gather, which every process waits for) before each indexes every file from the cache (decoding itself what
    its cache lacks: each machine's own --cache-dir), and meet again after it; the report counts the job's decoding
    and notes, not one process's. A process whose share, or whose indexing, raised stops every process at that
    gather with its error (Processes.gather_or_fail)."""
    stride = stride or fmt.frames
    files, left_out = scanned if scanned is not None else scan_media(root, leave_out)
    report = ScanReport(files=len(files), left_out=left_out)
    cache = ClipCache(cache_dir, fmt, run)
    clips: list[tuple[Path, int]] = []
    decoded: set[int] = set()  # which files were decoded (by any process of the job)
    sharing = processes is not None and processes.distributed
    with gathered_notes(root) as report.notes:  # said once for the folder, not once per file
        if sharing:
            failure = None
            try:
                for index in range(processes.rank, len(files), processes.world_size):
                    if progress is not None:
                        progress(index, len(files), files[index])  # the job's progress, as far as this process knows
                    if not _dangling(files[index]) and cache.lookup(files[index])[2]:
                        decoded.add(index)
            except Exception as e:  # every process stops at the gather with it, not only this one
                failure = e
            heard = processes.gather_or_fail((sorted(decoded), gathered_so_far()), failure)  # all have decoded theirs
            decoded.update(*(share for share, _ in heard))
            gather_in([notes for _, notes in heard], files)  # the job's notes, not only this process's share's
        failure = None
        try:
            for index, path in enumerate(files):
                if progress is not None and not sharing:
                    progress(index, len(files), path)
                if _index(cache, path, fmt, stride, clips, report):  # decodes what this process's cache lacks
                    decoded.add(index)
        except Exception as e:
            if not sharing:
                raise
            failure = e  # every process stops with it at the gather below, not only this one
        if sharing:
            processes.gather_or_fail(None, failure)  # all have indexed every file
    # Each file counted once: skipped (whether decoded now or answered by a skip record), else decoded now, else
    # from the cache. A file decoded now that yields no clip (unreadable, too short) is a skipped one alone.
    skipped = {s.path for s in report.skipped}
    report.decoded = sum(files[index] not in skipped for index in decoded)
    report.reused = len(files) - len(skipped) - report.decoded
    if progress is not None:
        progress(len(files), len(files), root)
    report.clips = len(clips)
    if not clips:
        detail = (
            f"; {len(report.skipped)} skipped, e.g. {report.skipped[0].path.name}: {report.skipped[0].reason}"
            if report.skipped
            else ""
        )
        none = MediaError(
            f"{root}: no usable clips in {len(files)} video file{'s' if len(files) != 1 else ''}{detail}",
            f"clips need a video and an audio track and at least {fmt.frames / fmt.fps:.2f} s "
            f"({', '.join(VIDEO_SUFFIXES)})",
        )
        none.every_process = True  # each process of a torchrun job indexed every file and found none: said once
        raise none
    return ClipDataset(clips, fmt), report
