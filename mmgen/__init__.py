"""mmgen: MM-Diffusion for media creators — joint video+audio generation, soundtracks, fine-tuning."""

__version__ = "0.1.0"

# Importing the package imports nothing: it runs before the `mmgen` command takes its stop signals (mmgen.entry),
# and a Ctrl-C meanwhile is Python's traceback.
