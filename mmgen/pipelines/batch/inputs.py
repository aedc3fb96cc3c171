"""The input files of a batch's jobs, each checked as its command checks it before any work, so that `--dry-run`
finds a file that cannot be read, a range past its end or a picture of another size at the job's line."""

from __future__ import annotations

import glob
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgen.errors import MediaError, UsageError
from mmgen.media import probe
from mmgen.pipelines.batch.schema import JobSpec
from mmgen.pipelines.preflight import check_input, check_ranges, stream_spans
from mmgen.pipelines.retake import check_frames
from mmgen.pipelines.settings import MatchingSettings, RetakeSettings
from mmgen.spelled_paths import SpelledPaths, unicode_form
from mmgen.written_paths import missing_hint


def job_inputs(spec: JobSpec, settings: MatchingSettings, folder: Path, output_dir: Path,
               problem: Callable[[int | None, str], None], config: Callable[[str], Any]) -> list[Path]:
    """The files a job of `spec` reads — its `input:`, or the files its `inputs:` glob matches under the batch file's
    `folder`, never one in the batch's `output_dir` — that pass the checks its command makes before any work (the
    streams it needs; a retake's ranges inside them and, for a picture retake, the model's frame size: `config`, a
    model's config if known without loading it). Each one that does not is a `problem` at its line."""
    if spec.input is not None:
        if not spec.input.is_file():
            problem(spec.line_of("input"), f"job {spec.index} ({spec.kind}): input: {spec.input} does not exist"
                    + (_spelled_hint(spec.input) or missing_hint(spec.input)))
            return []
        candidates, line = [spec.input], spec.line_of("input")
    elif spec.inputs is not None:
        out = output_dir.resolve()
        # root_dir, not folder / pattern: the folder's own name may hold glob characters such as "["
        matches = glob.glob(spec.inputs, root_dir=folder, recursive=True)
        files = [folder / p for p in sorted(matches) if (folder / p).is_file()]
        # a batch never eats its own outputs (a glob over a folder that holds the output folder)
        candidates = [p for p in files if not p.resolve().is_relative_to(out)]
        line = spec.line_of("inputs")
        if not candidates:
            skipped = (f"{len(files)} match{'es are' if len(files) > 1 else ' is'} in the output folder, "
                       "and files there are never taken as inputs")
            problem(line, f"job {spec.index} ({spec.kind}): inputs: "
                    + (f"no file outside the output folder {out} matches {spec.inputs}: {skipped}" if files
                       else f"no file matches {spec.inputs} (in {folder})"
                       + (_glob_folder_hint(folder, spec.inputs) or missing_hint(folder / spec.inputs))))
    else:
        return []
    usable = []
    for path in candidates:
        try:
            for stream in settings.streams():
                check_input(path, stream)
        except MediaError as e:
            problem(line, f"job {spec.index} ({spec.kind}): {e}")
            continue
        if isinstance(settings, RetakeSettings):  # each range inside what the input lasts
            info = probe(path)
            try:
                check_ranges(settings.ranges, stream_spans(info), settings.modality, path)
            except UsageError as e:
                problem(spec.line_of("ranges"), spec.told(e, "ranges"))
                continue
            try:  # a video retake: the clip at the model's frame size
                check_frames(settings, info, config(str(settings.model)))
            except UsageError as e:
                problem(line, f"job {spec.index} ({spec.kind}): {e}")
                continue
        usable.append(path)
    return usable


def _spelled_hint(path: Path) -> str:
    """` (… is there: …)` where `path`, missing, is there with its name or folders' on the way in another Unicode
    form (NFC `café`, NFD `café`: they look alike, so `input: …/café.mp4 does not exist` showed a path that looked
    right), naming each part that differs (fixing one alone still fails on the next); "" otherwise."""
    there = SpelledPaths().respelled(path)
    if there is None:
        return ""
    named = [theirs for ours, theirs in zip(path.parts, there.parts, strict=False) if ours != theirs] or [there.name]
    forms = {unicode_form(each) for each in named}
    parts = (" and ".join(map(repr, named)) + f" in another Unicode form ({forms.pop()})" if len(forms) == 1
             else " and ".join(f"{each!r} ({unicode_form(each)})" for each in named) + " in other Unicode forms")
    return f" ({there} is there: {parts}; write it so in the batch file, or rename it)"


def _glob_folder_hint(folder: Path, pattern: str) -> str:
    """`_spelled_hint` for the folder an `inputs:` glob names before its first wildcard (`résumé/*.mp4`), where
    that folder is missing as written but there in another Unicode form; "" otherwise."""
    literal = []
    for part in Path(pattern).parts[:-1]:
        if any(c in part for c in "*?["):
            break
        literal.append(part)
    if not literal or (folder.joinpath(*literal)).is_dir():
        return ""
    return _spelled_hint(folder.joinpath(*literal))
