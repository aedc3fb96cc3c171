"""The Python API (mmgen.pipelines) as a library caller meets it: a wrong argument is refused as the function is
called, in one line of mmgen's own errors, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmgen.errors import InvalidArgument, UsageError
from mmgen.pipelines import (
    AnimateSettings,
    GenerateSettings,
    SoundtrackSettings,
    animate,
    generate,
    generate_files,
    soundtrack,
)
from mmgen.pipelines.retake import retake
from mmgen.pipelines.settings import RetakeSettings

CALLS = [
    (lambda d: soundtrack(d / "clip.mp4", d / "o.mp4", GenerateSettings(seed=1)),
     "soundtrack(): settings must be a SoundtrackSettings, got GenerateSettings (the settings of generate)"),
    (lambda d: soundtrack(d / "clip.mp4", d / "o.mp4", {"seed": 1}),
     "soundtrack(): settings must be a SoundtrackSettings, got {'seed': 1}"),
    (lambda d: soundtrack(5, d / "o.mp4"), "soundtrack(): input must be a path (a str or a pathlib.Path), got 5"),
    (lambda d: soundtrack(None, d / "o.mp4"), "soundtrack(): input must be a path (a str or a pathlib.Path), got None"),
    (lambda d: soundtrack(str(d / "clip.mp4"), b"o.mp4"),
     "soundtrack(): output must be a path (a str or a pathlib.Path), got b'o.mp4'"),
    (lambda d: animate(d / "a.wav", d / "o.mp4", AnimateSettings(), overwrite="no"),
     "animate(): overwrite must be True or False, got 'no'"),
    (lambda d: retake(d / "clip.mp4", None, RetakeSettings(ranges=("0:1",)), progress=3),
     "retake(): progress must be a function taking a ProgressEvent, got 3"),
    (lambda d: generate(SoundtrackSettings()),
     "generate(): settings must be a GenerateSettings, got SoundtrackSettings (the settings of soundtrack)"),
    (lambda d: generate(GenerateSettings(), batch_size=0),
     "generate(): batch_size must be a whole number of at least 1, got 0"),
    (lambda d: generate_files(GenerateSettings()),
     "generate_files(): out_dir must be a path (a str or a pathlib.Path), got GenerateSettings (the settings of generate)"),
    (lambda d: generate_files(d / "out", GenerateSettings(), batch_size=True),
     "generate_files(): batch_size must be a whole number of at least 1, got True"),
]


@pytest.mark.parametrize(("call", "says"), CALLS, ids=[c[1].partition(" got ")[0] for c in CALLS])
def test_a_wrong_argument_is_refused_as_the_function_is_called(tmp_path: Path, call, says):
    """Was an AttributeError (`… has no attribute 'mix'`) or a TypeError (`expected str, bytes or os.PathLike`)
    from inside the run, or a bare ValueError."""
    with pytest.raises(InvalidArgument) as refused:
        call(tmp_path)
    assert str(refused.value) == says
    assert isinstance(refused.value, UsageError) and refused.value.exit_code == 2
    assert isinstance(refused.value, TypeError) and isinstance(refused.value, ValueError)  # as Python's own would be
    assert list(tmp_path.iterdir()) == []  # nothing read or written, no model loaded
