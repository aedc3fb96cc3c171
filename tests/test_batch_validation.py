"""A batch file is checked whole before any work: every problem is reported with its line, nothing is run.

The tiny test model is used by path (its header is all validation reads); no test here samples anything."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from media_factory import write_test_audio, write_test_video
from mmgen_cli import mmgen_env, run_mmgen
from tiny_model import save_tiny_model

from mmgen.pipelines.batch import BatchInvalid, plan_batch
from mmgen.pipelines.batch.schema import read_batch_file

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with the tiny model, one video and one sound, and mmgen's cache/config kept inside."""
    for name, value in mmgen_env(tmp_path).items():
        if name.startswith(("MMGEN_", "XDG_")):
            monkeypatch.setenv(name, value)
    save_tiny_model(tmp_path / "tiny.safetensors")
    (tmp_path / "clips").mkdir()
    write_test_video(tmp_path / "clips" / "beach.mp4", size=(32, 32))
    write_test_audio(tmp_path / "drums.m4a")
    return tmp_path


def write_jobs(folder: Path, text: str) -> Path:
    path = folder / "jobs.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def problems_of(path: Path, **options) -> dict[int, str]:
    with pytest.raises(BatchInvalid) as caught:
        plan_batch(path, **options)
    return {p.line: p.message for p in caught.value.problems}


