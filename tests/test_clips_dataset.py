"""A folder of a creator's videos becomes model-length clips, decoded once into a cache."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import pickle
import threading

import pytest
import torch
from finetune_clips import COLOURS, PITCH_HZ, TINY_FORMAT, dominant_hz, write_clip, write_clip_folder

from mmgen.data.clip_cache import ClipCache, clear_skips_only
from mmgen.data.clips import ClipFormat, build_clip_dataset, folder_fingerprint, scan_media
from mmgen.errors import ConfigError, MediaError
from mmgen.runtime.processes import Processes
from mmgen.weights.safetensors_file import save_file


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return root, write_clip_folder(root, good=4, seconds=2.0)


def colour_of(video: torch.Tensor) -> str:
    """The named colour nearest to a clip's mean pixel."""
    mean = ((video + 1) / 2).mean(dim=(0, 2, 3))
    return min(COLOURS, key=lambda name: float((mean - torch.tensor(COLOURS[name])).norm()))


@dataclasses.dataclass(frozen=True)
class _Thread(Processes):
    """A rank of a two-process torchrun job played by a thread: its gather meets the other's as
    dist.all_gather_object does (each gets every rank's object, pickled and unpickled, in rank order)."""

    met: threading.Barrier = None
    words: list = None

    def gather(self, obj):
        self.words[self.rank] = pickle.dumps(obj)
        self.met.wait()
        heard = [pickle.loads(word) for word in self.words]
        self.met.wait()
        return heard


def two_ranks(build, rank_of: threading.local | None = None) -> list:
    """What `build(processes)` returns — or raises — in each rank of a two-process job (threads)."""
    met, words, ended = threading.Barrier(2, timeout=10), [None, None], [None, None]

    def rank(r: int) -> None:
        if rank_of is not None:
            rank_of.rank = r
        try:
            ended[r] = build(_Thread(r, 2, r, met, words))
        except Exception as e:
            ended[r] = e

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return ended


def test_a_folder_becomes_clips_and_unusable_files_are_skipped_with_reasons(folder, tmp_path):
    root, files = folder
    dataset, report = build_clip_dataset(root, TINY_FORMAT, tmp_path / "cache")

    # 4 good files of 2.0 s = 20 frames each → 5 clips of 4 frames; hidden folders and .txt are not scanned.
    assert report.files == 6 and report.clips == len(dataset) == 20
    reasons = {s.path.name: s.reason for s in report.skipped}
    assert set(reasons) == {"broken.mp4", "silent.mov"}
    assert reasons["broken.mp4"].startswith("unreadable")
    assert "no audio track" in reasons["silent.mov"]
    assert "20 clips from 4 of 6 files" in report.summary()

    item = dataset[7]
    assert item["video"].shape == (4, 3, 16, 16) and item["audio"].shape == (1, 3200)
    assert item["video"].dtype == item["audio"].dtype == torch.float32
    assert -1 <= item["video"].min() and item["video"].max() <= 1 and item["audio"].abs().max() <= 1
    # Every clip still carries its colour and the tone of that colour (through H.264, AAC and resampling).
    for i in range(len(dataset)):
        clip = dataset[i]
        colour = colour_of(clip["video"])
        assert abs(dominant_hz(clip["audio"], TINY_FORMAT.sample_rate) - PITCH_HZ[colour]) < 30


