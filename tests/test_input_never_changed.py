"""The input is never changed: an output that is the input file — by name, through a symlink or a hard link —
is refused with exit 2 before anything runs, whatever --overwrite says. Each story ends by checking the
user's file still holds its original bytes."""

from __future__ import annotations

import os
import textwrap

import pytest
from media_factory import write_test_video
from mmgen_cli import mmgen_env, run_mmgen

from mmgen.errors import UsageError
from mmgen.pipelines import soundtrack
from mmgen.pipelines.settings import SoundtrackSettings


def test_a_batch_job_that_would_write_over_its_own_input_is_a_problem_with_its_line(tiny, tmp_path):
    source = write_test_video(tmp_path / "clip.mp4", seconds=1.0).path
    original = source.read_bytes()
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(textwrap.dedent(f"""
        output_dir: .
        defaults: {{model: {tiny}, steps: 2}}
        jobs:
          - kind: generate
            name: fine
          - kind: soundtrack
            input: clip.mp4
            name: clip
        """))

    done = run_mmgen("batch", jobs, "--overwrite", env=mmgen_env(tmp_path))

    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == (f"{jobs}:7: job 2 (soundtrack): cannot write {source}: it is the input {source} "
                        "(an output never replaces an input)")
    assert lines[-1] == f"mmgen: error: {jobs}: 1 problem found, nothing was run"
    assert source.read_bytes() == original and not (tmp_path / "fine.mp4").exists()


def test_a_batch_output_hard_linked_to_another_jobs_input_is_refused(tiny, tmp_path):
    source = write_test_video(tmp_path / "clip.mp4", seconds=1.0).path
    os.link(source, tmp_path / "scored.mp4")  # job 1 would write "scored.mp4": the same file as job 2's input
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"output_dir: .\ndefaults: {{model: {tiny}}}\njobs:\n"
                    "  - {kind: generate, name: scored}\n  - {kind: soundtrack, input: clip.mp4, name: other}\n")

    done = run_mmgen("batch", jobs, "--overwrite", env=mmgen_env(tmp_path))

    assert done.returncode == 2, done.stderr
    assert f"job 1 (generate): cannot write {tmp_path / 'scored.mp4'}: it is the input {source}" in done.stderr


@pytest.mark.parametrize("link", ["same name", "symlink", "hard link"])
def test_the_python_api_refuses_too(tiny, tmp_path, link):
    source = write_test_video(tmp_path / "clip.mp4", seconds=1.0).path
    original = source.read_bytes()
    output = {"same name": source, "symlink": tmp_path / "out.mp4", "hard link": tmp_path / "out.mp4"}[link]
    if link == "symlink":
        output.symlink_to(source)
    elif link == "hard link":
        os.link(source, output)

    with pytest.raises(UsageError, match="it is the input"):
        soundtrack(source, output, SoundtrackSettings(model=str(tiny), steps=2), overwrite=True)
    assert source.read_bytes() == original
