"""A batch file is checked whole before any work: every problem is reported with its line, nothing is run.

The tiny test model is used by path (its header is all validation reads); no test here samples anything."""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest
from cli_here import run_here
from media_factory import write_test_audio, write_test_video
from mmgen_cli import mmgen_env
from tiny_model import register_tiny_with_upsampler, save_tiny_model

from mmgen.errors import ConfigError, UsageError
from mmgen.files import atomic_output, sha256_file
from mmgen.pipelines.batch import MANIFEST_NAME, BatchInvalid, plan_batch
from mmgen.pipelines.batch.manifest import Manifest, Record
from mmgen.pipelines.batch.schema import read_batch_file
from mmgen.pipelines.batch.targets import windows_note
from mmgen.terminal import LONGEST_VALUE
from mmgen.train.preview import preview_sampling
from mmgen.weights import ModelCache, registry
from mmgen.weights.convert import import_weights
from mmgen.weights.identity import model_sha256s

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
    result = run_here("batch", jobs, env=mmgen_env(folder, MMGEN_OFFLINE="1"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"{jobs}:3: ") and "steps: expected an integer, got 'two'" in lines[0]
    assert lines[1].startswith(f"{jobs}:6: ") and "unknown key 'seeds'" in lines[1]
    assert lines[2].startswith(f"{jobs}:8: ") and "missing.mp4 does not exist" in lines[2]
    assert lines[3].startswith(f"{jobs}:11: ") and "landscape" in lines[3] and "mmgen models import" in lines[3]
    assert lines[4] == f"mmgen: error: {jobs}: 4 problems found, nothing was run"
    assert len(lines) == 5 and "Traceback" not in result.stderr
    assert not (folder / "outputs").exists()


def test_a_huge_name_is_refused_in_a_line_that_shows_its_start_and_end_not_all_of_it(folder: Path):
    """A 15 MB `name:` was refused with all 15 MB of it in the line (and a minute to say it). A value too long to read
    is shown as its start and its end — the file name's end, its extension — around its full length."""
    name = "x" * 200_000
    jobs = write_jobs(folder, f"""
        defaults: {{model: tiny.safetensors}}
        jobs:
          - {{kind: generate, name: {name}}}
        """)
    result = run_here("batch", jobs, "--dry-run", env=mmgen_env(folder))
    assert result.returncode == 2, result.stderr
    line = result.stderr.splitlines()[0]
    assert line.startswith(f"{jobs}:3: ") and len(line) < 2 * LONGEST_VALUE, line[:1000]
    assert f"…({len(str(folder / 'outputs' / name)) + len('.mp4'):,} characters)…xxx" in line
    assert "xxx.mp4: its name is 200004 bytes, longer than the 255" in line


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


def test_a_name_whose_folder_is_a_file_or_a_stem_of_dots_is_refused_while_planning(folder: Path):
    """`name: c/b` where c is a file in the output folder, and `x.json/y` beside a job `x` (which writes x.json),
    failed only when they ran (FileExistsError, exit 1); an input named `...mp4` (stem "..") under `{stem}/z`
    wrote outside the output folder. All three are problems of the file now, with their lines."""
    (folder / "outputs").mkdir()
    (folder / "outputs" / "c").write_text("mine")
    (folder / "clips" / "...mp4").write_bytes((folder / "clips" / "beach.mp4").read_bytes())
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate, name: c/b}
          - {kind: generate, name: x}
          - {kind: generate, name: x.json/y}
          - {kind: soundtrack, input: clips/...mp4, name: "{stem}/z"}
          - {kind: generate, name: fine/sub/take}
        """)
    problems = problems_of(jobs)
    assert problems[3].endswith(f"job 1 (generate): cannot write into {folder / 'outputs' / 'c'}: it is a file, not a folder")
    assert problems[5] == (f"job 3 (generate): name: 'x.json/y' needs a folder {folder / 'outputs' / 'x.json'} where "
                           "job 2 (line 4) writes a file; give one of them another `name`")
    assert problems[6] == ("job 4 (soundtrack): the output name '../z' made from the input '...mp4' must stay inside "
                           "the output folder (no '..') (rename the input)")
    assert set(problems) == {3, 5, 6}  # a name's folders are fine where nothing is in the way
    assert {p.name for p in (folder / "outputs").iterdir()} == {"c"} and not (folder / "z.mp4").exists()


def test_an_output_name_made_from_an_input_s_name_is_refused_where_the_same_name_written_would_be(folder: Path):
    """Inputs named `x\\y.mp4` and with a newline gave outputs named so without a word, and `c:z.mp4` only a note that
    Windows refuses ':', where `name:` written so is refused (a `\\`, a control character, a drive). The name an
    input's name makes is checked as a `name:` is, the input named."""
    for odd in ("x\\y", "a\nb", "c:z"):
        shutil.copy(folder / "clips" / "beach.mp4", folder / "clips" / f"{odd}.mp4")
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: soundtrack, inputs: "clips/*.mp4"}
          - {kind: soundtrack, inputs: "clips/*.mp4", name: "{stem}"}
          - {kind: soundtrack, inputs: "clips/*.mp4", name: "scored/{stem}"}
        """)
    with pytest.raises(BatchInvalid) as caught:
        plan_batch(jobs)
    said = [(p.line, p.message if p.line == 3 else p.message.split(" made from")[0]) for p in caught.value.problems]
    assert said == [(3, "job 1 (soundtrack): the output name 'a\\nb_soundtrack' made from the input 'a\\nb.mp4' must "
                        "not hold control characters (a newline, tab, NUL, ...) (rename the input)"),
                    (3, "job 1 (soundtrack): the output name 'c:z_soundtrack' made from the input 'c:z.mp4' reads as "
                        "drive C: on Windows (a name is relative to the output folder) (rename the input)"),
                    (3, "job 1 (soundtrack): the output name 'x\\\\y_soundtrack' made from the input 'x\\\\y.mp4': write "
                        "paths with / ; \\ is not a folder separator here (rename the input)"),
                    *((4, f"job 2 (soundtrack): the output name {odd!r}") for odd in ("a\nb", "c:z", "x\\y")),
                    *((5, f"job 3 (soundtrack): the output name {'scored/' + odd!r}") for odd in ("a\nb", "x\\y"))]
    # scored/c:z is no drive: a note says Windows refuses ':'


def test_output_names_must_be_visible_file_names(folder: Path):
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate, name: "."}
          - {kind: generate, name: ".mp4"}
          - {kind: generate, name: "take\\r"}
          - {kind: generate, name: "two\\nlines"}
          - {kind: generate, name: ".cache/take"}
          - {kind: generate, name: "scored/take"}
        """)
    problems = problems_of(jobs)  # exit 2 from `mmgen batch`, every problem listed
    assert "name: '.' must name a visible file" in problems[3]
    assert "name: '.mp4' must name a visible file" in problems[4]
    assert "'take\\r' must not hold control characters" in problems[5]
    assert "'two\\nlines' must not hold control characters" in problems[6]
    assert "'.cache/take' must name a visible file" in problems[7]
    assert len(problems) == 5  # a folder in the name is fine


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


def test_a_picture_the_encoder_cannot_take_is_found_before_anything_runs(folder: Path):
    """A 20000×2 PNG clip must be re-encoded for the job's mp4, which libx264 cannot do at that size: `--dry-run`
    reports it at its job's line, as `mmgen soundtrack` refuses it before any sampling; the batch ran every job
    before it first, and then failed."""
    write_test_video(folder / "clips" / "strip.mov", seconds=0.3, size=(2, 20000), codec="png", audio=False)
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: soundtrack
            input: clips/beach.mp4
          - kind: soundtrack
            input: clips/strip.mov
        """)
    result = run_here("batch", jobs, "--dry-run", env=mmgen_env(folder))
    assert result.returncode == 2, result.stderr
    first, last = result.stderr.strip().splitlines()
    assert first.startswith(f"{jobs}:6: job 2 (soundtrack): cannot write ") and "libx264 cannot encode" in first
    assert last == f"mmgen: error: {jobs}: 1 problem found, nothing was run"


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
    result = run_here("batch", jobs, "--dry-run", env=mmgen_env(folder))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"{jobs}:9: ") and ": ranges 1.0:3.0: " in lines[0] and "lasts only 1.6" in lines[0]
    assert lines[1].startswith(f"{jobs}:13: ") and "picture lasts only 0.800 s, and the sound is remade" in lines[1]
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
    assert "'mix' is not an option of generate jobs (it belongs to soundtrack jobs)" in problems[4]
    assert "must contain {stem}" in problems[7]
    assert "'device' is set for the whole batch (device: under defaults:, or --device)" in problems[10]
    assert "'remix' is not one of generate, soundtrack, animate" in problems[11]
    assert "same.mp4 is written by jobs 5 (line 12), 6 (line 14); give each a different `name`" in problems[14]
    assert "give exactly one input" in problems[16]
    assert "drums_animate.mp4 is written by jobs 3 (line 8), 8 (line 17)" in problems[17]  # default names collide too
    assert "overlap: must be between 0 and 0.75, got 0.9" in problems[19]
    assert len(problems) == 8


def test_a_key_written_as_a_flag_or_for_another_command_says_whose_it_is(tmp_path: Path):
    """A job's key written as the command line's flag (`--range`, `guidance-scale`) of another kind's option, or a
    finetune setting, was only "unknown key" with no hint of where it belongs. generate's own --batch-size is no
    finetune setting to its user, and `mmgen batch`'s flags are the command's."""
    jobs = write_jobs(tmp_path, """
        jobs:
          - kind: generate
            --mix: 0.3
            guidance-scale: 2
            --range: ["0:1"]
            --video-only: true
            lr: 0.001
            --device: cpu
            --batch-size: 4
            overwrite: true
        """)
    done = run_here("batch", jobs, "--dry-run", env=mmgen_env(tmp_path))
    where = f"{jobs}:" + "{}: job 1 (generate): "
    assert done.returncode == 2 and done.stderr.splitlines()[:-1] == [
        where.format(3) + "'--mix' is not an option of generate jobs (mix belongs to soundtrack jobs)",
        where.format(4) + "'guidance-scale' is not an option of generate jobs (guidance_scale belongs to soundtrack, "
                          "animate and retake jobs)",
        where.format(5) + "'--range' is not an option of generate jobs (did you mean ranges? it belongs to retake jobs)",
        where.format(6) + "'--video-only' is not an option of generate jobs (did you mean video? it belongs to retake "
                          "jobs)",
        where.format(7) + "'lr' is a setting of finetune, which a batch does not run (its jobs: generate, soundtrack, "
                          "animate, retake)",
        where.format(8) + "'--device' is set for the whole batch (device: under defaults:, or --device)",  # as typed
        where.format(9) + "'--batch-size' is generate's --batch-size, which a batch does not take: it samples a job's "
                          "clips one at a time, and each comes out the same",
        where.format(10) + "'overwrite' is a flag of `mmgen batch` (--overwrite), for the whole batch, not a key",
    ], done.stderr


def test_many_jobs_writing_one_file_are_one_line_and_names_one_disk_holds_as_one_are_refused(folder: Path):
    """1,000 jobs named `same` were 999 lines "same.mp4 is also written by job 1". And `Clip` and `clip` passed,
    although a macOS or Windows disk holds the two as one file (so does é written as one character or two)."""
    many = "".join("  - {kind: generate, name: same}\n" for _ in range(1000))
    problems = problems_of(write_jobs(folder, f"defaults: {{model: tiny.safetensors}}\njobs:\n{many}"))
    assert problems == {4: "same.mp4 is written by jobs 1 (line 3), 2 (line 4), 3 (line 5) … and 997 more; give "
                           "each a different `name`"}

    problems = problems_of(write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate, name: Clip}
          - {kind: generate, name: clip}
          - {kind: generate, name: "caf\u00e9"}
          - {kind: generate, name: "cafe\u0301"}
        """))
    assert problems == {
        4: "Clip.mp4 and clip.mp4 differ only in case or Unicode form (one file on a macOS or Windows disk), written "
           "by jobs 1 (line 3), 2 (line 4); give each a different `name`",
        6: "caf\u00e9.mp4 and cafe\u0301.mp4 differ only in case or Unicode form (one file on a macOS or Windows disk), "
           "written by jobs 3 (line 5), 4 (line 6); give each a different `name`"}


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


def test_a_folder_at_an_outputs_name_is_refused_with_or_without_overwrite_and_never_moved(folder: Path):
    """A folder of the user's at a job's sidecar name (outputs/mine.json/) was refused as a file "not written by this
    batch (pass --overwrite …)", and with overwrite renamed to a hidden `.mine.….partial.json` that a later clean-up
    would take for a leftover; at its mp4 name, the dry run said "new". A folder at any of a job's outputs is refused
    while planning, whatever overwrite says, with no hint to overwrite it, and stays where it was."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: generate
            name: mine
        """)
    for name in ("mine.json", "mine.mp4", "mine_frames.png"):
        kept = folder / "outputs" / name / "keep.txt"
        kept.parent.mkdir(parents=True)
        kept.write_text("precious")
        for overwrite in (False, True):
            assert problems_of(jobs, overwrite=overwrite) == {
                3: f"job 1 (generate): cannot write {kept.parent}: it is a directory"}
        assert kept.read_text() == "precious"
        shutil.rmtree(kept.parent)


def test_an_output_folder_named_too_long_is_the_same_error_from_python_as_on_the_command_line(folder: Path):
    """plan_batch(jobs, "/tmp/ppp…") with a name over 255 bytes raised a bare OSError (errno 36) from reading the
    manifest inside it; `mmgen batch` said one line, exit 2. The API raises that line as a UsageError."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: generate
        """)
    long = folder / ("p" * 300)
    line = f"{long}/batch-manifest.jsonl: file name too long (the filesystem takes at most 255 bytes per name)"
    with pytest.raises(UsageError) as caught:
        plan_batch(jobs, long)
    assert (str(caught.value), caught.value.exit_code) == (line, 2)
    result = run_here("batch", jobs, "-o", long, "--dry-run", env=mmgen_env(folder))
    assert (result.returncode, result.stderr) == (2, f"mmgen: error: {line}\n")


def my_own_output_planned(folder: Path):
    """A one-job batch whose output, outputs/mine.mp4, is the user's own file, planned with overwrite: (the batch
    file, that file, the plan)."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, steps: 1, previews: false}
        jobs:
          - kind: generate
            name: mine
        """)
    (folder / "outputs").mkdir()
    mine = folder / "outputs" / "mine.mp4"
    mine.write_bytes(b"my own video")
    return jobs, mine, plan_batch(jobs, overwrite=True)


