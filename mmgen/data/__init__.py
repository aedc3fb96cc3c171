"""Data for training and measuring: clip datasets for finetune and the synthetic audio-visual world.

Kept import-light on purpose: import the submodule you need (`mmgen.data.synthetic`, `mmgen.data.world_metrics`).
"""
