"""mmgen: MM-Diffusion for media creators — joint video+audio generation, soundtracks, fine-tuning."""

import logging

__version__ = "0.1.0"

# A library logs, it does not print: mmgen's notes (mmgen.media.notes) go to the caller's logging setup, and with
# none, nowhere (not stderr, through Python's last-resort handler). The command line shows them on its stderr
# (mmgen.cli.notes_on_stderr).
logging.getLogger(__name__).addHandler(logging.NullHandler())
