"""`mmgen generate`: new clips, video and sound together."""

from __future__ import annotations

from typing import Annotated

import typer

from mmgen.cli import options
from mmgen.cli._results import reporting
from mmgen.cli.app import app
from mmgen.cli.progress import progress_display
from mmgen.pipelines.settings import GenerateSettings, Limit


@app.command(
    epilog="Examples:  `mmgen generate -n 4 -o out/`,  `mmgen generate -m landscape --seed 7 --device cuda`"
)
@options.settings_flags
def generate(
    out_dir: Annotated[
        str,  # a str, not a Path: a Path would drop the trailing slash of `-o clip.mp4/`, a folder so named
        typer.Option("--out-dir", "-o", metavar="OUT_DIR", rich_help_panel="Output",
                     help="Folder for clip_0000.mp4, … (created if missing) with a sidecar .json and "
                     "_frames.png / _spectrogram.png previews each. A new name ending as a media file's (.mp4, .gif, .wav, …) is "
                     "refused: OUT.mp4/ makes a folder so named."),
    ] = ".",
    *,
    settings: GenerateSettings,
    batch_size: Annotated[
        int, typer.Option(metavar="CLIPS", min=1, parser=options.whole_number, rich_help_panel="Hardware",
                          help="Clips sampled together: faster on a GPU. A batch size rounds the sums differently, and the "
                          "sound's encoder can make that heard: a clip is remade exactly from its seed at the batch "
                          "size its sidecar records.")
    ] = 1,
    overwrite: options.Overwrite = False,
    json: options.Json = False,
) -> None:
    """Generate new clips: a short video and its matching sound, made together.

    Each clip is an mp4 (H.264 + AAC) with a sidecar JSON of the model, sampler, steps and seed that made it.

    Clip k uses seed SEED+k, so `--seed SEED+k -n 1` makes it again.
    """
    from mmgen.pipelines.checked_once import checks_kept
    from mmgen.pipelines.preflight import check_generate

    Limit(1).check("batch_size", batch_size)  # said as --batch-size (cli._failed), in every command's words
    # the pipeline's own checks, before it is imported (torch: seconds): a refusal that needs no model is said at once;
    # the pipeline's call of them then finds them done (checked_once)
    with checks_kept():
        check_generate(out_dir, settings, overwrite=overwrite)
        from mmgen.pipelines.generate import generate_files

        with reporting(json), progress_display() as progress:  # each clip's --json line as it is kept
            generate_files(out_dir, settings, batch_size=batch_size, overwrite=overwrite, progress=progress)