def test_the_batch_api_refuses_a_wrong_argument_before_any_work_and_overwrite_no_replaces_nothing(folder: Path):
    """`overwrite="no"` (a truthy str) was taken as True: plan_batch and run_batch replaced the user's own
    outputs/mine.mp4 and said the job was done. plan_batch(5), run_batch(None), run_batch("jobs.yaml") and
    run_batch(plan, progress=5) were a TypeError or an AttributeError from inside."""
    from mmgen.errors import InvalidArgument
    from mmgen.pipelines.batch import run_batch

    jobs, mine, plan = my_own_output_planned(folder)
    for call, says in [
        (lambda: plan_batch(jobs, overwrite="no"), "plan_batch(): overwrite must be True or False, got 'no'"),
        (lambda: run_batch(plan, overwrite="no"), "run_batch(): overwrite must be True or False, got 'no'"),
        (lambda: plan_batch(5), "plan_batch(): path must be a path (a str or a pathlib.Path), got 5"),
        (lambda: plan_batch(jobs, device=5), "plan_batch(): device must be a str or None, got 5"),
        (lambda: run_batch(None), "run_batch(): plan must be a Plan, got None"),
        (lambda: run_batch("jobs.yaml"), "run_batch(): plan must be a Plan, got 'jobs.yaml'"),  # (a long one is cut)
        (lambda: run_batch(plan, progress=5), "run_batch(): progress must be a function taking a ProgressEvent, got 5"),
        (lambda: run_batch(plan, progress=None), "run_batch(): progress must be a function taking a ProgressEvent, got None"),
        (lambda: run_batch(plan, fail_fast=1), "run_batch(): fail_fast must be True or False, got 1"),
        (lambda: run_batch(plan, on_outcome="x"), "run_batch(): on_outcome must be a function, got 'x'"),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            call()
        assert str(refused.value) == says
    assert mine.read_bytes() == b"my own video"
    assert sorted(p.name for p in (folder / "outputs").iterdir()) == ["mine.mp4"]  # no manifest, no lock: no work


def test_run_plan_and_plan_batchs_local_rank_are_checked_before_any_work(folder: Path):
    """run_plan (run_batch's per-process part, also public) checked nothing: run_plan("jobs.yaml") was an
    AttributeError, run_plan(plan, overwrite="no") replaced the user's file; plan_batch(local_rank="0") was taken
    (and used only where CUDA is); Share(2, 2) ran no job at all, Share(0, 0) was a ZeroDivisionError."""
    from mmgen.errors import InvalidArgument, InvalidSetting
    from mmgen.pipelines.batch import Share, run_plan

    jobs, mine, plan = my_own_output_planned(folder)
    for call, says in [
        (lambda: run_plan("jobs.yaml"), "run_plan(): plan must be a Plan, got 'jobs.yaml'"),
        (lambda: run_plan(plan, overwrite="no"), "run_plan(): overwrite must be True or False, got 'no'"),
        (lambda: run_plan(plan, share=(0, 1)), "run_plan(): share must be a Share, got (0, 1)"),
        (lambda: run_plan(plan, fail_fast=None), "run_plan(): fail_fast must be True or False, got None"),
        (lambda: run_plan(plan, progress=None), "run_plan(): progress must be a function taking a ProgressEvent, got None"),
        (lambda: run_plan(plan, on_outcome=1), "run_plan(): on_outcome must be a function, got 1"),
        (lambda: plan_batch(jobs, local_rank="0"), "plan_batch(): local_rank must be None or a whole number of at "
                                                   "least 0, got '0'"),
        (lambda: plan_batch(jobs, local_rank=-1), "plan_batch(): local_rank must be None or a whole number of at "
                                                  "least 0, got -1"),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            call()
        assert str(refused.value) == says
    for rank, world_size, says in [(2, 2, "rank: must be less than world_size (2), got 2"),
                                   (0, 0, "world_size: must be a whole number of at least 1, got 0"),
                                   ("0", 1, "rank: must be a whole number of at least 0, got '0'")]:
        with pytest.raises(InvalidSetting) as refused:
            Share(rank, world_size)
        assert str(refused.value) == says
    assert plan_batch(jobs, overwrite=True, local_rank=0).jobs == plan.jobs
    assert mine.read_bytes() == b"my own video"
    assert sorted(p.name for p in (folder / "outputs").iterdir()) == ["mine.mp4"]  # no manifest, no lock: no work


def test_a_file_the_batch_wrote_is_replaced_only_as_it_left_it(folder: Path):
    """The manifest's record of what this batch file wrote (size, sha256) decides: a changed job may replace its
    own earlier output, but not once the user edited it, nor another batch file's output."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate, name: g, steps: 2}
        """)
    out, manifest = folder / "outputs", Manifest(folder / "outputs")
    out.mkdir()
    (out / "g.mp4").write_bytes(b"the batch's clip")
    (job,) = plan_batch(jobs, overwrite=True).jobs  # recorded as `mmgen batch` does when the job ends
    manifest.append(Record("g.mp4", "done", job.hash, 1, "generate", job.seed, batch=str(jobs.resolve()),
                           files=manifest.describe_files({"mp4": out / "g.mp4"})))
    assert plan_batch(jobs).status[1] == "done"
    jobs.write_text(jobs.read_text().replace("steps: 2", "steps: 3"))
    assert plan_batch(jobs).status[1] == "changed"  # its own output, as written: redone without --overwrite

    (out / "g.mp4").write_bytes(b"the user's edit")
    assert "g.mp4 exists and was changed since this batch wrote it (pass overwrite=True" in problems_of(jobs)[3]
    assert plan_batch(jobs, overwrite=True).status[1] == "changed"
    (out / "g.mp4").write_bytes(b"the batch's clip")
    other = folder / "other.yaml"
    other.write_text(jobs.read_text())  # the same job, from another batch file
    assert "g.mp4 exists and was not written by this batch (pass overwrite=True" in problems_of(other)[3]


def test_a_merged_job_s_problem_is_at_its_own_line_and_one_from_the_anchor_says_so(folder: Path):
    """With `<<: *gen` a job's own `seed: -1` was reported at the anchor's `seed:` line (yaml's merge puts the anchor's
    keys first, and the first line of a key was kept): its own key is at its own line; a value the anchor gave is at
    the job's line, saying where it came from."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - &gen
            kind: generate
            steps: 2
            seed: -5
          - <<: *gen
            seed: -1
            name: b
          - <<: [*gen]
            name: c
            steps: -3
        """)
    assert problems_of(jobs) == {
        6: "job 1 (generate): seed: must be between 0 and 4294967295, got -5",
        8: "job 2 (generate): seed: must be between 0 and 4294967295, got -1",
        10: "job 3 (generate): seed (from <<: *gen, line 6): must be between 0 and 4294967295, got -5",
        12: "job 3 (generate): steps: must be between 1 and 1000, got -3",
    }


def test_a_rule_between_settings_says_which_one_a_merge_gave_as_a_single_setting_s_check_does(folder: Path):
    """The `(from <<: *anchor, line N)` note was in the checks of one value alone: a rule between settings (a range
    past the clip's end, a guidance scale without gradient guidance, a seed too large for the clips asked for) named
    a setting the anchor gave as though the job had written it, at the job's line. Said as a single setting's check
    says it."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - &cut
            kind: retake
            input: clips/beach.mp4
            ranges: ["0.2:9"]
          - <<: *cut
            name: again
          - &scored
            kind: soundtrack
            input: clips/beach.mp4
            guidance_scale: 2.0
          - <<: *scored
            guidance: replacement
          - &many
            kind: generate
            seed: 4294967290
          - <<: *many
            num: 10
        """)
    problems = problems_of(jobs)
    assert problems[6].startswith("job 1 (retake): ranges 0.2:9: "), problems  # the anchor's own job: its own line
    assert problems[7].startswith("job 2 (retake): ranges (from <<: *cut, line 6) 0.2:9: "), problems
    assert problems[13].startswith("job 4 (soundtrack): guidance_scale (from <<: *scored, line 12) 2: "), problems
    assert problems[18].startswith("job 6 (generate): seed (from <<: *many, line 17): with num 10, "), problems


def test_a_job_done_with_a_seed_past_32_bits_is_done_under_the_seed_its_refusal_names(folder: Path):
    """mmgen before 2026-12 ran `seed: 9223372036854775806`; now it is refused with `seed 4294967294 makes what it
    made before` (torch keeps a seed's low 32 bits), and a file following that hint marked the job `changed`, its
    manifest hash being the big seed's: identical clips were made again. A record of a seed 2^32 or more that is
    the job's seed in its low 32 bits is the job done; any other seed is still a changed one."""
    from mmgen.pipelines.batch.job_hash import digest

    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate, name: g, steps: 2, num: 2, seed: 4294967294}
        """)
    out, manifest = folder / "outputs", Manifest(folder / "outputs")
    out.mkdir()
    for job, recorded in zip(plan_batch(jobs).jobs, (9223372036854775806, 2**33 + 1), strict=True):
        (out / job.output).write_bytes(b"the batch's clip")  # as mmgen before 2026-12 recorded the big seed's job
        manifest.append(Record(job.output, "done", digest({**job.payloads[0], "seed": recorded}), job.number,
                               "generate", recorded, batch=str(jobs.resolve()),
                               files=manifest.describe_files({"mp4": out / job.output})))
    assert plan_batch(jobs).status == {1: "done", 2: "changed"}  # 2^33 + 1 is seed 1, not 4294967295
    jobs.write_text(jobs.read_text().replace("steps: 2", "steps: 3"))
    assert plan_batch(jobs).status == {1: "changed", 2: "changed"}


def test_a_batch_names_a_model_by_its_weights_file_and_jobs_done_under_its_registry_sha256_stay_done(folder: Path):
    """A batch names a model as the rest of mmgen does: by the sha256 of the weights file it loads, not by the
    registry's sha256 of the file that is made from (batches did until 2026-12-01, and still must for a model not
    fetched yet, which has no weights file). A job recorded done under the registry's sha256 — by an older mmgen,
    or planned before the model was fetched — stays done once the model is here; a changed job is still redone."""
    tiny = folder / "tiny.safetensors"
    (folder / "presets" / "models").mkdir(parents=True)
    (folder / "presets" / "models" / "mine.yaml").write_text(
        f"arch: mm-unet\nweights:\n  urls: [{tiny.as_uri()}]\n  sha256: {sha256_file(tiny)}\n")
    jobs = write_jobs(folder, """
        jobs:
          - {kind: generate, name: g, model: mine, steps: 2}
        """)
    (before,) = plan_batch(jobs).jobs  # not fetched yet: named by the registry's sha256
    out, manifest = folder / "outputs", Manifest(folder / "outputs")
    out.mkdir()
    (out / "g.mp4").write_bytes(b"the batch's clip")  # recorded as `mmgen batch` does when the job ends
    manifest.append(Record("g.mp4", "done", before.hash, 1, "generate", before.seed, batch=str(jobs.resolve()),
                           files=manifest.describe_files({"mp4": out / "g.mp4"})))
    cached = import_weights(tiny, "mine")  # as `mmgen models pull mine` would leave it
    assert cached.sha256 != cached.source_sha256 == sha256_file(tiny)

    assert model_sha256s("mine", registry.load_registry(), ModelCache()) == (cached.sha256, cached.source_sha256)
    plan = plan_batch(jobs)
    assert plan.jobs[0].hash != before.hash and plan.status[1] == "done"
    jobs.write_text(jobs.read_text().replace("steps: 2", "steps: 3"))
    assert plan_batch(jobs).status[1] == "changed"


def save_folder_adapter(folder: Path, path: Path, value: float) -> Path:
    """An adapter on the folder's tiny model, every A and B entry `value` (what training made, standing in)."""
    import torch

    from mmgen.adapters import BaseModel, LoraSpec, adapter_parameters, attach, save_adapter
    from mmgen.weights import load_model

    loaded = load_model(folder / "tiny.safetensors")
    attach(loaded.model, LoraSpec(4, 4.0, "attention"))
    with torch.no_grad():
        for _, p in adapter_parameters(loaded.model):
            p.fill_(value)
    save_adapter(path, loaded.model, LoraSpec(4, 4.0, "attention"), BaseModel.of(loaded))
    return path


def test_a_job_s_hash_is_the_sha256_of_its_payload_as_sorted_ascii_json():
    """The manifest keeps each job's hash for the next run to compare (batch.job_hash): written any other way (keys
    in another order, é as UTF-8, other separators) the same job would hash anew, and every done job be redone."""
    from mmgen.pipelines.batch.job_hash import digest

    written = b'{"input": null, "kind": "generate", "options": {"name": "\\u00e9t\\u00e9"}, "seed": 7}'
    payload = {"seed": 7, "options": {"name": "été"}, "kind": "generate", "input": None}
    assert digest(payload) == hashlib.sha256(written).hexdigest()


def test_a_job_done_with_an_adapter_is_redone_once_the_adapter_file_or_registered_name_holds_other_weights(
        folder: Path):
    """A batch named each adapter only by its path or name: after `finetune --resume` trained the file again, or
    `models import --name N --overwrite` replaced a registered one, the job's old output stayed "done". An adapter
    counts by its file's sha256 and its weight, as the model does; a job without adapters keeps the hash it had."""
    from mmgen.adapters.registration import register

    plain = write_jobs(folder, """
        defaults: {model: tiny.safetensors, precision: fp32}
        jobs:
          - {kind: generate, name: g, steps: 2, seed: 1}
        """)
    assert plan_batch(plain).jobs[0].hash == "3901145a3e178303a9a80201392aec8d4cafb0f24d38baadaa5edb8b51d78de8"  # pinned
    adapter = save_folder_adapter(folder, folder / "a.safetensors", 0.01)
    register(adapter, "style")
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, steps: 2}
        jobs:
          - {kind: generate, name: by_path, adapter: a.safetensors}
          - {kind: generate, name: by_name, adapter: style}
        """)
    out, manifest = folder / "outputs", Manifest(folder / "outputs")
    out.mkdir()
    for job in plan_batch(jobs).jobs:  # recorded as `mmgen batch` does when the job ends
        (out / job.output).write_bytes(b"the batch's clip")
        manifest.append(Record(job.output, "done", job.hash, job.number, "generate", job.seed,
                               batch=str(jobs.resolve()), files=manifest.describe_files({"mp4": out / job.output})))
    assert plan_batch(jobs).status == {1: "done", 2: "done"}
    save_folder_adapter(folder, adapter, 0.02)  # trained again, in place
    assert plan_batch(jobs).status == {1: "changed", 2: "done"}
    register(adapter, "style", overwrite=True)
    assert plan_batch(jobs).status == {1: "changed", 2: "changed"}
    jobs.write_text(jobs.read_text().replace("adapter: style", "adapter: 'style:0.5'"))
    weighed = plan_batch(jobs).jobs[1].hash
    jobs.write_text(jobs.read_text().replace("style:0.5", "style:1"))
    assert plan_batch(jobs).jobs[1].hash != weighed


def test_a_file_left_by_an_interrupted_run_of_the_job_may_be_replaced(folder: Path):
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate, name: g}
        """)
    out, manifest = folder / "outputs", Manifest(folder / "outputs")
    out.mkdir()
    (out / "g.json").write_text("{}")  # there before the run started
    (job,) = plan_batch(jobs, overwrite=True).jobs
    manifest.append(Record("g.mp4", "started", job.hash, 1, "generate", job.seed, batch=str(jobs.resolve())))
    (out / "g.mp4").write_bytes(b"written, then killed before its done record")
    os.utime(out / "g.json", ns=(0, 0))
    assert "g.json exists and was not written by this batch" in problems_of(jobs)[3]
    (out / "g.json").unlink()
    assert plan_batch(jobs).status[1] == "incomplete"


def project(folder: Path) -> Path:
    """A project folder inside `folder`: a clip, the batch file, its outputs in out/ (the model beside it)."""
    root = folder / "project"
    (root / "clips").mkdir(parents=True)
    shutil.copy2(folder / "clips" / "beach.mp4", root / "clips" / "beach.mp4")
    write_jobs(root, """
        output_dir: out
        defaults: {model: ../tiny.safetensors, steps: 2}
        jobs:
          - {kind: soundtrack, input: clips/beach.mp4}
          - {kind: generate, name: g}
        """)
    return root


def test_a_finished_project_folder_renamed_or_copied_whole_is_done_where_it_lands(folder: Path):
    """A job is what its input is (size, mtime), not where the project sits: an input inside the batch file's
    folder is named from there, and a record names its batch file from the output folder. Renamed, or copied as
    `cp -a` does, a finished batch is all done; it was `changed` (the input's path was hashed) and its outputs
    `not written by this batch` (the batch file's path was recorded)."""
    jobs = project(folder) / "jobs.yaml"
    out, manifest = jobs.parent / "out", Manifest(jobs.parent / "out")
    out.mkdir()
    for job in plan_batch(jobs).jobs:  # recorded as `mmgen batch` does when the job ends
        (out / job.output).write_bytes(f"the batch's {job.output}".encode())
        manifest.append(Record(job.output, "done", job.hash, job.number, job.kind, job.seed,
                               batch=manifest.batch_named(jobs), files=manifest.describe_files({"mp4": out / job.output})))
    renamed = folder / "renamed"
    os.rename(jobs.parent, renamed)
    shutil.copytree(renamed, folder / "copied", copy_function=shutil.copy2)  # sizes and mtimes kept, inodes new
    for moved in (renamed, folder / "copied"):
        result = run_here("batch", moved / "jobs.yaml", "--dry-run", "--json", env=mmgen_env(folder))
        assert result.returncode == 0, result.stderr
        assert [json.loads(line)["status"] for line in result.stdout.splitlines()] == ["done", "done"], result.stdout
    os.utime(renamed / "clips" / "beach.mp4", ns=(0, 0))  # the input itself changed: its job is redone
    assert plan_batch(renamed / "jobs.yaml").status == {1: "changed", 2: "done"}