def test_four_mistakes_are_all_reported_with_their_lines_and_nothing_runs(folder: Path):
    jobs = write_jobs(folder, """
        defaults:
          model: tiny.safetensors
          steps: two
        jobs:
          - kind: generate
            seeds: 3
          - kind: soundtrack
            input: clips/missing.mp4
          - kind: animate
            input: drums.m4a
            model: landscape
        """)
    # Offline, so the landscape model (downloadable from Google Drive) cannot be had either.
    result = run_mmgen("batch", jobs, env=mmgen_env(folder, MMGEN_OFFLINE="1"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"{jobs}:3: ") and "steps: 'two' is not a valid int" in lines[0]
    assert lines[1].startswith(f"{jobs}:6: ") and "unknown key 'seeds'" in lines[1]
    assert lines[2].startswith(f"{jobs}:8: ") and "missing.mp4 does not exist" in lines[2]
    assert lines[3].startswith(f"{jobs}:11: ") and "landscape" in lines[3] and "mmgen models import" in lines[3]
    assert lines[4] == f"mmgen: error: {jobs}: 4 problems found, nothing was run"
    assert len(lines) == 5 and "Traceback" not in result.stderr
    assert not (folder / "outputs").exists()


def test_output_names_must_stay_inside_the_output_folder(folder: Path):
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: generate
            name: ../escaped
          - kind: generate
            name: /tmp/absolute
          - kind: generate
            name: samples/../../sneaky
          - kind: soundtrack
            inputs: clips/*.mp4
            name: scored/{stem}
        """)
    problems = problems_of(jobs)
    assert set(problems) == {4, 6, 8}
    assert "'../escaped' must stay inside the output folder" in problems[4]
    assert "'/tmp/absolute' must be relative to the output folder" in problems[6]
    assert "must stay inside the output folder" in problems[8]
    assert not (folder / "outputs").exists() and not (folder.parent / "escaped.mp4").exists()


def test_an_output_name_through_a_symlink_loop_is_a_problem_with_its_line(folder: Path):
    (folder / "outputs").mkdir()
    (folder / "outputs" / "loop").symlink_to(folder / "outputs" / "loop")
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: generate
            name: loop/clip
        """)
    assert "'loop/clip' leads into a symlink loop" in problems_of(jobs)[4]


def test_a_good_file_expands_to_one_job_per_output(folder: Path):
    write_test_video(folder / "clips" / "city.mp4", size=(32, 32))
    jobs = write_jobs(folder, """
        output_dir: renders
        defaults: {model: tiny.safetensors, steps: 3, mix: 0.5}
        jobs:
          - kind: generate
            name: take
            num: 3
            seed: 10
          - kind: soundtrack
            inputs: clips/*.mp4
            name: scored/{stem}
            steps: 5
        """)
    plan = plan_batch(jobs)
    assert plan.output_dir == folder / "renders"
    assert [job.output for job in plan.jobs] == [
        "take_0000.mp4", "take_0001.mp4", "take_0002.mp4", "scored/beach.mp4", "scored/city.mp4"]
    assert [job.seed for job in plan.jobs[:3]] == [10, 11, 12]
    assert [job.run.sampling.steps for job in plan.jobs] == [3, 3, 3, 5, 5]
    assert plan.jobs[3].settings.mix == 0.5 and not hasattr(plan.jobs[0].settings, "mix")  # defaults go where they apply
    assert plan.jobs[3].seed != plan.jobs[4].seed  # no seed anywhere: each output's is fixed by its name...
    assert plan_batch(jobs).jobs[3].seed == plan.jobs[3].seed  # ...the same on every run
    assert set(plan.status.values()) == {"new"} and plan.downloads == ()


def test_a_retake_range_past_the_end_of_its_input_is_found_before_anything_runs(folder: Path):
    """beach.mp4 lasts 1.6 s: a retake of 1–3 s is reported at its job's line by `--dry-run`, not after the
    batch has loaded a model and made the jobs before it."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: retake
            input: clips/beach.mp4
            ranges: ["0.5:1.0"]
            name: fine
          - kind: retake
            input: clips/beach.mp4
            ranges: ["0.2:0.4", "1.0:3.0"]
            name: too-long
          - kind: retake
            input: clips/short-picture.mp4
            ranges: ["1.0:1.2"]
            name: past-the-picture
        """)
    write_test_video(folder / "clips" / "short-picture.mp4", seconds=0.8, audio_seconds=1.6)
    result = run_mmgen("batch", jobs, "--dry-run", env=mmgen_env(folder))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"{jobs}:9: ") and "--range 1:3" in lines[0] and "lasts only 1.6" in lines[0]
    assert lines[1].startswith(f"{jobs}:13: ") and "past the end of" in lines[1] and "picture (0.800 s)" in lines[1]
    assert lines[-1] == f"mmgen: error: {jobs}: 2 problems found, nothing was run"
    assert not (folder / "outputs").exists()


def test_a_picture_retake_of_a_clip_not_at_the_models_frame_size_is_found_before_anything_runs(folder: Path):
    """A video retake remakes frames in place, so its clip must be at the model's frame size: beach.mp4 is 32×32,
    the tiny model makes 16×16. Found while planning (the model's config is read from its file, not loaded)."""
    write_test_video(folder / "clips" / "small.mp4", size=(16, 16))
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, ranges: ["0.2:0.6"], video: true}
        jobs:
          - kind: retake
            input: clips/small.mp4
          - kind: retake
            input: clips/beach.mp4
        """)
    problems = problems_of(jobs)
    assert list(problems) == [6]
    assert "model's frame size 16x16" in problems[6] and "beach.mp4 is 32x32" in problems[6]


def test_options_are_checked_against_the_kind_and_the_whole_batch(folder: Path):
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: generate
            mix: 0.3
          - kind: soundtrack
            inputs: clips/*.mp4
            name: scored
          - kind: animate
            input: drums.m4a
            device: cpu
          - kind: remix
          - kind: generate
            name: same
          - kind: generate
            name: same
          - kind: soundtrack
          - kind: animate
            input: drums.m4a
            overlap: 0.9
        """)
    problems = problems_of(jobs)
    assert "'mix' is not an option of generate jobs (it is one of soundtrack)" in problems[4]
    assert "must contain {stem}" in problems[7]
    assert "device is set for the whole batch" in problems[10]
    assert "'remix' is not one of generate, soundtrack, animate" in problems[11]
    assert "same.mp4 is also written by job 5 (line 12)" in problems[14]
    assert "give exactly one input" in problems[16]
    assert "drums_animate.mp4 is also written by job 3 (line 8)" in problems[17]  # default names collide too
    assert "overlap: must be between 0.0 and 0.75, got 0.9" in problems[19]
    assert len(problems) == 8


def test_files_the_batch_did_not_write_are_not_replaced_without_overwrite(folder: Path):
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: generate
            name: mine
        """)
    (folder / "outputs").mkdir()
    (folder / "outputs" / "mine.json").write_text("{}")
    assert "mine.json exists and was not written by this batch" in problems_of(jobs)[3]
    assert plan_batch(jobs, overwrite=True).status[1] == "new"


def test_models_to_download_are_listed_and_refused_offline(folder: Path, monkeypatch: pytest.MonkeyPatch):
    models = folder / "presets" / "models"
    models.mkdir(parents=True)
    (models / "remote.yaml").write_text(textwrap.dedent("""
        arch: mm-unet
        weights:
          urls: [https://example.org/remote.safetensors]
          sha256: 3f5a000000000000000000000000000000000000000000000000000000000000
          size: 12000000
        """))
    jobs = write_jobs(folder, """
        jobs:
          - kind: animate
            input: drums.m4a
            model: remote
        """)
    (download,) = plan_batch(jobs).downloads
    assert (download.name, download.url, download.size) == ("remote", "https://example.org/remote.safetensors",
                                                            12000000)
    monkeypatch.setenv("MMGEN_OFFLINE", "1")
    assert "model remote must be downloaded, but MMGEN_OFFLINE=1 forbids it" in problems_of(jobs)[4]


def test_the_shipped_example_is_a_valid_batch_file():
    problems = []
    batch = read_batch_file(REPO / "presets" / "batch-example.yaml", problems)
    assert problems == []
    assert [job.kind for job in batch.jobs] == ["generate", "generate", "soundtrack", "animate"]
