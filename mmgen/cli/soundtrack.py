"""`mmgen soundtrack`: give a video of any length a matching soundtrack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmgen.cli import options
from mmgen.cli._results import reporting
from mmgen.cli.app import app
from mmgen.cli.progress import progress_display
from mmgen.pipelines import SoundtrackSettings


@app.command(epilog="Examples:  `mmgen soundtrack my_clip.mp4`,  `mmgen soundtrack talk.mov --mix 0.3 --wav -o out.mp4`")
@options.settings_flags
def soundtrack(
    input: Annotated[Path, typer.Argument(metavar="INPUT", help="The video file to score (any length, any format PyAV reads): a path; `-` is not standard input.")],
    output: options.OutputFile = None,
    *, settings: SoundtrackSettings, overwrite: options.Overwrite = False, json: options.Json = False,
) -> None:
    """Give a video a soundtrack: new audio that matches its picture, for any length.

    The output keeps the ORIGINAL video stream (copied, not re-encoded) and lasts exactly as long as the input.
    """
    from mmgen.pipelines.checked_once import checks_kept
    from mmgen.pipelines.preflight import check_matching

    # the pipeline's own checks, before it is imported (torch: seconds): a refusal that needs no model is said at once;
    # the pipeline's call of them then finds them done (checked_once)
    with checks_kept():
        check_matching("soundtrack", input, output, settings, overwrite=overwrite)
        from mmgen.pipelines.soundtrack import soundtrack as make_soundtrack

        with reporting(json), progress_display() as progress:
            make_soundtrack(input, output, settings, overwrite=overwrite, progress=progress)