def test_two_projects_inputs_alike_in_path_size_and_mtime_are_two_inputs_to_a_shared_output_folder(folder: Path):
    """Two projects, each `in/song.mp4` (equal size and mtime, other content: copies restored from one archive),
    one output folder: the second project's job is its own input's, never done by the first's output — it is the
    first batch's file, refused without --overwrite. Nor a batch file in the folder above, with an input at the
    same path from there, writing into the project's own output folder."""
    clip = folder / "clips" / "beach.mp4"
    for name in ("A", "B", "A/up"):
        (folder / name / "in").mkdir(parents=True)
        data = bytearray(clip.read_bytes())
        data[-1] ^= name.count("B") + 2 * name.count("up")  # alike in size, not in content
        (folder / name / "in" / "song.mp4").write_bytes(bytes(data))
        os.utime(folder / name / "in" / "song.mp4", ns=(10**18, 10**18))
        write_jobs(folder / name, "defaults: {model: %s, steps: 2}\njobs:\n  - {kind: soundtrack, input: in/song.mp4}\n"
                   % (folder / "tiny.safetensors"))
    for first, second, shared in (("A", "B", folder / "shared"), ("A/up", "A", folder / "A" / "up" / "out")):
        out, manifest = shared, Manifest(shared)
        out.mkdir(exist_ok=True)
        (job,) = plan_batch(folder / first / "jobs.yaml", output_dir=out).jobs
        (out / job.output).write_bytes(b"the first batch's soundtrack")
        manifest.append(Record(job.output, "done", job.hash, job.number, job.kind, job.seed,
                               batch=manifest.batch_named(folder / first / "jobs.yaml"),
                               files=manifest.describe_files({"mp4": out / job.output})))
        result = run_here("batch", folder / second / "jobs.yaml", "-o", out, "--dry-run", env=mmgen_env(folder))
        assert result.returncode == 2 and "was not written by this batch" in result.stderr, result.stderr


def project_done_before_2026_12_02(folder: Path) -> Path:
    """A project (see `project`) finished by mmgen before 2026-12-02, as it recorded its jobs: the input hashed by
    its real path, the batch file named by its real path. Its batch file."""
    from mmgen.pipelines.batch.job_hash import digest

    jobs = project(folder) / "jobs.yaml"
    out, manifest = jobs.parent / "out", Manifest(jobs.parent / "out")
    out.mkdir()
    real_input = str((jobs.parent / "clips" / "beach.mp4").resolve())
    soundtrack, generate = plan_batch(jobs).jobs
    assert soundtrack.payloads[0]["input"]["path"] == "../clips/beach.mp4"  # from the output folder
    older = digest({**soundtrack.payloads[0], "input": {**soundtrack.payloads[0]["input"], "path": real_input},
                    "seed": soundtrack.seed})
    for job, recorded in ((soundtrack, older), (generate, generate.hash)):
        (out / job.output).write_bytes(b"the batch's clip")
        manifest.append(Record(job.output, "done", recorded, job.number, job.kind, job.seed,
                               batch=str(jobs.resolve()), files=manifest.describe_files({"mp4": out / job.output})))
    return jobs


def test_a_job_recorded_by_its_input_s_and_batch_file_s_real_paths_is_done_where_nothing_moved(folder: Path):
    """mmgen before 2026-12-02 hashed an input by its real path, and recorded its batch file's: those jobs stay done
    in place (a hash variant), and their outputs stay the batch's own."""
    jobs = project_done_before_2026_12_02(folder)
    assert plan_batch(jobs).status == {1: "done", 2: "done"}
    jobs.write_text(jobs.read_text().replace("steps: 2", "steps: 3"))
    assert plan_batch(jobs).status == {1: "changed", 2: "changed"}  # its own outputs: no --overwrite needed



def upscaled_job_done(folder: Path, by_older_mmgen: bool = False) -> tuple[Path, Path]:
    """A batch of one upscaled clip (the tiny model and its `tiny-sr`, ddim 2 steps), recorded done: its hash as this
    mmgen writes it, or as mmgen before 2026-12-03 did, without its upsampler's sampling. The batch file, and the
    upsampler's entry."""
    from mmgen.pipelines.batch.job_hash import digest

    register_tiny_with_upsampler(folder)
    jobs = write_jobs(folder, """
        output_dir: out
        defaults: {model: tiny, steps: 1, device: cpu, upscale: true, previews: false}
        jobs:
          - {kind: generate, name: clip, seed: 1}
        """)
    out, manifest = folder / "out", Manifest(folder / "out")
    out.mkdir()
    (job,) = plan_batch(jobs).jobs
    older = digest({**{k: v for k, v in job.payloads[0].items() if k != "upsampling"}, "seed": job.seed})
    (out / job.output).write_bytes(b"the batch's clip")
    manifest.append(Record(job.output, "done", older if by_older_mmgen else job.hash, job.number, job.kind, job.seed,
                           batch=manifest.batch_named(jobs), files=manifest.describe_files({"mp4": out / job.output})))
    return jobs, folder / "presets" / "models" / "tiny-sr.yaml"


def test_a_job_whose_upsampler_samples_otherwise_since_is_changed(folder: Path):
    """The upsampler's entry now samples in 3 steps, not 2: another clip (the sidecar's `upsampling` says which), so
    the job is redone, not skipped as done."""
    jobs, upsampler = upscaled_job_done(folder)
    assert plan_batch(jobs).status == {1: "done"}
    upsampler.write_text(upsampler.read_text().replace("steps: 2", "steps: 3"))
    assert plan_batch(jobs).status == {1: "changed"}


def test_a_job_upscaled_by_an_older_mmgen_is_done_where_its_upsampler_samples_as_shipped(folder: Path):
    """mmgen before 2026-12-03 hashed no upsampling: such a job is taken as upscaled the shipped way (ddim, 25 steps,
    clipped), so it stays done where the entry says that, and is redone where it says another."""
    jobs, upsampler = upscaled_job_done(folder, by_older_mmgen=True)
    assert plan_batch(jobs).status == {1: "changed"}  # its entry's 2 steps are not what the shipped one's were
    upsampler.write_text(upsampler.read_text().replace("steps: 2", "steps: 25"))
    assert plan_batch(jobs).status == {1: "done"}


def test_a_project_finished_by_an_older_mmgen_can_be_copied_whole_after_one_run_of_this_one(folder: Path):
    """Its records name the input and the batch file by their real paths: done in place, but not in a copy (the job
    `changed`, its files `not written by this batch`). A run, its jobs all skipped, records them again as this mmgen
    does; then the project is done wherever it is copied, and a second run records nothing more."""
    jobs = project_done_before_2026_12_02(folder)
    manifest = Manifest(jobs.parent / "out")
    result = run_here("batch", jobs, "--json", env=mmgen_env(folder))
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["result"] for line in result.stdout.splitlines()] == ["skipped", "skipped"]
    assert {record.batch for record in manifest.latest().values()} == {"../jobs.yaml"}
    recorded = manifest.latest()
    shutil.copytree(jobs.parent, folder / "copied", copy_function=shutil.copy2)  # as `cp -a`: sizes and mtimes kept
    assert plan_batch(folder / "copied" / "jobs.yaml").status == {1: "done", 2: "done"}
    assert run_here("batch", jobs, env=mmgen_env(folder)).returncode == 0
    assert manifest.latest() == recorded

def one_job_done(folder: Path, name: str, output_dir: str | None = None):
    """A batch of one generate job named `name` (as YAML writes it, as its `output_dir:`), its files written and
    recorded done as `mmgen batch` does when the job ends: (the batch file, the output folder, its manifest, the job)."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate, name: "NAME", steps: 2, previews: false}
        """.replace("NAME", name) + (f'output_dir: "{output_dir}"\n' if output_dir else ""))
    out = plan_batch(jobs).output_dir
    out.mkdir(parents=True)
    manifest = Manifest(out)
    (job,) = plan_batch(jobs).jobs
    for path in job.files.files.values():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(f"the batch's {path.suffix}".encode())
    manifest.append(Record(job.output, "done", job.hash, job.number, job.kind, job.seed, batch=manifest.batch_named(jobs),
                           files=manifest.describe_files(job.files.files)))
    return jobs, out, manifest, job


def test_outputs_whose_names_a_disk_turned_to_another_unicode_form_are_the_job_s_never_written_beside(folder: Path):
    """A trip through a macOS HFS+ disk leaves `café.mp4` spelled NFD (e + a combining accent): the job's files are
    there, under another spelling of its name. As recorded they are the job done; else the job is refused, naming
    that spelling, --overwrite or not: it wrote the NFC file beside them (`damaged`), a pair that is one file on a
    macOS or Windows disk."""
    import unicodedata

    jobs, out, manifest, job = one_job_done(folder, "caf\\u00e9")
    for path in job.files.files.values():
        path.rename(path.with_name(unicodedata.normalize("NFD", path.name)))
    nfd = out / unicodedata.normalize("NFD", "café.mp4")
    assert {p.name for p in out.iterdir() if p.suffix in (".mp4", ".json")} == {nfd.name, nfd.with_suffix(".json").name}
    listed = sorted(n for n in os.listdir(out) if not n.startswith("."))
    result = run_here("batch", jobs, "--json", env=mmgen_env(folder))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"] == "skipped"
    assert sorted(n for n in os.listdir(out) if not n.startswith(".")) == listed  # nothing written beside them

    nfd.write_bytes(b"edited since")
    for overwrite in (False, True):
        with pytest.raises(BatchInvalid) as refused:
            plan_batch(jobs, overwrite=overwrite)
        (problem,) = refused.value.problems
        assert f"{nfd} is there: {job.output!r} in another Unicode form (NFD)" in problem.message, problem.message
    jobs.write_text(jobs.read_text().replace("steps: 2", "steps: 3"))  # changed: refused too
    assert "in another Unicode form (NFD)" in problems_of(jobs)[3]
    assert not (out / "café.mp4").exists()


def test_a_folder_of_a_job_s_name_a_disk_turned_to_another_unicode_form_is_the_job_s_never_written_beside(
        folder: Path):
    """`name: café/take1` done, then its folder `café` back from a macOS HFS+ disk spelled NFD: the job was `damaged`
    and the re-run wrote an NFC `café` beside it, one folder with it on a macOS or Windows disk. The job is done in
    the folder as it is; a job to write into it (a new one, or this one changed) is refused, naming the folder."""
    import unicodedata

    jobs, out, manifest, job = one_job_done(folder, "caf\\u00e9/take1")
    nfd = out / unicodedata.normalize("NFD", "café")
    (out / "café").rename(nfd)
    listed = sorted(path.relative_to(out) for path in out.rglob("[!.]*"))
    result = run_here("batch", jobs, "--json", env=mmgen_env(folder))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"] == "skipped"
    assert sorted(path.relative_to(out) for path in out.rglob("[!.]*")) == listed  # nothing written beside it
    jobs.write_text(jobs.read_text() + '  - {kind: generate, name: "caf\\u00e9/take2", previews: false}\n')
    refused = f"{nfd} is there: 'café' in another Unicode form (NFD), one folder with it on a macOS or Windows disk"
    problems = problems_of(jobs)
    assert set(problems) == {4} and refused in problems[4], problems
    jobs.write_text(jobs.read_text().replace("steps: 2", "steps: 3"))  # changed: its own file, refused too
    assert refused in problems_of(jobs, overwrite=True)[3]
    nfd.rename(out / "café")  # as the refusal says
    assert plan_batch(jobs).status == {1: "changed", 2: "new"}


def test_fp16_on_a_cpu_is_remarked_on_when_the_batch_runs_not_when_it_is_refused(folder: Path, monkeypatch, caplog):
    """`precision: fp16` on a CPU without native fp16 printed its note above "1 problem found, nothing was run": a
    remark on how jobs would run, of a batch that runs none. Planning keeps it for running the batch to say."""
    from mmgen.runtime import device as runtime_device

    monkeypatch.setattr(runtime_device, "cpu_flags", lambda: {"avx2"})
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, precision: fp16, device: cpu}
        jobs:
          - {kind: soundtrack, input: clips/beach.mp4}
          - {kind: soundtrack, input: clips/nowhere.mp4, name: other}
        """)
    with caplog.at_level("WARNING", logger="mmgen"):
        assert set(problems_of(jobs)) == {4}
        jobs.write_text(jobs.read_text().replace("nowhere", "beach"))
        plan = plan_batch(jobs, overwrite=True)
    assert not [r for r in caplog.records if "fp16" in r.getMessage()]
    assert [line.split(";")[1] for line in plan.remarks] == [" fp32 (bf16 is emulated too) is faster"]


def test_an_input_written_in_the_other_unicode_form_than_its_file_s_name_says_where_it_is(folder: Path):
    """`input: clips/café.mp4` written NFD, the file's name NFC (or a folder's on the way the other way round), said
    `… does not exist` showing a path that looks just like the file's. It names the file there and the form."""
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    shutil.copy(folder / "clips" / "beach.mp4", folder / "clips" / f"{nfc}.mp4")
    (folder / nfd).mkdir()
    shutil.copy(folder / "clips" / "beach.mp4", folder / nfd / "x.mp4")
    jobs = write_jobs(folder, f"""
        defaults: {{model: tiny.safetensors}}
        jobs:
          - {{kind: soundtrack, input: clips/{nfd}.mp4}}
          - {{kind: soundtrack, input: {nfc}/x.mp4}}
          - {{kind: soundtrack, input: clips/{nfd}2.mp4}}
          - {{kind: soundtrack, input: {nfc}/{nfc}.mp4}}
          - {{kind: soundtrack, inputs: {nfc}/*.mp4}}
        """)
    shutil.copy(folder / "clips" / "beach.mp4", folder / nfd / f"{nfd}.mp4")  # folder and file both NFD
    assert problems_of(jobs) == {
        3: f"job 1 (soundtrack): input: {folder / 'clips' / nfd}.mp4 does not exist ({folder / 'clips' / nfc}.mp4 is "
           f"there: '{nfc}.mp4' in another Unicode form (NFC); write it so in the batch file, or rename it)",
        4: f"job 2 (soundtrack): input: {folder / nfc / 'x.mp4'} does not exist ({folder / nfd / 'x.mp4'} is there: "
           f"'{nfd}' in another Unicode form (NFD); write it so in the batch file, or rename it)",
        5: f"job 3 (soundtrack): input: {folder / 'clips' / nfd}2.mp4 does not exist",
        6: f"job 4 (soundtrack): input: {folder / nfc / nfc}.mp4 does not exist ({folder / nfd / nfd}.mp4 is there: "
           f"'{nfd}' and '{nfd}.mp4' in another Unicode form (NFD); write it so in the batch file, or rename it)",
        7: f"job 5 (soundtrack): inputs: no file matches {nfc}/*.mp4 (in {folder}) ({folder / nfd} is there: '{nfd}' "
           "in another Unicode form (NFD); write it so in the batch file, or rename it)"}


