"""mmgen: MM-Diffusion for media creators — joint video+audio generation, soundtracks, fine-tuning."""

__version__ = "0.1.0"