def test_a_second_scan_decodes_nothing(folder, tmp_path):
    root, files = folder
    cache = tmp_path / "cache"
    _, first = build_clip_dataset(root, TINY_FORMAT, cache)
    shards = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert first.decoded == 4 and first.reused == 0  # broken.mp4 and silent.mov are skipped, not decoded too
    assert first.summary() == "20 clips from 4 of 6 files (4 decoded, 0 from the clip cache, 2 skipped)"

    dataset, second = build_clip_dataset(root, TINY_FORMAT, cache)
    assert second.decoded == 0 and second.reused == 4
    assert second.summary() == "20 clips from 4 of 6 files (0 decoded, 4 from the clip cache, 2 skipped)"
    assert second.clips == first.clips and len(second.skipped) == 2
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == shards  # nothing rewritten

    # A changed file is decoded again (its mtime is part of the key); nothing else is.
    stat = files["good"][0].stat()
    os.utime(files["good"][0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    _, third = build_clip_dataset(root, TINY_FORMAT, cache)
    assert third.decoded == 1 and third.reused == 3


def test_the_processes_of_a_torchrun_job_share_the_decoding_and_report_the_jobs_counts(folder, tmp_path, monkeypatch):
    """Two ranks (threads here, meeting at the job's gather as torchrun's processes do) over an empty cache: each
    decodes its share — file i by rank i % 2 — and no file twice; each reports the job's counts and the same skips
    (a rank counted only its own decodings, and a file the other rank had decoded as "from the clip cache")."""
    root, _ = folder
    cache = tmp_path / "cache"
    decoded_by: dict[str, list[int]] = {}
    decode = ClipCache._decode
    rank_of = threading.local()

    def counted_decode(self, path):
        decoded_by.setdefault(path.name, []).append(rank_of.rank)
        return decode(self, path)

    monkeypatch.setattr(ClipCache, "_decode", counted_decode)
    reports = two_ranks(lambda r: build_clip_dataset(root, TINY_FORMAT, cache, processes=r)[1], rank_of)
    files = scan_media(root)[0]
    assert decoded_by == {path.name: [i % 2] for i, path in enumerate(files)}  # each once, by its rank
    for report in reports:
        assert (report.decoded, report.reused, report.clips) == (4, 0, 20)  # the skipped files not as decoded too
        assert {s.path.name for s in report.skipped} == {"broken.mp4", "silent.mov"}


def test_a_rank_that_fails_while_decoding_stops_every_rank_with_its_error(folder, tmp_path, monkeypatch):
    """A rank whose decoding raised (a disk error, not a file to skip) left the others waiting at the job's gather
    until torchrun stopped them: every rank now stops at the gather with that one error, to be said by rank 0
    alone (every_process) and ended with its exit code."""
    root, _ = folder
    decode = ClipCache._decode
    rank_of = threading.local()

    def failing_decode(self, path):
        if rank_of.rank == 1:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return decode(self, path)

    monkeypatch.setattr(ClipCache, "_decode", failing_decode)
    ended = two_ranks(lambda r: build_clip_dataset(root, TINY_FORMAT, tmp_path / "cache", processes=r), rank_of)
    failed = scan_media(root)[0][1]  # rank 1's first file
    for error in ended:
        assert isinstance(error, OSError) and (error.errno, error.filename) == (errno.EIO, str(failed)), ended
        assert error.every_process


def test_the_processes_of_a_torchrun_job_report_the_jobs_decoding_notes_each_once(tmp_path):
    """Each rank notes what it decodes (surround mixed to mono); rank 0, which says the notes, said only its own
    share's: every rank now has the job's notes, each file once, in the folder's order."""
    from media_factory import write_test_video

    root = tmp_path / "concert"
    root.mkdir()
    for name in ("a", "b", "c"):
        write_test_video(root / f"{name}.mp4", seconds=0.4, size=(16, 16), channels=6)
    reports = two_ranks(lambda r: build_clip_dataset(root, TINY_FORMAT, tmp_path / "cache", processes=r)[1])
    for report in reports:
        assert report.notes == ["3 files: surround audio mixed to mono (a.mp4, b.mp4, c.mp4)"], reports


def test_a_damaged_clip_cache_entry_is_decoded_again_and_replaced_with_one_note(folder, tmp_path):
    """The clip cache is a speed-up: a shard cut short (SafetensorError, exit 1, naming no file), a link to another
    file (`header too large`), or one of other shapes (its source "shorter than one clip") is a miss — the file is
    decoded again, the shard replaced, one note for all of them — and the file a link led to stays as it was."""
    root, files = folder
    cache = tmp_path / "cache"
    _, first = build_clip_dataset(root, TINY_FORMAT, cache)
    shard_of = {path: cache / f"{ClipCache(cache, TINY_FORMAT).key(path)}.safetensors" for path in files["good"]}
    cut, linked, reshaped = (shard_of[path] for path in files["good"][:3])
    os.truncate(cut, 5000)
    elsewhere = tmp_path / "passwd"
    elsewhere.write_text("root:x:0:0:root:/root:/bin/bash\n")
    linked.unlink()
    linked.symlink_to(elsewhere)
    save_file({"video": torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "audio": torch.zeros(1, 1, dtype=torch.int16)},
              reshaped, {})

    dataset, again = build_clip_dataset(root, TINY_FORMAT, cache)

    assert again.decoded == 3 and again.reused == 1 and again.clips == first.clips == len(dataset)
    assert sorted(s.path.name for s in again.skipped) == ["broken.mp4", "silent.mov"]
    (said,) = again.notes
    assert said.startswith("3 files: clip-cache entry damaged, decoded again (")
    assert all(str(path.relative_to(root)) in said for path in files["good"][:3]), said
    assert not linked.is_symlink() and elsewhere.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
    assert dataset[len(dataset) - 1]["video"].shape == (4, 3, 16, 16)


def test_stride_cuts_overlapping_clips_from_the_same_cached_decode(folder, tmp_path):
    root, _ = folder
    cache = tmp_path / "cache"
    plain, _ = build_clip_dataset(root, TINY_FORMAT, cache)
    dense, report = build_clip_dataset(root, TINY_FORMAT, cache, stride=2)
    assert report.decoded == 0  # the stride is applied when cutting, not when decoding
    assert len(dense) == 4 * 9  # starts 0, 2, …, 16 of 20 frames
    first, second = dense[0], dense[1]  # frames 0–3 and 2–5 of the same file
    assert torch.equal(first["video"][2:], second["video"][:2])
    assert torch.equal(first["audio"][:, 1600:], second["audio"][:, :1600])
    assert torch.equal(plain[0]["video"], first["video"])


def test_a_clip_whose_float_sound_passes_full_scale_is_learnt_clipped_and_said(tmp_path):
    """A training clip's f32 track at +12 dBFS is clipped for the model, as its 16-bit cache holds it, with a note
    of its real peak."""
    from media_factory import pattern_audio, write_test_video

    root = tmp_path / "hot"
    root.mkdir()
    write_test_video(root / "hot.mkv", seconds=0.4, size=(16, 16), audio_codec="pcm_f32le",
                     samples=pattern_audio(0.4, 16000) * 40)
    dataset, report = build_clip_dataset(root, TINY_FORMAT, tmp_path / "cache")
    assert dataset[0]["audio"].abs().max() == pytest.approx(1, abs=1e-3)
    assert report.notes == ["1 file: audio above full scale, clipped to it for the model (hot.mkv)"], report.notes


def test_cut_clips_keep_video_and_audio_aligned(tmp_path):
    # One file whose colour and pitch change every 0.4 s: each 4-frame clip (0.4 s) must see one colour and hear
    # that colour's tone, not its neighbour's.
    sequence = ["red", "blue", "yellow", "green", "red", "yellow"]
    write_clip(tmp_path / "data" / "changing.mp4", sequence, segment=0.4)
    dataset, report = build_clip_dataset(tmp_path / "data", TINY_FORMAT, tmp_path / "cache")
    assert len(dataset) == len(sequence)
    for i, expected in enumerate(sequence):
        clip = dataset[i]
        assert colour_of(clip["video"]) == expected
        # Skip the first and last 20 ms: AAC smears a hard pitch change a little.
        audio = clip["audio"][:, 160:-160]
        assert abs(dominant_hz(audio, TINY_FORMAT.sample_rate) - PITCH_HZ[expected]) < 40


def test_a_folder_without_usable_clips_is_an_error_naming_it(tmp_path):
    root = tmp_path / "bad"
    write_clip(root / "silent.mp4", ["red"], 2.0, audio=False)
    write_clip(root / "short.mp4", ["red"], 0.2)  # shorter than one 0.4 s clip
    with pytest.raises(MediaError, match="no usable clips in 2 video files") as error:
        build_clip_dataset(root, TINY_FORMAT, tmp_path / "cache")
    assert error.value.exit_code == 2
    with pytest.raises(MediaError, match="not a folder"):
        scan_media(tmp_path / "missing")


def test_the_clip_format_must_span_the_same_time_in_video_and_audio():
    with pytest.raises(ConfigError, match="does not span its video"):
        ClipFormat(frames=4, fps=10.0, height=16, width=16, sample_rate=4000, samples=3200)


def test_a_file_name_that_is_not_utf8_is_decoded_like_any_other(tmp_path):
    """Camera cards and old archives hold names in Latin-1: one such file once stopped the whole run."""
    write_clip(tmp_path / "clips" / "a.mp4", ["red"], 1.0)
    latin1 = os.path.join(os.fsencode(tmp_path / "clips"), b"caf\xe9.mp4")
    os.rename(os.fsencode(tmp_path / "clips" / "a.mp4"), latin1)
    dataset, report = build_clip_dataset(tmp_path / "clips", TINY_FORMAT, tmp_path / "cache")
    assert (report.files, report.skipped, report.decoded) == (1, [], 1) and len(dataset) > 0


def test_a_broken_symbolic_link_is_a_skipped_file_named_with_where_it_pointed(tmp_path):
    """A clip moved away from under its link was passed over without a word, unlike every other unusable file."""
    write_clip(tmp_path / "clips" / "a.mp4", ["red"], 1.0)
    (tmp_path / "clips" / "gone.mp4").symlink_to(tmp_path / "elsewhere" / "gone.mp4")
    scanned = scan_media(tmp_path / "clips")
    assert folder_fingerprint(tmp_path / "clips", scanned[0])  # the link is listed without being read
    dataset, report = build_clip_dataset(tmp_path / "clips", TINY_FORMAT, tmp_path / "cache", scanned=scanned)
    assert (report.files, report.decoded, len(dataset) > 0) == (2, 1, True)
    [(name, reason)] = [(s.path.name, s.reason) for s in report.skipped]
    assert (name, reason) == ("gone.mp4", f"a broken symbolic link (to {tmp_path / 'elsewhere' / 'gone.mp4'}, "
                                          "which does not exist)")


def test_a_failed_run_takes_back_only_its_own_skip_records_from_a_clip_cache_it_shares(tmp_path):
    """Two runs that both found the clip cache missing (so both made it, as far as each knows) write skip records
    into it; one fails and takes the cache back when it holds nothing but records (trainer.run_training). It took the
    other run's records with its own, and that run's broken files were decoded again by every later run. Now a
    record names its run, and a failed run takes the records away only when every one is its own."""
    root, cache = tmp_path / "dump", tmp_path / "cache"
    broken = {run: root / run / "broken.mp4" for run in ("a", "b")}
    for run, path in broken.items():
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
        ClipCache(cache, TINY_FORMAT, run=f"run-{run}").lookup(path)  # decoded: a skip record

    clear_skips_only(cache, "run-a")  # run a failed: run b's record stays, and so does a's beside it
    later = ClipCache(cache, TINY_FORMAT)
    assert [later.lookup(path)[1:] for path in broken.values()] == [("unreadable: the file is empty", False)] * 2
    clear_skips_only(cache, "run-b")
    assert sorted(p.name for p in cache.iterdir()) == ["skipped.jsonl", "skipped.lock"]

    alone = tmp_path / "alone"  # one run's own records only: taken back, lock and all
    ClipCache(alone, TINY_FORMAT, run="run-a").lookup(broken["a"])
    clear_skips_only(alone, "run-a")
    assert list(alone.iterdir()) == []


def test_thousands_of_broken_files_leave_one_skip_list_and_a_few_warning_lines(tmp_path, capsys):
    """A camera dump of empty .mp4s: each is tried once, remembered in one file (no per-file lock or record
    left in the cache), and the terminal names a few and counts the rest."""
    from mmgen.cli._finetune_display import SKIPS_SHOWN, display
    from mmgen.train.events import TrainEvent

    root, cache = tmp_path / "dump", tmp_path / "cache"
    write_clip(root / "good.mp4", ["red"], 1.0)
    for i in range(40):
        (root / f"empty_{i:02d}.mp4").write_bytes(b"")
    _, report = build_clip_dataset(root, TINY_FORMAT, cache)
    assert (report.files, report.decoded, len(report.skipped)) == (41, 1, 40)
    assert sorted(p.suffix for p in cache.iterdir()) == [".jsonl", ".lock", ".safetensors"]  # and SKIPPED's lock

    _, again = build_clip_dataset(root, TINY_FORMAT, cache)
    assert (again.decoded, again.reused, len(again.skipped)) == (0, 1, 40)
    assert {s.reason for s in again.skipped} == {s.reason for s in report.skipped}

    with display() as show:
        show(TrainEvent("data", 41, 41, data=report))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"data: {report.summary()}" and "40 skipped" in lines[0]
    assert [line.startswith("warning: skipped ") for line in lines[1:]] == [True] * SKIPS_SHOWN + [False]
    assert lines[-1] == f"warning: … and {40 - SKIPS_SHOWN} more files skipped (the run's log.jsonl lists each)"


def test_a_folder_of_surround_clips_gets_one_note_per_kind_not_one_per_file(tmp_path, capsys, caplog):
    """A note per file ("its 6-channel audio is mixed to mono") crowded the decoding bar of a folder of them."""
    from media_factory import write_many_streams, write_test_video

    from mmgen.cli._finetune_display import display
    from mmgen.train.events import TrainEvent

    root = tmp_path / "concert"
    root.mkdir()
    for name in ("a", "b", "c", "d"):
        write_test_video(root / f"{name}.mp4", seconds=0.5, size=(16, 16), channels=6)
    write_many_streams(root / "two angles.mkv", videos=2, audios=1)
    with caplog.at_level(logging.WARNING):
        _, report = build_clip_dataset(root, TINY_FORMAT, tmp_path / "cache")
    assert caplog.messages == []
    with display() as show:
        show(TrainEvent("data", 5, 5, data=report))
    assert capsys.readouterr().err.splitlines()[1:] == [
        "note: 4 files: surround audio mixed to mono (a.mp4, b.mp4, c.mp4 and 1 more)",
        "note: 1 file: extra video streams left out (stream 0 used) (two angles.mkv)",
    ]