def test_an_output_folder_a_disk_turned_to_another_unicode_form_is_the_batch_s_never_made_beside_it(folder: Path):
    """`output_dir: café` done, then `café` back from a macOS disk spelled NFD: the re-run said `new` and made an NFC
    `café` beside it (one folder with it on a macOS or Windows disk) to run the whole batch again there. The folder
    as it is there is the batch's, written in the file or given as -o, as is one inside a folder so renamed."""
    import unicodedata

    nfd = unicodedata.normalize("NFD", "café")
    for written, project in [("caf\\u00e9", folder / "one"), ("caf\\u00e9/renders", folder / "two")]:
        project.mkdir()
        os.link(folder / "tiny.safetensors", project / "tiny.safetensors")
        jobs, *_ = one_job_done(project, "take", written)
        (project / "café").rename(project / nfd)
    result = run_here("batch", folder / "one" / "jobs.yaml", "--json", env=mmgen_env(folder))
    assert result.returncode == 0 and json.loads(result.stdout)["result"] == "skipped", result.stderr
    assert sorted(os.listdir(folder / "one")) == sorted(["jobs.yaml", "tiny.safetensors", nfd])  # no NFC café beside it
    for output_dir in (None, folder / "two" / "café" / "renders"):  # the file's, then -o's, both typed NFC
        plan = plan_batch(jobs, output_dir)
        assert plan.status == {1: "done"} and plan.output_dir == folder / "two" / nfd / "renders"


def test_a_job_done_under_one_unicode_form_of_its_name_is_done_with_the_batch_file_saved_in_the_other(folder: Path):
    """A batch file whose `name: café` is spelled NFD ran; an editor then saved it in NFC. The job's files, recorded
    under the NFD name (and its seed, the name's), are the job done: where they are, then renamed to the job's
    spelling as the refusal's hint said (it was refused as `not written by this batch`), and its own to redo."""
    import unicodedata

    jobs, out, manifest, job = one_job_done(folder, "cafe\\u0301")
    assert unicodedata.is_normalized("NFD", job.output) and not unicodedata.is_normalized("NFC", job.output)
    jobs.write_text(jobs.read_text().replace("cafe\\u0301", "caf\\u00e9"))  # saved in NFC
    assert plan_batch(jobs).status == {1: "done"}  # its files as recorded, NFD
    for path in job.files.files.values():  # renamed as the hint says
        path.rename(path.with_name(unicodedata.normalize("NFC", path.name)))
    assert plan_batch(jobs).status == {1: "done"}
    jobs.write_text(jobs.read_text().replace("steps: 2", "steps: 3"))
    assert plan_batch(jobs).status == {1: "changed"}  # its own files: no --overwrite needed


def test_planning_reads_the_registry_a_few_times_not_once_per_job(folder: Path, monkeypatch: pytest.MonkeyPatch):
    reads = []
    original = registry.load_registry

    def counted():
        reads.append(1)
        return original()

    for module in list(sys.modules.values()):
        if getattr(module, "load_registry", None) is original:
            monkeypatch.setattr(module, "load_registry", counted)
    jobs = write_jobs(folder, """
        jobs:
          - {kind: generate, name: x, num: 400, steps: 1, model: demo}
        """)
    assert len(plan_batch(jobs).jobs) == 400
    assert 1 <= len(reads) <= 10


def test_planning_builds_each_job_s_settings_twice_at_most_not_once_per_key(folder: Path, monkeypatch):
    """A dry run of 10,000 jobs built ~6 settings objects a job (each checking every field): one per option as the
    file was read, then the job's, again without its seed, again as its one clip. Now one as the file is read (its
    options together, where all are taken) and one as the job is planned: what it plans is the same."""
    from mmgen.pipelines.settings import RunSettings

    jobs = folder / "jobs.yaml"
    jobs.write_text("jobs:\n" + "".join(f"  - {{kind: generate, model: demo, steps: 2, seed: {i}, name: c{i}, "
                                         "sampler: ddim}\n" for i in range(20))
                    + "  - {kind: soundtrack, input: clips/beach.mp4, model: tiny.safetensors, steps: 1, seed: 7}\n")
    built, check = [], RunSettings.__post_init__
    monkeypatch.setattr(RunSettings, "__post_init__", lambda self: (built.append(type(self)), check(self))[1])
    plan = plan_batch(jobs)
    assert [(j.output, j.seed, j.run.sampling.steps) for j in plan.jobs] == [
        *((f"c{i}.mp4", i, 2) for i in range(20)), ("beach_soundtrack.mp4", 7, 1)]
    assert len(built) <= 2 * len(plan.jobs), len(built)


def test_files_in_the_output_folder_are_never_inputs_and_the_message_says_so(folder: Path):
    (folder / "b7").mkdir()
    write_test_video(folder / "b7" / "a.mp4", size=(32, 32))
    jobs = folder / "b7" / "j.yaml"
    jobs.write_text('output_dir: .\ndefaults: {model: ../tiny.safetensors}\njobs:\n'
                    '  - {kind: soundtrack, inputs: "*.mp4"}\n')
    assert problems_of(jobs)[4] == (
        f"job 1 (soundtrack): inputs: no file outside the output folder {folder / 'b7'} matches *.mp4: 1 match is "
        "in the output folder, and files there are never taken as inputs")


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


