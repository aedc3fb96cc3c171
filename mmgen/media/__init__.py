"""Media in and out: decode any file to the model's clip format (PyAV → tensors), write mp4/wav, swap one track of
a user's file, draw previews. Tensors follow DESIGN §3: video (T, 3, H, W) and audio (1, L), floats in [-1, 1]."""

from mmgen.media.decode import read_audio, read_video
from mmgen.media.encode import write_mp4, write_wav
from mmgen.media.preview import contact_sheet_png, spectrogram_png
from mmgen.media.probe import MediaInfo, probe
from mmgen.media.remux import replace_audio, replace_video

__all__ = [
    "MediaInfo",
    "contact_sheet_png",
    "probe",
    "read_audio",
    "read_video",
    "replace_audio",
    "replace_video",
    "spectrogram_png",
    "write_mp4",
    "write_wav",
]
