"""`mmgen retake`: regenerate the sound (or picture) of a clip between A and B seconds, keeping the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmgen.cli import options
from mmgen.cli._results import reporting
from mmgen.cli.app import app
from mmgen.cli.progress import progress_display
from mmgen.pipelines.settings import RetakeSettings


@app.command(epilog="Examples:  `mmgen retake clip.mp4 --range 2:3.5`,  `"
                    "mmgen retake clip.mp4 --range 0:1 --range 4:5 --video --seed 7 -o fixed.mp4`")
@options.settings_flags
def retake(
    input: Annotated[Path, typer.Argument(metavar="INPUT", help="The clip to mend, a video file with sound: a path; `-` is not standard input.")],
    output: options.OutputFile = None,
    *, settings: RetakeSettings, overwrite: options.Overwrite = False, json: options.Json = False,
) -> None:
    """Regenerate one modality of a clip within time ranges, conditioned on everything around them.

    Outside the ranges the output is the input: its sound sample for sample (at the delivered rate) and its
    picture's packets copied for a sound retake; its frames and its sound's packets for a picture retake.
    """
    from mmgen.pipelines.checked_once import checks_kept
    from mmgen.pipelines.preflight import check_retake

    # the pipeline's own checks, before it is imported (torch: seconds): a refusal that needs no model is said at once;
    # the pipeline's call of them then finds them done (checked_once)
    with checks_kept():
        check_retake(input, output, settings, overwrite=overwrite)
        from mmgen.pipelines.retake import retake as make_retake

        with reporting(json), progress_display() as progress:
            make_retake(input, output, settings, overwrite=overwrite, progress=progress)