def test_the_readme_s_complete_example_is_the_shipped_example_word_for_word():
    """README called its block "a complete example, shipped as presets/batch-example.yaml", yet it said
    `previews: false` where `mmgen batch --example` printed `previews: true`, and a comment differed."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("A complete example, shipped as", 1)[1].split("```yaml\n", 1)[1].split("```\n", 1)[0]
    assert block == (REPO / "presets" / "batch-example.yaml").read_text(encoding="utf-8")


def test_batch_example_prints_the_shipped_example_without_a_jobs_file(tmp_path):
    """`mmgen batch --example > jobs.yaml`: an installed wheel has no presets/ folder where the user is."""
    result = run_here("batch", "--example", env=mmgen_env(tmp_path))

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (REPO / "presets" / "batch-example.yaml").read_text(encoding="utf-8")


def test_the_example_s_own_header_says_which_inputs_to_put_in_place_and_then_its_dry_run_passes(tmp_path):
    """`mmgen batch --example > jobs.yaml && mmgen batch jobs.yaml --dry-run` failed its own suggested check:
    clips/*.mp4 and music/drums.wav did not exist, and nothing said to put them there. The header now names them;
    done as it says, the check passes."""
    env = mmgen_env(tmp_path)
    example = run_here("batch", "--example", env=env).stdout
    header = "".join(line for line in example.splitlines(keepends=True)[:5])
    assert "put one or more .mp4 clips in clips/ and a\n# sound at music/drums.wav" in header, header
    (tmp_path / "jobs.yaml").write_text(example, encoding="utf-8")
    (tmp_path / "clips").mkdir()
    (tmp_path / "music").mkdir()
    write_test_video(tmp_path / "clips" / "beach.mp4", seconds=0.5)
    write_test_audio(tmp_path / "music" / "drums.wav", seconds=0.5)
    checked = run_here("batch", tmp_path / "jobs.yaml", "--dry-run", env=env)
    assert checked.returncode == 0, checked.stderr


def test_batch_example_refuses_what_it_would_ignore(tmp_path):
    """`--example` printed the example whatever came with it: YAML for `--example --json` (whose stdout is JSON),
    no file for `--example -o jobs.yaml`, and a JOBS file or --dry-run went unread, each with exit 0."""
    env = mmgen_env(tmp_path)
    hint = " (save it with `mmgen batch --example > jobs.yaml`, then `mmgen batch jobs.yaml`)"
    for given, named in ((["--json"], "--json"), (["-o", "jobs.yaml"], "--out-dir/-o"),
                         (["jobs.yaml", "--dry-run"], "jobs.yaml, --dry-run")):
        refused = run_here("batch", "--example", *given, env=env)
        assert (refused.returncode, refused.stdout) == (2, ""), given
        assert refused.stderr == f"mmgen: error: --example prints the example batch file and takes nothing else: " \
                                 f"got {named}{hint}\n"
    assert not (tmp_path / "jobs.yaml").exists()
    missing = run_here("batch", "--dry-run", env=env)  # the file is still needed without --example
    assert (missing.returncode, missing.stderr) == (2, "mmgen: error: Missing argument 'JOBS.yaml'.\n")


def test_batch_example_takes_debug_as_every_command_does_and_its_help_says_so(tmp_path):
    """`--example`'s help said it takes no other option, yet `batch --example --debug` printed the example: --debug is
    every command's switch, before the command or after it (`mmgen --debug batch --example` is the same command)."""
    from mmgen.cli.app import command

    example = (REPO / "presets" / "batch-example.yaml").read_text(encoding="utf-8")
    for args in (["batch", "--example", "--debug"], ["--debug", "batch", "--example"]):
        printed = run_here(*args, env=mmgen_env(tmp_path))
        assert (printed.returncode, printed.stdout, printed.stderr) == (0, example, ""), args
    (said,) = [p.help for p in command().commands["batch"].params if "--example" in getattr(p, "opts", ())]
    assert said.endswith("it takes no JOBS file and no other option but --debug, which every command takes.")


def test_batch_example_is_utf8_whatever_stdout_s_encoding(tmp_path):
    """On Windows `mmgen batch --example > jobs.yaml` wrote cp1252, the console's encoding (`…` as byte 0x85), and
    `mmgen batch jobs.yaml` then refused its own example: `jobs.yaml:20: not UTF-8 text`."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="cp1252", write_through=True)
    result = run_here("batch", "--example", env=mmgen_env(tmp_path), stdout=stdout)

    assert (result.returncode, result.stderr) == (0, "")
    assert stdout.buffer.getvalue() == (REPO / "presets" / "batch-example.yaml").read_bytes()


def test_planning_asks_the_filesystem_per_folder_not_per_output(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture):
    """`num: 100000` spent minutes planning: a few system calls for each of its 400,000 files. Now a folder is
    listed once, and 6,000 files cost the calls of a handful; the dry run shows the job as one row, not a table
    rich takes minutes to draw."""
    from mmgen.cli import run

    jobs = write_jobs(folder, """
        jobs:
          - {kind: generate, name: x, num: 1500, steps: 1, model: tiny.safetensors}
          - {kind: generate, name: hero, steps: 1, model: tiny.safetensors}
        """)
    calls = []
    for name in ("stat", "lstat"):
        original = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *a, original=original, **k: calls.append(a) or original(*a, **k))
    plan = plan_batch(jobs)
    assert len(plan.jobs) == 1501 and len({file for job in plan.jobs for file in job.files.files.values()}) == 6004
    assert len(calls) < 400, len(calls)  # ~300 whatever the count (registry, cache, paths); it was 5 a file: 30,000
    monkeypatch.undo()

    assert run(["batch", str(jobs), "--dry-run"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.endswith("│ new: run │")]
    assert len(rows) == 2 and rows[0].split("│")[1:6] == [" 1–1500 ", "    2 ", " generate ", " —     ",
                                                          " x_0000.mp4 … x_1499.mp4 "], rows
    assert rows[1].split("│")[1].strip() == "1501" and " hero.mp4 " in rows[1]


def test_a_long_dry_run_shows_its_first_rows_then_how_many_jobs_are_in_each_state_and_json_says_every_job(
        folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """A dry run of 10,000 jobs spent most of its 15 CPU seconds in rich drawing 10,000 rows no one scrolls back
    through. Past SHOWN_ROWS rows the table shows the first ones, then how many jobs it left out, and how many jobs
    are in each state, those left out too (here the last job is done); `--json` still says every job's status."""
    from mmgen.cli import run
    from mmgen.cli._batch_report import SHOWN_ROWS

    count = SHOWN_ROWS + 20
    jobs = write_jobs(folder, "defaults: {model: tiny.safetensors, steps: 2, previews: false}\njobs:\n" + "".join(
        f"  - {{kind: generate, name: take{i}, seed: {i}}}\n" for i in range(count)))
    out, manifest = folder / "outputs", Manifest(folder / "outputs")
    out.mkdir()
    last = plan_batch(jobs).jobs[-1]  # done as `mmgen batch` records a job done
    for path in last.files.files.values():
        path.write_bytes(f"the batch's {path.suffix}".encode())
    manifest.append(Record(last.output, "done", last.hash, last.number, last.kind, last.seed,
                           batch=manifest.batch_named(jobs), files=manifest.describe_files(last.files.files)))
    monkeypatch.setenv("COLUMNS", "200")

    assert run(["batch", str(jobs), "--dry-run"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert len([line for line in shown if line.startswith("│")]) == SHOWN_ROWS  # a row a job
    assert shown[-4:] == [f"… and 20 more jobs ({SHOWN_ROWS + 1}–{count}): --json lists every job, a line each",
                          f"By status: {count - 1} new: run, 1 done: skip", "No model downloads needed.",
                          f"{count} jobs: {count - 1} to run, 1 done (dry run: nothing was run)"]
    assert run(["batch", str(jobs), "--dry-run", "--json"]) == 0
    planned = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(job["job"], job["status"]) for job in planned] == [
        *((number, "new") for number in range(1, count)), (count, "done")]


def test_yaml_s_base_60_numbers_and_dates_stay_the_text_written_and_one_mistake_is_one_problem(folder: Path):
    """YAML 1.1 reads `0:0.5` as the base-60 number 0.5 and `2001-12-14` as a date; mmgen's files want neither, so
    they stay strings (a range, a name). A list under `inputs:` is one problem, not also "no input"; a number
    given for a name says to quote it."""
    jobs = write_jobs(folder, """
        defaults:
          model: tiny.safetensors
        jobs:
          - kind: retake
            input: clips/beach.mp4
            ranges: [0:0.5]
          - kind: generate
            name: 2001-12-14
          - kind: retake
            inputs: [clips/beach.mp4, clips/other.mp4]
            ranges: ["0:0.5"]
          - kind: generate
            name: 2001
        """)
    spec = read_batch_file(jobs, problems := [])
    assert spec.jobs[0].options["ranges"] == ("0:0.5",) and spec.jobs[1].name == "2001-12-14"
    assert {p.line: p.message for p in problems} == {
        10: "job 3 (retake): inputs: expected one glob pattern (e.g. clips/*.mp4), got a list; give a pattern that "
            "matches the files, or a job with `input:` for each",
        13: 'job 4 (generate): name: expected a non-empty string, got 2001, a number (to mean the text, put it in '
            'quotes: "2001")',
    }


def test_text_in_a_number_field_says_the_field_and_what_it_takes(folder: Path):
    """`steps: 1:30` (text: YAML's base-60 numbers are not read) said `'1:30' is not a valid int`, and a delivery field
    `is not a valid float or Literal`: Python's type names. Each is one line naming its field and what it takes."""
    jobs = write_jobs(folder, """
        defaults:
          model: tiny.safetensors
        jobs:
          - {kind: generate, steps: 1:30}
          - {kind: generate, seed: 1:30}
          - {kind: generate, loudness: 1:30}
          - {kind: generate, sample_rate: 1:30}
          - {kind: soundtrack, input: clips/beach.mp4, guidance_scale: 1:30}
        """)
    assert problems_of(jobs) == {
        4: "job 1 (generate): steps: 1:30: not a plain decimal number (older mmgen versions read it as 90); write 90",
        5: "job 2 (generate): seed: 1:30: not a plain decimal number (older mmgen versions read it as 90); write 90",
        6: "job 3 (generate): loudness: 1:30: not a plain decimal number (older mmgen versions read it as 90); write 90",
        7: "job 4 (generate): sample_rate: 1:30: not a plain decimal number (older mmgen versions read it as 90); "
           "write 90",
        8: "job 5 (soundtrack): guidance_scale: 1:30: not a plain decimal number (older mmgen versions read it as 90); "
           "write 90",
    }


def test_a_number_is_read_in_the_forms_its_flag_takes_and_yaml_1_1_s_other_forms_are_refused_as_the_flag_does(
        folder: Path):
    """YAML 1.1 read `seed: 0x10` as 16, `0b101` as 5, `1_000` as 1000 and `017` as 15 (octal), where `--seed` takes
    decimal digits only ("a value the flag refuses is refused in the file too"): each other form is the text it is,
    refused by its field, saying what mmgen before 2026-12 read it as (a changed meaning is never silent: `017` as
    17 redid a finished job of seed 15); a decimal one is read in decimal, and -.5 and 5e-4 are numbers, as for the
    flags."""
    jobs = write_jobs(folder, """
        defaults:
          model: tiny.safetensors
        jobs:
          - {kind: generate, seed: 0x10}
          - {kind: generate, steps: 0b101}
          - {kind: generate, num: 0x2}
          - {kind: generate, sample_rate: 0xbb80}
          - {kind: generate, loudness: -0x10}
          - {kind: generate, seed: 1_000}
          - {kind: generate, seed: 0o17}
          - {kind: soundtrack, input: clips/beach.mp4, guidance_scale: 1_0.5}
          - {kind: generate, seed: 017}
          - {kind: generate, seed: -017}
          - {kind: generate, seed: 0_17}
          - {kind: generate, steps: 0_25}
          - {kind: generate, seed: 0_0}
        """)
    older = "not a plain decimal number (older mmgen versions read it as"
    assert problems_of(jobs) == {
        4: f"job 1 (generate): seed: 0x10: {older} 16); write 16",
        5: f"job 2 (generate): steps: 0b101: {older} 5); write 5",
        6: f"job 3 (generate): num: 0x2: {older} 2); write 2",
        7: f"job 4 (generate): sample_rate: 0xbb80: {older} 48000); write 48000",
        8: f"job 5 (generate): loudness: -0x10: {older} -16); write -16",
        9: f"job 6 (generate): seed: 1_000: {older} 1000); write 1000",
        10: "job 7 (generate): seed: expected an integer, got '0o17'",  # text to YAML 1.1 too
        11: f"job 8 (soundtrack): guidance_scale: 1_0.5: {older} 10.5); write 10.5",
        12: "job 9 (generate): seed: 017: a leading zero is ambiguous (older mmgen versions read it as octal 15); "
            "write 15, or 17",
        13: "job 10 (generate): seed: -017: a leading zero is ambiguous (older mmgen versions read it as octal -15); "
            "write -15, or -17",
        14: "job 11 (generate): seed: 0_17: a leading zero is ambiguous (older mmgen versions read it as octal 15); "
            "write 15, or 17",  # a leading zero all the same
        15: "job 12 (generate): steps: 0_25: a leading zero is ambiguous (older mmgen versions read it as octal 21); "
            "write 21, or 25",
        16: f"job 13 (generate): seed: 0_0: {older} 0); write 0",  # one reading: nothing ambiguous
    }
    jobs = write_jobs(folder, """
        jobs:
          - {kind: generate, seed: 007, steps: +5, loudness: -.5, name: 0x10}
          - {kind: soundtrack, input: clips/beach.mp4, guidance_scale: 5e-4}
        """)
    spec = read_batch_file(jobs, problems := [])
    assert not problems and spec.jobs[0].options == {"seed": 7, "steps": 5, "loudness": -0.5}
    assert spec.jobs[0].name == "0x10"  # a text field takes it as written
    assert spec.jobs[1].options["guidance_scale"] == 5e-4


def test_a_sample_rate_an_mp4_cannot_store_is_found_while_planning(folder: Path):
    """`sample_rate: 10000` (AAC stores no 10 kHz; `--sample-rate 10000 -o x.mp4` is refused up front) failed only
    when its job ran, after the jobs before it had run. It is a problem of the file now, naming the job and its line
    as the command line names its flag."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: generate
          - kind: generate
            name: odd
            sample_rate: 10000
        """)
    result = run_here("batch", jobs, env=mmgen_env(folder))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"{jobs}:6: job 2 (generate): sample_rate 10000: ") and "odd.mp4's sound (aac in mp4) " \
        "cannot be stored at 10,000 Hz (use one of 8000, 11025," in lines[0]
    assert lines[1] == f"mmgen: error: {jobs}: 1 problem found, nothing was run"
    assert not (folder / "outputs").exists()


def test_an_option_refused_beyond_its_value_is_named_by_its_key_not_its_flag(folder: Path):
    """`adapter: 1:30` (no adapter registered as 1) said `--adapter 1: no registered adapter`, a flag no batch file
    has; so did `ranges:` (`--range 1:3: … lasts only`) and a picture retake (`retake --video needs …`). A batch
    says its key, the command line its flag: one error, each edge's words."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: generate
            adapter: "1:30"
          - kind: retake
            input: clips/beach.mp4
            ranges: ["0:1e-1"]
        """)
    result = run_here("batch", jobs, "--dry-run", env=mmgen_env(folder))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"{jobs}:4: job 1 (generate): adapter 1: no registered adapter of that name (")
    assert lines[1].startswith(f"{jobs}:7: job 2 (retake): ranges: expected A:B in seconds")
    assert "--" not in "".join(lines[:2]).replace("--name", "")  # the hint's `mmgen models import FILE --name NAME`
    done = run_here("generate", "-m", folder / "tiny.safetensors", "--adapter", "1:30", env=mmgen_env(folder))
    assert done.returncode == 2 and done.stderr.startswith("mmgen: error: --adapter 1: no registered adapter of")


def test_one_job_is_one_job_in_the_dry_run_s_count(folder: Path):
    jobs = write_jobs(folder, """
        jobs:
          - kind: generate
            model: tiny.safetensors
        """)
    result = run_here("batch", jobs, "--dry-run", env=mmgen_env(folder))
    assert result.returncode == 0, result.stderr
    assert "1 job: 1 to run, 0 done" in result.stdout + result.stderr


def test_under_torchrun_cuda_in_any_case_is_this_process_gpu(folder: Path, monkeypatch: pytest.MonkeyPatch):
    """`device: CUDA` (as --device reads it, any case) means this process's GPU under torchrun, as `cuda` does:
    it kept every process on cuda:0. No GPU here: torch is told it has two."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for written in ("cuda", "CUDA", " Cuda "):
        jobs = write_jobs(folder, f"""
            defaults:
              model: tiny.safetensors
              device: "{written}"
              precision: fp32
            jobs:
              - kind: generate
            """)
        assert plan_batch(jobs, local_rank=1).jobs[0].settings.device == "cuda:1", written


def test_a_device_flag_this_machine_lacks_is_said_as_the_flag_before_the_file_is_planned(
        folder: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """`batch ok.yaml --device cuda` said `ok.yaml: device cuda: CUDA is not available` and `ok.yaml: 1 problem
    found`, as if the file had a device: key; `--precision fp64` was said as the flag. So is the device now, before
    the file's jobs are planned (`--device gpu` took 6.7 s there); a `device:` key of the file is still its line's."""
    import torch

    from mmgen.cli import run
    from mmgen.errors import InvalidSetting

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: generate
        """)
    for device, says in (("cuda", "--device cuda: CUDA is not available (try auto or cpu)"),
                         ("gpu", "--device: 'gpu' is not a device (choose from auto, cpu, cuda, cuda:N, mps)")):
        assert run(["batch", str(jobs), "--dry-run", "--device", device]) == 2
        assert capsys.readouterr().err == f"mmgen: error: {says}\n"
    with pytest.raises(InvalidSetting, match="^device cuda: CUDA is not available"):
        plan_batch(jobs, device="cuda")
    keyed = write_jobs(folder, """
        defaults: {model: tiny.safetensors, device: cuda}
        jobs:
          - kind: generate
        """)
    with pytest.raises(BatchInvalid) as invalid:
        plan_batch(keyed)
    assert [problem.line for problem in invalid.value.problems] == [1]  # the line that says it


def test_a_file_that_sets_the_batch_s_device_wrongly_is_refused_before_torch_loads(tmp_path: Path):
    """A job's own `device: tpu` (a device is the whole batch's) and `defaults: {device: tpu}` (no device) were said
    only once the planner had loaded torch (seconds, hundreds of MB). Every job is planned for the batch's device
    and precision, so a file that sets them wrongly is refused at once, with every problem reading it found."""
    own, wrong = tmp_path / "own.yaml", tmp_path / "wrong.yaml"
    own.write_text("jobs:\n  - kind: generate\n    device: tpu\n  - {kind: generate, --precision: fp16, num: 0}\n")
    wrong.write_text("defaults: {device: tpu}\njobs:\n  - kind: generate\n")
    script = ("import sys; from mmgen.cli import run\n"
              "for jobs in sys.argv[1:]:\n"
              "    print(run(['batch', jobs, '--dry-run']), 'torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", script, own, wrong], env=mmgen_env(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert done.stderr.splitlines() == [
        f"{own}:3: job 1 (generate): 'device' is set for the whole batch (device: under defaults:, or --device)",
        f"{own}:4: job 2 (generate): '--precision' is set for the whole batch (precision: under defaults:, or "
        "--precision)",
        f"{own}:4: job 2 (generate): num: must be between 1 and 100000, got 0",
        f"mmgen: error: {own}: 3 problems found, nothing was run",
        "2 False",
        f"{wrong}:1: defaults: device: 'tpu' is not a device (choose from auto, cpu, cuda, cuda:N, mps)",
        f"mmgen: error: {wrong}: 1 problem found, nothing was run",
        "2 False",
    ], done.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(("rank", "says"), [
    (0, None),
    (2, "mmgen: error: LOCAL_RANK=2, but this machine has 2 GPUs (cuda:0 to cuda:1): a torchrun job takes one "
        "process per GPU (torchrun --nproc_per_node 2 or fewer)\n"),
])
def test_under_torchrun_a_process_with_no_gpu_of_its_own_says_so_itself(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       rank, says):
    """`torchrun --nproc_per_node 4` on a machine with 2 GPUs: ranks 2 and 3 failed planning on cuda:2 and cuda:3,
    refused as the batch file's problem, which rank 0 alone says (it planned fine): no process said why."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, precision: fp32}
        jobs:
          - kind: generate
        """)
    job = {"WORLD_SIZE": "4", "RANK": str(rank), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "29500"}
    result = run_here("batch", jobs, "--dry-run", "--json", env=mmgen_env(folder, **job))
    if rank == 0:  # its GPU is there: it plans, as it did
        assert result.returncode == 0 and "error" not in result.stderr, result.stderr
    else:
        assert (result.returncode, result.stderr) == (2, says), result.stderr


def test_a_mistyped_key_or_kind_gets_the_nearest_one_and_generate_s_allowed_keys_are_its_own(folder: Path):
    """The command line says `Did you mean --seed?` for --seeed; the batch file said only `unknown key 'seeed'`.
    And generate's list of allowed keys offered `input, inputs`, which it then refuses."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, stepz: 2}
        jobs:
          - kind: generate
            seeed: 3
            --num: 2
          - kind: soundtrack
            input: clips/beach.mp4
            guidance-scale: 2
          - kind: generat
          - kind: generate
            out_dir: x
        """)
    problems = problems_of(jobs)
    assert "defaults: unknown key 'stepz'; did you mean steps? (allowed: " in problems[1]
    assert "unknown key 'seeed'; did you mean seed? (allowed: kind, name, model, " in problems[4]
    assert "unknown key '--num'; did you mean num? (allowed: kind, name, model, " in problems[5]  # a flag's spelling
    assert "unknown key 'guidance-scale'; did you mean guidance_scale?" in problems[8]
    assert "kind: 'generat' is not one of generate, soundtrack, animate, retake; did you mean generate?" in problems[9]
    assert problems[11].endswith("unknown key 'out_dir' (allowed: kind, name, model, preset, sampler, steps, seed, "
                                 "loudness, sample_rate, adapter, num, upscale, previews)")


def test_a_retake_job_takes_audio_as_retake_takes_audio_and_not_with_video(folder: Path):
    """`retake --audio` is a flag of the command; the batch file refused `audio: true` as an unknown key."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: retake, input: clips/beach.mp4, ranges: ["0.2:0.4"], name: sound, audio: true}
          - {kind: retake, input: clips/beach.mp4, ranges: ["0.2:0.4"], name: both, audio: true, video: true}
        """)
    assert problems_of(jobs) == {4: "job 2 (retake): video: a retake remakes the picture (video) or the sound "
                                    "(audio), not both"}


def test_a_retake_job_s_own_audio_or_video_wins_over_the_other_in_defaults(folder: Path):
    """`defaults: {video: true}` and a job's `audio: true` was refused as `not both`: a job's own setting wins over
    `defaults:`, as for every other key; only a job that says both at once is refused."""
    write_test_video(folder / "clips" / "small.mp4", size=(16, 16))  # at the model's frame size: a picture retake
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, ranges: ["0.2:0.4"], video: true}
        jobs:
          - {kind: retake, input: clips/small.mp4, name: sound, audio: true}
          - {kind: retake, input: clips/small.mp4, name: picture}
          - {kind: retake, input: clips/small.mp4, name: still-picture, audio: false}
        """)
    assert [job.settings.modality for job in plan_batch(jobs).jobs] == ["audio", "video", "video"]
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, ranges: ["0.2:0.4"], audio: true}
        jobs:
          - {kind: retake, input: clips/small.mp4, name: picture, video: true}
          - {kind: retake, input: clips/small.mp4, name: both, video: true, audio: true}
        """)
    assert problems_of(jobs) == {4: "job 2 (retake): video: a retake remakes the picture (video) or the sound "
                                    "(audio), not both"}


def test_a_retake_default_of_both_video_and_audio_is_one_problem_at_defaults_not_one_per_job(folder: Path):
    """`defaults: {video: true, audio: true}` was refused at every retake job's line (N identical problems), none at
    the defaults that said it; a job's own pair is still refused at that job."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, ranges: ["0.2:0.4"], video: true, audio: true}
        jobs:
          - {kind: retake, input: clips/beach.mp4, name: one}
          - {kind: retake, input: clips/beach.mp4, name: two}
          - {kind: retake, input: clips/beach.mp4, name: three, video: true, audio: true}
        """)
    assert problems_of(jobs) == {
        1: "defaults: video and audio: a retake remakes the picture (video) or the sound (audio), not both (give one "
           "in defaults:, or each job its own)",
        5: "job 3 (retake): video: a retake remakes the picture (video) or the sound (audio), not both"}


def test_an_adapter_next_to_the_batch_file_is_read_from_there_whatever_the_current_folder(folder: Path, tmp_path_factory,
                                                                                         monkeypatch: pytest.MonkeyPatch):
    """`adapter: a.safetensors:abc` beside the batch file was parsed against the current folder before it was read from
    the batch file's: run from elsewhere it was `no registered adapter of that name`, from the file's folder `weight
    'abc' is not a number`. Relative paths are the batch file's folder's, as the README says, for every key."""
    import torch

    from mmgen.adapters import BaseModel, LoraSpec, adapter_parameters, attach, save_adapter
    from mmgen.weights import load_model

    loaded = load_model(folder / "tiny.safetensors")
    attach(loaded.model, LoraSpec(4, 4.0, "attention"))
    with torch.no_grad():
        for _, p in adapter_parameters(loaded.model):
            p.fill_(0.01)
    save_adapter(folder / "a.safetensors", loaded.model, LoraSpec(4, 4.0, "attention"), BaseModel.of(loaded))
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, adapter: a.safetensors}
        jobs:
          - {kind: generate, name: whole}
          - {kind: generate, name: half, adapter: "a.safetensors:0.5"}
        """)
    assert [job.settings.adapter for job in plan_batch(jobs).jobs] == [
        (f"{folder}/a.safetensors:1.0",), (f"{folder}/a.safetensors:0.5",)]
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate, adapter: "a.safetensors:abc"}
        """)
    assert problems_of(jobs)[3].startswith(f"job 1 (generate): adapter {folder}/a.safetensors:abc: weight 'abc' is "
                                           "not a number (")


def test_the_dry_run_table_says_each_status_in_the_word_json_and_the_readme_use():
    """The table said `to run` and `interrupted: redo` where `--json` (and the README) say `new` and `incomplete`."""
    from mmgen.pipelines.batch import STATUS_TEXT
    from mmgen.pipelines.batch.jobs import Status

    assert set(STATUS_TEXT) == set(typing.get_args(Status))
    assert all(text.split()[0].rstrip(":") == status for status, text in STATUS_TEXT.items()), STATUS_TEXT
    readme = (REPO / "README.md").read_text()
    assert all(f"`{status}`" in readme for status in STATUS_TEXT)


def test_a_guidance_scale_in_defaults_applies_where_it_means_something_and_is_no_error_elsewhere(folder: Path):
    """`defaults: {guidance_scale: 3}` failed the whole plan for every soundtrack/animate job on `demo` (which guides
    by replacement): a default applies to the jobs it means something for; only a job's own scale is refused."""
    jobs = write_jobs(folder, """
        defaults: {model: demo, steps: 2, guidance_scale: 3}
        jobs:
          - {kind: soundtrack, input: clips/beach.mp4, name: plain}
          - {kind: soundtrack, input: clips/beach.mp4, name: gradient, guidance: gradient}
        """)
    plain, gradient = plan_batch(jobs).jobs
    assert plain.settings.guidance_scale is None and plain.run.sampling.guidance == "replacement"
    # hashed as well as mmgen hashed it when it ran such a job taking the scale and ignoring it: done, not changed
    assert any(p["options"]["guidance_scale"] == p["sampling"]["guidance_scale"] == 3 for p in plain.payloads)
    assert gradient.settings.guidance_scale == 3 and gradient.run.sampling.guidance_scale == 3
    jobs = write_jobs(folder, """
        defaults: {model: demo, steps: 2}
        jobs:
          - {kind: soundtrack, input: clips/beach.mp4, guidance_scale: 3}
        """)
    assert problems_of(jobs) == {3: "job 1 (soundtrack): guidance_scale 3: scales gradient guidance only, and this "
                                    "run guides by replacement (the model's own setting) (ask for gradient guidance "
                                    "with it, or leave the scale out)"}


def test_an_input_name_that_is_not_utf8_gets_a_seed_of_its_own_bytes(folder: Path):
    """Linux allows any bytes in a name: a job without `seed:` takes its seed from its output's name, hashed as the
    name's bytes (Python holds a byte that is not UTF-8 as a lone surrogate, which str.encode() refuses)."""
    odd = folder / "clips" / os.fsdecode(b"\xfc.mp4")
    (folder / "clips" / "beach.mp4").rename(odd)
    write_test_video(folder / "clips" / os.fsdecode(b"\xfd.mp4"), size=(32, 32))
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: soundtrack
            inputs: clips/*.mp4
        """)
    plan = plan_batch(jobs)
    assert [os.fsencode(job.output) for job in plan.jobs] == [b"\xfc_soundtrack.mp4", b"\xfd_soundtrack.mp4"]
    assert plan.jobs[0].seed != plan.jobs[1].seed and plan_batch(jobs).jobs[0].seed == plan.jobs[0].seed


def test_the_dry_run_table_shows_names_with_control_characters_escaped_on_one_row(folder: Path):
    """A name with ESC, a newline or rich's markup (`[red]`) is a cell of one row, as every message shows it
    (terminal.path_text): the table showed it raw, and a newline made two rows of one job. (An output named from
    such an input is refused, as such a `name:` is: the input is shown, the job named otherwise.)"""
    (folder / "clips" / "beach.mp4").rename(folder / "clips" / "[red]e\x1b[2J\nx.mp4")
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - kind: soundtrack
            inputs: clips/*.mp4
            name: "[red]{stem}"
        """)
    assert "made from the input '[red]e\\x1b[2J\\nx.mp4' must not hold control characters" in problems_of(jobs)[5]
    jobs.write_text(jobs.read_text().replace("inputs: clips/*.mp4", 'input: "clips/[red]e\\e[2J\\nx.mp4"')
                    .replace("{stem}", "take"))
    result = run_here("batch", jobs, "--dry-run", env=mmgen_env(folder, COLUMNS="200"))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    row = next(line for line in result.stdout.splitlines() if "soundtrack" in line)
    assert "[red]e\\x1b[2J\\nx.mp4" in row and "[red]take.mp4" in row, result.stdout


def test_merge_keys_repeating_a_big_job_are_refused_before_planning(folder: Path):
    """Ten `<<: *job` lines repeating a `num: 100000` job (300 bytes) asked planning for a million clips: 4.6 GB.
    The clips all jobs ask for together are bounded, refused in one line naming the file before any planning."""
    jobs = write_jobs(folder, """
        jobs:
          - &j {kind: generate, num: 60000, steps: 1, model: tiny.safetensors, name: a}
          - {<<: *j, name: b}
        """)
    with pytest.raises(ConfigError, match=r"jobs\.yaml: its jobs ask for 120,000 clips; at most 100,000 in one batch"):
        read_batch_file(jobs, [])
    write_jobs(folder, """
        defaults: {num: 50000}
        jobs:
          - {kind: generate, model: tiny.safetensors, name: a}
          - {kind: generate, model: tiny.safetensors, name: b}
        """)
    problems = []
    assert len(read_batch_file(jobs, problems).jobs) == 2 and problems == []  # 100,000 exactly is allowed


def test_a_picture_retake_refuses_sound_delivery_settings_as_a_guidance_scale_is_refused(folder: Path):
    """`retake --video` kept the input's sound as it is and silently took no notice of `--wav`, `--sample-rate`
    and `--loudness` (no wav, the input's rate), while `--guidance-scale` on the same run was refused: each is
    refused the same way, one line, exit 2, before any work; a batch's `defaults:` value is left out of the picture
    retakes (done jobs stay done: hashed as before) and applies to the sound ones."""
    clip = write_test_video(folder / "small.mp4", seconds=1.0, fps=10, size=(16, 16)).path  # the tiny model's
    env = mmgen_env(folder)
    for flag, value in (("--wav", None), ("--sample-rate", "44100"), ("--loudness", "-23")):
        done = run_here("retake", clip, "--video", "--range", "0.2:0.5", "-m", folder / "tiny.safetensors",
                        flag, *filter(None, [value]), "-o", folder / "rv.mp4", env=env)
        assert done.returncode == 2 and done.stderr.startswith(f"mmgen: error: {flag}"), done.stderr
        assert f"{flag}{f' {value}' if value else ''}: a picture retake (video) keeps the input's sound as it is" \
            in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and not (folder / "rv.mp4").exists()


def test_a_batch_picture_retake_refuses_its_own_sound_delivery_settings_and_leaves_out_the_defaults(folder: Path):
    """The batch side of the test above: a job's own value is refused at its line, a `defaults:` one left out of
    the picture retakes (done jobs stay done: hashed as before too) and applied to the sound ones."""
    write_test_video(folder / "small.mp4", seconds=1.0, fps=10, size=(16, 16))  # the tiny model's
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, ranges: ["0.2:0.4"], wav: true, loudness: -23}
        jobs:
          - {kind: retake, input: small.mp4, name: picture, video: true}
          - {kind: retake, input: small.mp4, name: sound}
          - {kind: retake, input: small.mp4, name: own, video: true, sample_rate: 44100}
        """)
    assert problems_of(jobs) == {5: "job 3 (retake): sample_rate 44100: a picture retake (video) keeps the input's "
                                    "sound as it is (leave it out, or retake the sound)"}
    jobs.write_text(jobs.read_text().replace(", sample_rate: 44100", ""))
    picture, sound, _ = plan_batch(jobs).jobs
    assert (picture.settings.wav, picture.settings.loudness) == (False, -16.0)
    assert (sound.settings.wav, sound.settings.loudness) == (True, -23.0)
    assert any(p["options"]["wav"] is True and p["options"]["loudness"] == -23 for p in picture.payloads)


def test_an_older_picture_retake_done_with_its_own_wav_is_done_once_the_file_leaves_it_out(folder: Path):
    """Older versions ran a picture retake's own `wav: true` (ignoring it) and hashed it; today it is refused with
    `leave it out`, and following that redid the job (a new hash), though the output is the same. That older record
    is this job done (as with `wav: true` in `defaults:`); the job's own hash is as it was, and a sound retake's
    `wav: true` still decides its outputs."""
    from mmgen.pipelines.batch.job_hash import digest

    write_test_video(folder / "small.mp4", seconds=1.0, fps=10, size=(16, 16))  # the tiny model's
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, ranges: ["0.2:0.4"]}
        jobs:
          - {kind: retake, input: small.mp4, name: picture, video: true, seed: 4}
          - {kind: retake, input: small.mp4, name: sound, seed: 4}
        """)
    picture, sound = plan_batch(jobs).jobs
    assert picture.hash == digest({**picture.payloads[0], "seed": 4})  # unchanged: records made today still match
    out, manifest = folder / "outputs", Manifest(folder / "outputs")
    out.mkdir()
    for job in (picture, sound):
        (out / job.output).write_bytes(b"the older batch's clip")
        older = {**job.payloads[0], "options": {**job.payloads[0]["options"], "wav": True}, "seed": 4}  # `wav: true`
        manifest.append(Record(job.output, "done", digest(older), job.number, "retake", 4, batch=str(jobs.resolve()),
                               files=manifest.describe_files({"mp4": out / job.output})))
    assert plan_batch(jobs).status == {1: "done", 2: "changed"}


def test_an_adapter_trained_on_another_model_than_its_jobs_is_refused_while_planning(folder: Path):
    """`adapter:` trained on one model, the job's `model:` another: `--dry-run` said `new: run`, the run made the
    other jobs and failed this one as its model loaded (exit 1), while the command refused it at once (exit 2). The
    plan refuses it, naming the job, before anything runs — by path and by a cached model's name alike."""
    save_folder_adapter(folder, folder / "a.safetensors", 0.01)
    save_tiny_model(folder / "other.safetensors", seed=1)
    import_weights(folder / "other.safetensors", "other")
    jobs = write_jobs(folder, """
        defaults: {steps: 2, adapter: a.safetensors}
        jobs:
          - {kind: generate, name: ok, model: tiny.safetensors}
          - {kind: generate, name: by_path, model: other.safetensors}
          - {kind: generate, name: by_name, model: other}
        """)
    problems = problems_of(jobs)
    assert sorted(problems) == [4, 5]
    assert problems[4].startswith(f"job 2 (generate): adapter {folder}/a.safetensors was trained on "
                                  f"{folder}/tiny.safetensors (sha256 {sha256_file(folder / 'tiny.safetensors')[:12]}…), "
                                  f"not on {folder}/other.safetensors (sha256 ")
    assert problems[5].startswith(f"job 3 (generate): adapter {folder}/a.safetensors was trained on ")
    assert "not on other (sha256 " in problems[5]


def test_a_name_ending_in_another_media_suffix_and_an_empty_adapter_name_are_refused_saying_so(folder: Path):
    """`name: x.mkv` silently became x.mkv.mp4 (`generate -o x.mkv` is refused: it names a file); `adapter: ":0.5"`
    said `no registered adapter of that name` of an empty name."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate, name: x.mkv}
          - {kind: soundtrack, input: clips/beach.mp4, name: "{stem}.WAV"}
          - {kind: generate, name: take.v2}
          - {kind: generate, name: y.mp4, adapter: ":0.5"}
          - {kind: generate, name: z.MP4}
        """)
    assert problems_of(jobs) == {  # z.MP4 is z, as y.mp4 is y: it said "ends in .MP4, but a batch writes … an mp4"
        3: "job 1 (generate): name: 'x.mkv' ends in .mkv, but a batch writes every output as an mp4 (leave the suffix "
           "out: name: x; or name: x.mkv.mp4, the output older versions wrote for it, to keep theirs)",
        4: "job 2 (soundtrack): name: '{stem}.WAV' ends in .WAV, but a batch writes every output as an mp4 (leave the "
           "suffix out: name: {stem}; or name: {stem}.WAV.mp4, the output older versions wrote for it, to keep theirs)",
        6: "job 4 (generate): adapter :0.5: the adapter's file or name is empty (FILE[:WEIGHT] or NAME[:WEIGHT], e.g. "
           "x.safetensors:0.8)"}


def test_a_name_ending_in_mp4_after_another_media_suffix_is_taken_and_an_older_batch_s_output_stays_done(
        folder: Path):
    """Older versions took `name: x.mkv` and wrote (and recorded) out/x.mkv.mp4; today `x.mkv` is refused, and
    `name: x.mkv.mp4` was refused too, as `'x.mkv.mp4' ends in .mkv`. Only a name whose last suffix is a media
    suffix other than .mp4 is refused: x.mkv.mp4 is the output x.mkv.mp4, and the older batch's record of it is done."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate, name: x.mkv.mp4, steps: 2}
        """)
    (job,) = plan_batch(jobs).jobs  # not refused
    assert job.output == "x.mkv.mp4"
    out, manifest = folder / "outputs", Manifest(folder / "outputs")
    out.mkdir()
    (out / job.output).write_bytes(b"the older batch's clip")
    manifest.append(Record(job.output, "done", job.hash, job.number, "generate", job.seed,
                           batch=str(jobs.resolve()), files=manifest.describe_files({"mp4": out / job.output})))
    assert plan_batch(jobs).status == {1: "done"}


def test_the_readme_s_batch_example_sets_previews_to_what_is_not_their_default():
    """The example's `previews: true  # _frames.png and _spectrogram.png next to each clip` read as the way to ask
    for them, which every generate job writes anyway: it shows the key turning them off."""
    import re

    from mmgen.pipelines.settings import GenerateSettings

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    shown = re.findall(r"^\s+previews: (true|false)\b", readme, flags=re.M)
    default = GenerateSettings.__dataclass_fields__["previews"].default
    assert shown and all(value == str(not default).lower() for value in shown), shown


def test_more_steps_than_the_model_starts_from_are_refused_as_steps_in_the_users_words(folder: Path):
    """The demo samples from timestep 650 down, so it takes at most 650 steps: `--steps 651` (within the 1000 --help
    shows) said `sampling settings: start_timestep must be between steps (651) and 999, got 650`."""
    why = "model demo takes at most 650 steps (it samples from timestep 650 down: start_timestep in its sampling settings)"
    flag = run_here("generate", "--steps", 651, "-o", folder / "out", env=mmgen_env(folder))
    assert (flag.returncode, flag.stderr) == (2, f"mmgen: error: --steps 651: {why}\n")
    jobs = write_jobs(folder, """
        jobs:
          - kind: generate
            name: a
            steps: 651
        """)
    assert problems_of(jobs) == {4: f"job 1 (generate): steps 651: {why}"}
    with pytest.raises(UsageError, match=f"^sample_steps 700: {re.escape(why)}$"):
        preview_sampling("demo", "ddim", 700)  # finetune's previews of a demo fine-tune: its config's key


def test_a_dry_run_reads_the_batch_file_once_and_its_problems_still_count(folder: Path, monkeypatch):
    """The command line reads the file before torch loads (a bad file refused at once), then planned it by reading
    it again: twice the YAML and every job's checks (a batch of 10,000 jobs: seconds). The plan takes that read,
    with the problems it found."""
    from mmgen.pipelines.batch import schema

    composed = []
    monkeypatch.setattr(schema, "compose", lambda path, read=schema.compose: composed.append(path) or read(path))
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, steps: 2}
        jobs:
          - {kind: generate, num: 2, seed: 5}
        """)
    result = run_here("batch", jobs, "--dry-run", env=mmgen_env(folder))
    assert result.returncode == 0 and len(composed) == 1, (composed, result)
    assert "generate_1_0001.mp4" in result.stdout and "new: run" in result.stdout, result.stdout
    jobs.write_text(jobs.read_text() + "  - {kind: generate, seeds: 3}\n")
    result = run_here("batch", jobs, "--dry-run", env=mmgen_env(folder))
    assert len(composed) == 2 and result.returncode == 2, result
    assert result.stderr.startswith(f"{jobs}:4: ") and "unknown key 'seeds'" in result.stderr, result.stderr


def test_a_batch_file_windows_powershell_wrote_in_utf16_is_read_and_one_in_another_encoding_says_so(folder: Path):
    """Windows PowerShell 5's `>` writes UTF-16 LE with a byte order mark, which YAML allows: the batch file was
    refused as `cannot read (UnicodeDecodeError)`. It is read now, and a file in no encoding YAML takes says what it
    is not."""
    text = "defaults: {model: tiny.safetensors}\r\njobs:\r\n  - {kind: generate, name: café}\r\n"
    jobs = folder / "jobs.yaml"
    for encoding in ("utf-16", "utf-16-be"):  # Python's utf-16 writes this machine's order with its mark
        jobs.write_bytes(("\ufeff" if encoding == "utf-16-be" else "").encode(encoding) + text.encode(encoding))
        assert [job.output for job in plan_batch(jobs).jobs] == ["café.mp4"]
    jobs.write_bytes(text.encode("latin-1"))
    result = run_here("batch", jobs, "--dry-run", env=mmgen_env(folder))
    assert result.returncode == 2 and result.stderr == (
        f"mmgen: error: {jobs}:3: not UTF-8 text; save it as UTF-8\n")


def test_a_batch_file_in_utf16_without_a_byte_order_mark_is_read_as_yaml_tells_it_by_its_first_character(
        folder: Path):
    """A UTF-16 file without a byte order mark and only ASCII in it said `invalid YAML: unacceptable character
    #x0000`, and one with `café` in it `not UTF-8 text`. YAML 1.2 tells UTF-16 by the zero byte beside the first
    (ASCII) character: both orders are read, whatever the text holds."""
    jobs = folder / "jobs.yaml"
    for name in ("take", "café"):
        for encoding in ("utf-16-le", "utf-16-be"):
            jobs.write_bytes(f"defaults: {{model: tiny.safetensors}}\njobs:\n  - {{kind: generate, name: {name}}}\n"
                             .encode(encoding))
            assert [job.output for job in plan_batch(jobs).jobs] == [f"{name}.mp4"]
    jobs.write_bytes("jobs: []\n".encode("utf-16-le")[:-1])  # cut in a character
    with pytest.raises(ConfigError, match=r"jobs.yaml: not UTF-16 text; save it as UTF-8$"):
        plan_batch(jobs)


def test_a_batch_file_in_utf32_is_read_and_a_stray_nul_in_a_utf8_one_is_named(folder: Path):
    """YAML allows UTF-32 too: a UTF-32 file, with a byte order mark or without, said `invalid YAML: unacceptable
    character #x0000`. And a UTF-8 file with a NUL as its second byte was taken for UTF-16 (`not UTF-16 text`)."""
    jobs = folder / "jobs.yaml"
    text = "defaults: {model: tiny.safetensors}\njobs:\n  - {kind: generate, name: café}\n"
    for encoding in ("utf-32", "utf-32-le", "utf-32-be"):  # utf-32: this machine's order, with its mark
        jobs.write_bytes(text.encode(encoding))
        assert [job.output for job in plan_batch(jobs).jobs] == ["café.mp4"]
    jobs.write_bytes(b"j\0obs: []\n")
    with pytest.raises(ConfigError, match=r"jobs.yaml:1: holds a NUL byte, which no text has; save it as UTF-8 text$"):
        plan_batch(jobs)


def test_a_leading_tilde_in_a_batch_file_s_paths_is_the_home_folder_and_a_variable_gets_a_hint(
        folder: Path, monkeypatch: pytest.MonkeyPatch):
    """No shell reads a batch file: `output_dir: ~/out` made a folder named `~` beside it (where `rm -rf ~` is a
    disaster) and `input: ~/a.mp4` did not exist. A leading `~` is the home folder in every path the file names, as in
    MMGEN_CACHE; `$HOME` is not expanded, and a path that names nothing through one says so."""
    monkeypatch.setenv("HOME", str(folder))
    (folder / "b").mkdir()
    jobs = folder / "b" / "jobs.yaml"
    jobs.write_text(textwrap.dedent("""
        output_dir: ~/out
        defaults: {model: ~/tiny.safetensors}
        jobs:
          - {kind: soundtrack, input: ~/clips/beach.mp4, name: one}
          - {kind: soundtrack, inputs: "~/clips/*.mp4", name: "all/{stem}"}
        """))
    plan = plan_batch(jobs)
    assert plan.output_dir == folder / "out"
    assert [job.input for job in plan.jobs] == [folder / "clips" / "beach.mp4"] * 2
    assert {job.run.model for job in plan.jobs} == {str(folder / "tiny.safetensors")}
    assert not (folder / "b" / "~").exists()
    jobs.write_text(textwrap.dedent("""
        defaults: {model: ~/tiny.safetensors}
        jobs:
          - {kind: soundtrack, input: $HOME/clips/beach.mp4}
          - {kind: generate, model: "${HOME}/tiny.safetensors"}
        """).lstrip())
    problems = problems_of(jobs)
    assert problems[3].endswith("clips/beach.mp4 does not exist (environment variables are not expanded in a YAML "
                                "file)")
    assert problems[4].endswith("/tiny.safetensors: no such model file (environment variables are not expanded in "
                                "a YAML file)")


def test_an_output_dir_or_name_through_a_variable_is_refused_not_made_as_a_folder_named_after_it(folder: Path):
    """`output_dir: $HOME/outs` made `./$HOME/outs` beside the batch file (where `rm -rf $HOME` is a disaster), and
    `outs/$USER` or `name: $USER/take` a folder named `$USER`: no shell reads the file, so a variable anywhere in a
    folder or name mmgen would make is refused, saying so. One already there (an older mmgen's) is taken as written."""
    for written in ("$HOME/outs", "%USERPROFILE%/outs", "${USER}/outs", "outs/$USER", "./$USER/outs", "o/run_${USER}"):
        jobs = write_jobs(folder, f"""
            output_dir: '{written}'
            defaults: {{model: tiny.safetensors}}
            jobs:
              - {{kind: generate}}
            """)
        assert problems_of(jobs) == {1: f"output_dir: {written!r}: environment variables are not expanded in a YAML "
                                        "file (write the folder out, or ~ for the home folder)"}
    jobs = write_jobs(folder, """
        output_dir: o
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate, name: $USER/take}
          - {kind: generate, name: "take_${USER}"}
          - {kind: soundtrack, inputs: clips/*.mp4, name: "scored/${stem}"}
          - {kind: generate, name: price$5}
        """)
    assert problems_of(jobs) == {
        4: "job 1 (generate): name: '$USER/take': environment variables are not expanded in a YAML file (write the name out)",
        5: "job 2 (generate): name: 'take_${USER}': environment variables are not expanded in a YAML file (write the "
           "name out)",
        6: "job 3 (soundtrack): name: 'scored/${stem}': environment variables are not expanded in a YAML file ({stem} "
           "takes no $)"}
    assert not any(folder.glob("**/*[$%]*"))
    (folder / "outs" / "$USER").mkdir(parents=True)  # as an older mmgen made them
    (folder / "o" / "$USER").mkdir(parents=True)
    (folder / "o" / "take_${USER}.mp4").write_bytes(b"its clip")
    (folder / "o" / "scored").mkdir()
    (folder / "o" / "scored" / "$beach.mp4").write_bytes(b"its clip")
    assert [job.output for job in plan_batch(jobs, overwrite=True).jobs] == [  # (files no manifest records)
        "$USER/take.mp4", "take_${USER}.mp4", "scored/$beach.mp4", "price$5.mp4"]
    jobs = write_jobs(folder, "output_dir: outs/$USER\ndefaults: {model: tiny.safetensors}\njobs: [{kind: generate}]\n")
    assert plan_batch(jobs).output_dir == folder / "outs" / "$USER"


