"""How the commands report what they wrote: one JSON object per output on stdout with --json, printed as the output
is kept (print_json: also batch's per job and finetune's per run), else a short human line per output on stderr
(stdout stays clean for pipes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

from mmgen import terminal
from mmgen.config import json_text
from mmgen.pipelines import Result
from mmgen.terminal import as_it_comes, counted, markup_text, rate_text


@contextmanager
def reporting(as_json: bool) -> Iterator[list[Result]]:
    """The outputs kept inside the block: with `as_json`, each one's line is printed as it is kept, so stdout lists
    exactly the outputs that exist even when the command is stopped or fails after some (it prints nothing of an
    output it takes back); the human lines and the summary come when the block ends."""
    from mmgen.pipelines.outputs import on_kept

    kept: list[Result] = []

    def keep(result: Result) -> None:
        kept.append(result)
        if as_json:
            print_json(result.to_json())

    with on_kept(keep):
        yield kept
    report(kept, as_json, printed=True)


def report(results: list[Result], as_json: bool, console: Console | None = None, printed: bool = False) -> None:
    """`printed`: the JSON lines were printed as each output was kept (`reporting`)."""
    console = console or terminal.console(highlight=False, soft_wrap=True)  # a path is never broken up
    for result in results:
        record = result.to_json()
        if as_json:
            if not printed:
                print_json(record)
        else:
            console.print(f"[bold green]wrote[/] {markup_text(record['mp4'])}  [dim]{describe(record)}[/]")
    if results:
        first = results[0].provenance
        seeds = sorted({r.provenance.seed for r in results})
        seed = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}..{seeds[-1]}"
        console.print(
            f"[dim]model {markup_text(first.model)} · {first.sampler} {counted(first.steps, 'step')} · seed {seed} · {first.device} · "
            f"{sum(r.provenance.wall_time_s for r in results):.1f} s[/]"
        )


def print_json(record: dict) -> None:
    """One result as one line of JSON on stdout, written at once (a script reads each as it comes): what every
    command that works between its results prints with --json."""
    as_it_comes(json_text(record))


def describe(record: dict) -> str:
    """e.g. "1.60 s · 64×64 @ 10 fps · 16 kHz audio"."""
    parts = [f"{record['duration_s']:.2f} s"]
    if record.get("width"):
        parts.append(f"{record['width']}×{record['height']} @ {rate_text(record['fps'])} fps")
    if record.get("sample_rate"):
        parts.append(f"{record['sample_rate'] / 1000:g} kHz audio")
    return " · ".join(parts)

