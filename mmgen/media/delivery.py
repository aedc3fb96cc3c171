"""How the sound is to be handed over (`--sample-rate`, `--loudness`): 48 kHz and −16 LUFS by default, or the
model's own rate and level. Plain values, checked when made; mmgen.media.deliver does the work."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from mmgen.config import NumberTooLong, kind_text, parse_number
from mmgen.errors import UsageError, in_callers_words

DEFAULT_TARGET = -16.0  # LUFS: the common streaming / podcast delivery level
DEFAULT_SAMPLE_RATE = 48_000  # what video editors and players expect
# The closed ranges of --sample-rate and --loudness, the one place for them: the run settings check them before
# any work (mmgen.pipelines.settings.DELIVERY_LIMITS), so the check here only guards the Python API.
RATES = (8_000, 96_000)
LOUDNESS_RANGE = (-70.0, 0.0)  # LUFS (−70 is BS.1770's absolute gate; 0 is as loud as the −1 dBTP peak allows)


@dataclass(frozen=True)
class Delivery:
    """loudness: LUFS target, None keeps the model's level; sample_rate: Hz, None keeps the model's rate."""

    loudness: float | None = DEFAULT_TARGET
    sample_rate: int | None = DEFAULT_SAMPLE_RATE

    def __post_init__(self) -> None:
        if self.loudness is not None and not LOUDNESS_RANGE[0] <= self.loudness <= LOUDNESS_RANGE[1]:
            raise UsageError(f"{in_callers_words('--loudness', 'loudness')} must be between {LOUDNESS_RANGE[0]:g} "
                             f"and {LOUDNESS_RANGE[1]:g} LUFS (or off), got {self.loudness:g}")
        if self.sample_rate is not None and not RATES[0] <= self.sample_rate <= RATES[1]:
            raise UsageError(f"{in_callers_words('--sample-rate', 'sample_rate')} must be between {RATES[0]} and "
                             f"{RATES[1]} Hz (or model), got {self.sample_rate}")

    @classmethod
    def parse(cls, loudness: str | float | None, sample_rate: str | int | None) -> Delivery:
        """From the command line's words: `--loudness -16|off`, `--sample-rate 48000|model`."""
        return cls(_word(loudness, "off", float, "--loudness", DEFAULT_TARGET),
                   _word(sample_rate, "model", int, "--sample-rate", DEFAULT_SAMPLE_RATE))

    def rate(self, model_rate: int) -> int:
        return self.sample_rate or model_rate


def _word(value, word: str, kind: type, flag: str, default):
    if value is None:
        return default
    try:
        taken = word_value(value, word, kind)
    except ValueError as e:
        raise UsageError(f"{flag}: {e}") from None
    return None if taken == word else taken


def word_value(value: Any, word: str, kind: type[int] | type[float]) -> Any:
    """A delivery flag's value (`--sample-rate`, `--loudness`) as the flag, a batch file and Delivery.parse take it:
    its `word` for "as made" ("model", "off"; returned as written in lower case), a number written as every number
    flag takes it (config.parse_number), or from Python a number of `kind` (a whole one for an int: not 48000.0, nor
    a bool). ValueError otherwise, in the words a batch file's key is refused in ("expected an integer or 'model'")."""
    if isinstance(value, str):
        if value.strip().lower() == word:
            return word
        try:
            return parse_number(value, kind)
        except NumberTooLong:
            raise
        except ValueError:
            pass
    elif not isinstance(value, bool) and isinstance(value, numbers.Integral if kind is int else numbers.Real):
        return kind(value)
    raise ValueError(f"expected {kind_text(kind)} or {word!r}, got {value!r}")