def test_a_dollar_or_percent_sign_that_reads_as_no_variable_is_a_name_s_own(folder: Path):
    """`50%off_and_20%more`, `AT$T_ad`, `ca$h_money` and `a$$b` were refused as environment variables, which no one
    reads them as. A variable is `${NAME}`, or `$NAME` / `%NAME%` in capitals or set here (`$HOME`, `%APPDATA%`)."""
    jobs = write_jobs(folder, """
        output_dir: o
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate, name: "50%off_and_20%more"}
          - {kind: generate, name: "AT$T_ad"}
          - {kind: generate, name: "ca$h_money"}
          - {kind: generate, name: "a$$b"}
          - {kind: generate, name: "%APPDATA%/take"}
        """)
    assert problems_of(jobs) == {
        8: "job 5 (generate): name: '%APPDATA%/take': environment variables are not expanded in a YAML file (write "
           "the name out)"}


def test_a_batch_an_older_mmgen_finished_in_a_folder_named_tilde_is_told_where_its_outputs_are(
        folder: Path, monkeypatch: pytest.MonkeyPatch):
    """mmgen before 2026-12-02 wrote `output_dir: ~/out` into a folder named `~` beside the batch file; this one reads
    the home folder's, and started the batch over there without a word. Where `~/out` beside the batch file holds
    this batch's manifest, a note says where its outputs are and how to keep using them."""
    monkeypatch.setenv("HOME", str(folder / "home"))
    jobs = write_jobs(folder, """
        output_dir: ~/out
        defaults: {model: tiny.safetensors, steps: 2, previews: false}
        jobs:
          - {kind: generate, name: one}
        """)
    older = folder / "~" / "out"
    older.mkdir(parents=True)
    assert "note:" not in run_here("batch", jobs, "--dry-run", env=mmgen_env(folder, HOME=str(folder / "home"))).stderr
    (job,) = plan_batch(jobs, output_dir=older).jobs
    (older / job.output).write_bytes(b"the batch's clip")
    manifest = Manifest(older)  # as that mmgen recorded it: its batch file by its real path
    manifest.append(Record(job.output, "done", job.hash, job.number, job.kind, job.seed, batch=str(jobs.resolve()),
                           files=manifest.describe_files({"mp4": older / job.output})))
    result = run_here("batch", jobs, "--dry-run", "--json", env=mmgen_env(folder, HOME=str(folder / "home")))
    assert result.returncode == 0 and json.loads(result.stdout)["status"] == "new", result.stderr
    assert [line for line in result.stderr.splitlines() if "note:" in line] == [
        f"{jobs}:1: note: output_dir: ~/out is {folder}/home/out (~: your home folder); this batch's outputs made by an "
        f"older mmgen are in {older}: to keep using them, write output_dir: ./~/out"]
    jobs.write_text(jobs.read_text().replace("~/out", "./~/out"))
    assert plan_batch(jobs).status == {1: "done"}


