"""Media in and out: decode any file to the model's clip format (PyAV → tensors), write mp4/wav, swap one track of
a user's file, draw previews. Tensors follow DESIGN §3: video (T, 3, H, W) and audio (1, L), floats in [-1, 1]."""

import lazy_loader

# Attributes load on first use (lazy_loader): `mmgen --help` or a mistyped flag should not wait seconds for
# torch, PyAV and scipy to import.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "decode": ["read_audio", "read_video", "read_video_spans"],
        "encode": ["write_mp4", "write_wav"],
        "preview": ["contact_sheet_png", "spectrogram_png"],
        "probe": ["MediaInfo", "probe"],
        "remux": ["replace_audio", "replace_video"],
    },
)
