"""The `mmgen` command's entry point (its console script, `python -m mmgen`): it takes the stop signals before
anything else of mmgen's loads, so a Ctrl-C while the command line loads (mmgen.cli, the standard library modules it
imports) is a stop like any later one — exit 130 and one line, never Python's KeyboardInterrupt traceback. This module
and the package's __init__ import nothing: a Ctrl-C before them comes during Python's own start-up (its site
imports), which only Python can answer.
"""


def main() -> None:
    """Stops are recorded from the first line (stop_signals.own_process; each then stops the command as it begins),
    then the command line runs (mmgen.cli.main)."""
    try:
        from mmgen.runtime.stop_signals import own_process

        own_process(_say_stopped)
    except KeyboardInterrupt:  # a Ctrl-C before the handlers were in place (Python's own raised it)
        from mmgen.cli import stopped_while_starting

        stopped_while_starting()
    from mmgen.cli import main as command_line

    command_line()


def _say_stopped(code: int) -> None:
    from mmgen.cli import _say_stopped

    _say_stopped(code)