NO_USER = "~no-such-user-mmgen"  # no user has this name: a shell leaves it as it is written


def test_an_output_dir_from_a_user_there_is_no_such_is_refused_unless_its_folder_is_there(folder: Path):
    """`output_dir: ~nosuchuser/x` made a folder named `~nosuchuser` beside the batch file, as a shell would: for one
    who writes it, almost always a typo for a user's home. It is refused, with the way to such a folder, unless that
    folder is there already (an older mmgen's, or made on purpose): then it is taken as written."""
    jobs = write_jobs(folder, f"""
        output_dir: {NO_USER}/x
        defaults: {{model: tiny.safetensors}}
        jobs:
          - {{kind: generate}}
        """)
    assert problems_of(jobs) == {1: f"output_dir: '{NO_USER}/x': there is no user {NO_USER[1:]} here, so {NO_USER} would "
                                    f"be a folder named {NO_USER} (write the home folder out, or ./{NO_USER}/x for a "
                                    "folder of that name)"}
    assert not (folder / NO_USER).exists()
    (folder / NO_USER).mkdir()
    assert plan_batch(jobs).output_dir == folder / NO_USER / "x"


def test_a_name_from_the_home_folder_is_refused_as_output_dir_reads_it_unless_an_older_mmgen_made_its_folder(
        folder: Path, monkeypatch: pytest.MonkeyPatch):
    """`name: ~/x` planned `OUT/~/x.mp4` without a word, where `output_dir: ~/out` is the home folder's: read so, it is
    outside the output folder, refused with the way to a folder named `~` (`./~/x`, no Windows note for its `.`); so
    is a folder from a user there is no such. Where an older mmgen made that folder, the name is its, as written."""
    monkeypatch.setenv("HOME", str(folder / "home"))
    jobs = write_jobs(folder, f"""
        output_dir: o
        defaults: {{model: tiny.safetensors, steps: 2, previews: false}}
        jobs:
          - {{kind: generate, name: ~/x}}
          - {{kind: generate, name: {NO_USER}/y}}
          - {{kind: generate, name: ./~/z}}
        """)
    assert problems_of(jobs) == {
        4: f"job 1 (generate): name: '~/x' reads as {folder}/home/x (~: the home folder), outside the output folder "
           "(write ./~/x for a folder named ~ in it)",
        5: f"job 2 (generate): name: '{NO_USER}/y': there is no user {NO_USER[1:]} here, so {NO_USER} would be a folder "
           f"named {NO_USER} (write ./{NO_USER}/y for a folder of that name)"}
    assert windows_note("./~/z") is None  # (it said Windows drops the trailing dot of the folder '.')
    (folder / "o" / "~").mkdir(parents=True)
    (folder / "o" / NO_USER).mkdir()
    plan = plan_batch(jobs)  # as an older mmgen planned it, and recorded its output
    assert [job.output for job in plan.jobs] == ["~/x.mp4", f"{NO_USER}/y.mp4", "./~/z.mp4"]
    job = plan.jobs[0]
    (folder / "o" / job.output).write_bytes(b"the batch's clip")
    manifest = Manifest(folder / "o")
    manifest.append(Record(job.output, "done", job.hash, job.number, job.kind, job.seed, batch=str(jobs.resolve()),
                           files=manifest.describe_files({"mp4": folder / "o" / job.output})))
    assert plan_batch(jobs).status == {1: "done", 2: "new", 3: "new"}

def test_a_path_written_as_windows_writes_it_is_refused_where_mmgen_makes_it_and_gets_a_hint_where_missing(
        folder: Path):
    """`input: C:\\clips\\a.mp4` was `…/C:\\clips\\a.mp4 does not exist`, glued onto the batch file's folder, with no
    word of why; `output_dir: out\\win` and `name: sub\\x` made a folder and a file with a backslash in their names."""
    hint = "(write paths with / ; \\ is not a folder separator here)"
    jobs = write_jobs(folder, r"""
        output_dir: out\win
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: soundtrack, input: C:\clips\beach.mp4}
          - {kind: soundtrack, input: clips\beach.mp4, name: b}
          - {kind: soundtrack, inputs: clips\*.mp4, name: "c/{stem}"}
          - {kind: generate, name: sub\x}
          - {kind: generate, model: D:/models/tiny.safetensors}
          - {kind: generate, name: "dir /y"}
        """)
    problems = problems_of(jobs)
    assert problems[1] == f"output_dir: 'out\\\\win': {hint[1:-1]}"
    assert problems[4].endswith(f"input: {folder}/C:\\clips\\beach.mp4 does not exist {hint}")
    assert problems[5].endswith(f"input: {folder}/clips\\beach.mp4 does not exist {hint}")
    assert problems[6].endswith(f"no file matches clips\\*.mp4 (in {folder}) {hint}")
    assert problems[7] == f"job 4 (generate): name: 'sub\\\\x': {hint[1:-1]}"
    assert problems[8].endswith(f"{folder}/D:/models/tiny.safetensors: no such model file ('D:/models/"
                                "tiny.safetensors' reads as drive D: on Windows; here it is a relative path)")
    assert set(problems) == {1, 4, 5, 6, 7, 8}  # a space is no separator


def test_a_missing_path_on_a_windows_drive_written_with_slashes_is_told_of_its_drive_not_to_write_slashes(
        folder: Path):
    """`input: "C:/a.mp4"` said `write paths with / ; \\ is not a folder separator here` to one who had written `/`:
    the drive is what reads otherwise here, said as output_dir's refusal says it; a `\\` still gets its own hint."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: soundtrack, input: "C:/clips/a.mp4"}
          - {kind: soundtrack, input: C:a.mp4, name: b}
          - {kind: generate, model: "c:/m/x.safetensors"}
          - {kind: generate, adapter: D:/m/style.safetensors}
        """)
    drive = "reads as drive {} on Windows; here it is a relative path)"
    assert problems_of(jobs) == {
        3: f"job 1 (soundtrack): input: {folder}/C:/clips/a.mp4 does not exist ('C:/clips/a.mp4' {drive.format('C:')}",
        4: f"job 2 (soundtrack): input: {folder}/C:a.mp4 does not exist ('C:a.mp4' {drive.format('C:')}",
        5: f"job 3 (generate): {folder}/c:/m/x.safetensors: no such model file ('c:/m/x.safetensors' "
           f"{drive.format('C:')}",
        6: f"job 4 (generate): adapter {folder}/D:/m/style.safetensors: no such file ('D:/m/style.safetensors' "
           f"{drive.format('D:')}"}


