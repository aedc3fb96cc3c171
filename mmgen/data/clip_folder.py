"""The folder of clips to train on, refused in one set of words by the command line's first look (before torch
loads: train.config_layers.run_config, in every process of a torchrun job) and by the run's own scan
(data.clips.scan_media); stdlib only."""

from __future__ import annotations

from pathlib import Path

from mmgen.errors import MediaError


def check_clip_folder(root: Path) -> None:
    """Refuse `root` unless it is a folder (or a symlink to one)."""
    if not root.is_dir():
        raise MediaError(f"{root}: not a folder", "give the folder that holds your video clips")
