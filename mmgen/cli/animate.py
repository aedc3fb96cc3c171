"""`mmgen animate`: make a video for a sound of any length."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmgen.cli import options
from mmgen.cli._results import reporting
from mmgen.cli.app import app
from mmgen.cli.progress import progress_display
from mmgen.pipelines import AnimateSettings


@app.command(epilog="Examples:  `mmgen animate birdsong.wav`,  `mmgen animate song.mp3 --no-upscale -o song.mp4`")
@options.settings_flags
def animate(
    input: Annotated[Path, typer.Argument(metavar="AUDIO", help="The sound file to animate (wav, mp3, m4a, or a video's audio): a path; `-` is not standard input.")],
    output: options.OutputFile = None,
    *, settings: AnimateSettings, overwrite: options.Overwrite = False, json: options.Json = False,
) -> None:
    """Animate a sound: a new video that matches it, for any length.

    The output keeps the ORIGINAL audio (copied when the container can hold it) and lasts exactly as long as the
    input; --loudness/--sample-rate re-encode it at that loudness and rate instead.
    """
    from mmgen.pipelines.checked_once import checks_kept
    from mmgen.pipelines.preflight import check_matching

    # the pipeline's own checks, before it is imported (torch: seconds): a refusal that needs no model is said at once;
    # the pipeline's call of them then finds them done (checked_once)
    with checks_kept():
        check_matching("animate", input, output, settings, overwrite=overwrite)
        from mmgen.pipelines.animate import animate as make_video

        with reporting(json), progress_display() as progress:
            make_video(input, output, settings, overwrite=overwrite, progress=progress)