def test_an_output_dir_written_as_a_bare_tilde_says_yaml_reads_it_as_null_and_a_quoted_one_is_the_home_folder(
        folder: Path, monkeypatch: pytest.MonkeyPatch):
    """README says a leading `~` in output_dir is the home folder, but YAML reads `output_dir: ~` as null: it said
    only `expected a folder, got None`. It says why now, and how to write the home folder."""
    monkeypatch.setenv("HOME", str(folder / "home"))
    jobs = write_jobs(folder, """
        output_dir: ~
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate}
        """)
    assert problems_of(jobs) == {1: "output_dir: expected a folder, got None (a bare ~ is YAML's null: write '~' in "
                                    "quotes or ~/ for the home folder)"}
    jobs.write_text(jobs.read_text().replace("~", "'~'"))
    assert plan_batch(jobs).output_dir == folder / "home"


def test_an_output_dir_on_a_windows_drive_written_with_slashes_is_refused_not_made_as_a_folder_named_c(folder: Path):
    """`output_dir: C:\\renders` was refused, but `output_dir: C:/renders` made a folder named `C:` beside the batch
    file and wrote the batch there, and `output_dir: c:x` (drive C:'s current folder, as `name: c:x` is refused) one
    named `c:x`: a path on a Windows drive is refused in one line (exit 2), nothing made."""
    for written, made in [("C:/renders", "C:"), ("c:x", "c:x"), ("d:/", "d:"), ("C: x", "C: x"), ("C:", "C:")]:
        jobs = write_jobs(folder, f"""
            output_dir: "{written}"
            defaults: {{model: tiny.safetensors, steps: 2, previews: false}}
            jobs:
              - {{kind: generate, name: one}}
            """)
        result = run_here("batch", jobs, env=mmgen_env(folder))
        assert result.returncode == 2 and result.stderr.splitlines()[0] == (
            f"{jobs}:1: output_dir: {written!r} reads as drive {written[0].upper()}: on Windows; here it would be a "
            f"folder named {made} (write the folder as this system names it)"), result.stderr
    assert not any(":" in path.name for path in folder.iterdir())
    jobs.write_text(jobs.read_text().replace('"C:"', '"12:30 take"'))  # a folder's name, as a job's name may be
    assert plan_batch(jobs).output_dir == folder / "12:30 take"


def test_an_output_dir_on_a_windows_drive_an_older_mmgen_made_beside_the_batch_file_is_refused_with_the_way_on(
        folder: Path):
    """mmgen before 2026-12-02 made `output_dir: C:/renders` as a folder named `C:` beside the batch file. Refused now,
    the refusal says how to keep writing there: `output_dir: ./C:/renders`, which then is the batch's folder."""
    jobs = write_jobs(folder, """
        output_dir: C:/renders
        defaults: {model: tiny.safetensors, steps: 2, previews: false}
        jobs:
          - {kind: generate, name: one}
        """)
    (folder / "C:" / "renders").mkdir(parents=True)
    assert problems_of(jobs)[1] == (
        "output_dir: 'C:/renders' reads as drive C: on Windows; here it would be a folder named C: (write the folder as "
        "this system names it); C:/renders beside the batch file is its folder made by an older mmgen: to keep it, "
        "write output_dir: ./C:/renders")
    jobs.write_text(jobs.read_text().replace("C:/renders", "./C:/renders"))
    assert plan_batch(jobs).output_dir == folder / "C:" / "renders"


def test_every_windows_device_name_is_a_note_superscript_ports_and_the_console_s_too():
    """`COM¹`, `LPT³`, `CONIN$` and `CONOUT$` are device names on Windows as `COM1` is (Python 3.13's
    os.path.isreserved lists them) but got no note."""
    for name in ("COM\u00b9", "com\u00b2.wav", "LPT\u00b3", "dir/CONIN$", "conout$.json", "COM1"):
        assert windows_note(name) == f"{name.split('/')[-1].split('.')[0]} is a device name on Windows, whatever its suffix"
    assert windows_note("COM\u2074") is None and windows_note("CONIN") is None and windows_note("COM0") is None


def test_a_name_windows_cannot_store_is_a_note_and_a_drive_or_a_name_too_long_is_refused_in_a_batch_s_words(
        folder: Path):
    """Names a Windows disk cannot hold (`CON`, `q?`) were taken without a word while case twins were refused for
    Windows' sake: each is a note now (not refused: older batch files used them). `a:b` was refused as `an absolute
    path` (it reads as drive A:), and a name too long said `choose a shorter name with -o`, a batch's folder."""
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, previews: false}
        jobs:
          - {kind: generate, name: CON}
          - {kind: generate, name: nul.mp4}
          - {kind: generate, name: dir/aux.json}
          - {kind: generate, name: "12:30 take"}
          - {kind: generate, name: 'lt<gt>|"q?"'}
          - {kind: generate, name: "trail./x"}
          - {kind: generate, name: "trail."}
          - {kind: generate, name: fine}
        """)
    done = run_here("batch", jobs, "--dry-run", "--json", env=mmgen_env(folder))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 8
    why = "cannot be stored on a Windows disk"
    assert done.stderr.splitlines() == [
        f"{jobs}:3: note: job 1 (generate): name: 'CON' {why} (CON is a device name on Windows, whatever its suffix)",
        f"{jobs}:4: note: job 2 (generate): name: 'nul.mp4' {why} (nul is a device name on Windows, whatever its "
        "suffix)",
        f"{jobs}:5: note: job 3 (generate): name: 'dir/aux.json' {why} (aux is a device name on Windows, whatever "
        "its suffix)",
        f"{jobs}:6: note: job 4 (generate): name: '12:30 take' {why} (':' is not allowed in a Windows file name)",
        f"{jobs}:7: note: job 5 (generate): name: 'lt<gt>|\"q?\"' {why} ('<' '>' '|' '\"' '?' are not allowed in a "
        "Windows file name)",
        f"{jobs}:8: note: job 6 (generate): name: 'trail./x' {why} (Windows drops the trailing dot of the folder "
        "'trail.')",
        "No model downloads needed.", "8 jobs: 8 to run, 0 done (dry run: nothing was run)"]  # trail..mp4: fine
    jobs = write_jobs(folder, f"""
        defaults: {{model: tiny.safetensors}}
        jobs:
          - {{kind: generate, name: "a:b"}}
          - {{kind: generate, name: {"y" * 300}}}
        """)
    problems = problems_of(jobs)
    assert problems[3] == "job 1 (generate): name: 'a:b' reads as drive A: on Windows (a name is relative to the output folder)"
    assert problems[4].endswith("longer than the 255 the filesystem allows (choose a shorter name with the job's `name:`)")


def test_a_name_windows_cannot_store_is_noted_only_for_a_job_the_run_writes_not_one_done(folder: Path):
    """The note on a name Windows cannot store was said on every dry run and run, also for a job done and skipped,
    which writes nothing: said for the jobs to run (new, changed, redo) only."""
    jobs, out, manifest, job = one_job_done(folder, "CON")
    done = run_here("batch", jobs, "--dry-run", env=mmgen_env(folder))
    assert done.returncode == 0, done.stderr
    assert "1 job: 0 to run, 1 done" in done.stdout, done.stdout
    assert "Windows" not in done.stderr, done.stderr
    jobs.write_text(jobs.read_text().replace("steps: 2", "steps: 3"))  # changed: to redo, written again
    done = run_here("batch", jobs, "--dry-run", env=mmgen_env(folder))
    assert done.returncode == 0, done.stderr
    assert f"{jobs}:3: note: job 1 (generate): name: 'CON' cannot be stored on a Windows disk" in done.stderr


def test_outputs_named_from_inputs_windows_cannot_store_are_one_note_for_the_job_naming_those_the_run_writes(
        folder: Path):
    """`name: aux` was a note, but `name: "{stem}"` over the inputs `aux.mp4` and `what?.mp4` wrote outputs of the same
    names without a word, and so did a job's default name (`what?_soundtrack`): each job says which of its outputs
    named from its inputs a Windows disk cannot store, in one line, for those the run writes (not one done)."""
    for name in ("aux", "what?"):
        write_test_video(folder / "clips" / f"{name}.mp4", size=(32, 32))
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors, previews: false}
        jobs:
          - {kind: soundtrack, inputs: "clips/*.mp4", name: "{stem}"}
          - {kind: soundtrack, input: "clips/what?.mp4"}
        """)
    why = "cannot be stored on a Windows disk"
    device, refused = "aux is a device name on Windows, whatever its suffix", "'?' is not allowed in a Windows file name"
    done = run_here("batch", jobs, "--dry-run", "--json", env=mmgen_env(folder))
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 4, done.stderr
    assert done.stderr.splitlines()[:2] == [
        f"{jobs}:3: note: job 1 (soundtrack): 2 outputs named from its inputs {why}: aux.mp4 ({device}), what?.mp4 "
        f"({refused})",
        f"{jobs}:4: note: job 2 (soundtrack): 1 output named from its input {why}: what?_soundtrack.mp4 ({refused})"]
    out, manifest = folder / "outputs", Manifest(folder / "outputs")
    out.mkdir()
    aux = next(job for job in plan_batch(jobs).jobs if job.output == "aux.mp4")
    aux.files.mp4.write_bytes(b"the batch's soundtrack")
    manifest.append(Record(aux.output, "done", aux.hash, aux.number, aux.kind, aux.seed, batch=manifest.batch_named(jobs),
                           files=manifest.describe_files(aux.files.files)))
    done = run_here("batch", jobs, "--dry-run", env=mmgen_env(folder))
    assert "4 jobs: 3 to run, 1 done" in done.stdout, done.stdout
    assert done.stderr.splitlines()[0] == (
        f"{jobs}:3: note: job 1 (soundtrack): 1 output named from its inputs {why}: what?.mp4 ({refused})")


def test_a_job_whose_output_is_a_pipe_is_told_to_change_its_name_not_minus_o(folder: Path):
    """A pipe where a job's output goes was refused with the command line's hint, `give -o a file's path or a
    folder`; but in a batch -o is the output folder, and what names the job's output is its `name:`."""
    (folder / "outputs").mkdir()
    os.mkfifo(folder / "outputs" / "g.mp4")
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: generate, name: g}
        """)
    done = run_here("batch", jobs, "--dry-run", env=mmgen_env(folder))
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        f"{jobs}:3: job 1 (generate): cannot write {folder / 'outputs' / 'g.mp4'}: it is a pipe; an output is a "
        "regular file, written whole and then moved into place (choose another output with the job's `name:`)")


def test_a_batch_done_under_a_utf8_locale_is_done_under_an_ascii_one_and_the_other_way_round(folder: Path):
    """`name: naïve` from `input: clips/café.mp4`, run under a UTF-8 locale, was "not written by this batch" under
    LC_ALL=C PYTHONUTF8=0 (where Python names the same bytes `na\\udcc3\\udcafve`), and a batch run there was so
    under UTF-8: the manifest and the job's hash took the names as text. They are the file system's bytes."""
    import subprocess

    shutil.copy(folder / "clips" / "beach.mp4", folder / "clips" / "caf\u00e9.mp4")
    jobs = write_jobs(folder, """
        defaults: {model: tiny.safetensors}
        jobs:
          - {kind: soundtrack, input: clips/café.mp4, name: "naïve/{stem}", steps: 2}
        """)
    out = folder / "outputs"

    def run_as_mmgen_batch_records_it(jobs: Path | str) -> None:
        manifest = Manifest(Path(jobs).parent / "outputs")
        (job,) = plan_batch(jobs).jobs
        for path in job.files.files.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"made")
        manifest.append(Record(job.output, "done", job.hash, 1, job.kind, job.seed, batch=manifest.batch_named(
            Path(jobs)), files=manifest.describe_files(job.files.files)))

    assert sys.getfilesystemencoding() == "utf-8"
    run_as_mmgen_batch_records_it(jobs)
    under_c = "\n".join([  # a dry run, then a run of its own, then a dry run
        "import shutil, sys; from pathlib import Path; from mmgen.pipelines.batch import plan_batch",
        "from mmgen.pipelines.batch.manifest import Manifest, Record; print(sys.getfilesystemencoding())",
        "print(plan_batch('jobs.yaml').status); shutil.rmtree('outputs')",
        textwrap.dedent(inspect.getsource(run_as_mmgen_batch_records_it)),
        "run_as_mmgen_batch_records_it('jobs.yaml'); print(plan_batch('jobs.yaml').status)"])
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", under_c], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == ["ascii", "{1: 'done'}", "{1: 'done'}", ""]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["naïve"]  # one folder, under both locales
    assert plan_batch(jobs).status == {1: "done"}


def test_a_project_copied_with_hard_links_and_run_leaves_the_original_s_manifest_as_it_was(folder: Path):
    """`cp -al hl hl2` shares every file, the manifest too: a run of hl2 with another seed appended its records to
    the original's, and hl then said `g.mp4 exists and was changed since this batch wrote it`. The copy's manifest
    is made its own before it is added to; its outputs are replaced by rename, as always."""
    jobs, out, _, _ = one_job_done(folder, "g")
    hl2 = folder.with_name(f"{folder.name}-hl2")
    (out / MANIFEST_NAME).chmod(0o600)  # kept private
    shutil.copytree(folder, hl2, copy_function=os.link)  # as `cp -al` copies
    before = (out / MANIFEST_NAME).read_bytes()

    copy = hl2 / "jobs.yaml"
    edited = copy.read_text().replace("steps: 2", "steps: 3")
    copy.unlink()  # saved anew, as `sed -i` saves it (not through the link into the original)
    copy.write_text(edited)
    (job2,) = plan_batch(copy, overwrite=True).jobs  # run there, as `mmgen batch` writes and records it
    for path in job2.files.files.values():
        with atomic_output(path, overwrite=True) as temp:
            temp.write_bytes(b"the copy's own")
    copied = Manifest(hl2 / "outputs")
    copied.append(Record(job2.output, "done", job2.hash, 1, job2.kind, job2.seed, batch=copied.batch_named(copy),
                         files=copied.describe_files(job2.files.files)))

    assert (out / MANIFEST_NAME).read_bytes() == before
    assert (hl2 / "outputs" / MANIFEST_NAME).stat().st_mode & 0o777 == 0o600  # the copy's own, as private
    assert plan_batch(jobs).status == {1: "done"}
    assert plan_batch(copy).status == {1: "done"}


def test_a_batch_files_key_lines_are_read_apart_from_its_checks(tmp_path: Path):
    """Where each key is (pipelines/batch/key_lines) is its own module, split from schema (396 of its 400 lines):
    one parse gives the data and the line of every key and list item, a key a `<<:` merge gave at its mapping's
    line, with where it came from."""
    from mmgen.pipelines.batch import key_lines

    data, lines = key_lines.compose(write_jobs(tmp_path, """
        jobs:
          - &gen
            kind: generate
            seed: 5
          - <<: *gen
            name: b
        """))
    assert data["jobs"][1] == {"kind": "generate", "seed": 5, "name": "b"}
    assert (lines[("jobs",)], lines[("jobs", 0)], lines[("jobs", 0, "seed")], lines[("jobs", 1, "name")]) == (1, 2, 4, 6)
    assert lines[("jobs", 1, "seed")] == 5 and lines.merged[("jobs", 1, "seed")] == "<<: *gen, line 4"
    assert lines.said(("jobs", 1, "seed"), "job 2 (generate): seed: bad", "job 2 (generate)") == \
        "job 2 (generate): seed (from <<: *gen, line 4): bad"
