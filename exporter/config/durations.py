"""Prometheus durations (`30s`, `1h30m`, `500ms`): parsing, formatting and the setting type.

It imports nothing of augur: detectors declare `Duration` settings with it, and the rest of
the configuration imports the detectors.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_duration(value: object) -> float:
    """Parse a Prometheus duration (`30s`, `1h30m`, `500ms`) or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 5m or 1h, got {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range
            raise ValueError(f"a duration cannot be {len(str(value))} digits long") from None
    elif isinstance(value, str):
        text = value.strip()
        match = _DURATION_RE.match(text)
        if text == "0":
            seconds = 0.0
        elif not text or not match:
            raise ValueError(f"not a duration: {value!r} (write it as 30s, 5m, 1h or 1d)")
        else:
            seconds = sum(int(g) * u for g, u in zip(match.groups(), _UNITS, strict=True) if g)
    else:
        raise ValueError(f"expected a duration like 30s, 5m or 1h, got {value!r}")
    if not math.isfinite(seconds):
        # YAML's .nan and .inf are floats: `poll.interval: .inf` would crash the loop later.
        raise ValueError(f"a duration must be finite, got {value!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Format seconds the way Prometheus writes durations (`90` -> `1m30s`)."""
    if seconds == 0:
        return "0s"
    out = []
    ms = round(seconds * 1000)
    for unit, suffix in ((86400_000, "d"), (3600_000, "h"), (60_000, "m"), (1000, "s"), (1, "ms")):
        n, ms = divmod(ms, unit)
        if n:
            out.append(f"{n}{suffix}")
    return "".join(out)


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in the file as a Prometheus duration."""


def parse_span(value: object) -> float:
    """A duration that must carry its unit: the settings that once counted points (a detector's
    `relearn`, `memory`, `span`) refuse a whole number, as a file from then would write them,
    rather than read it as seconds (seconds already parsed, a float, pass)."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f"write a duration such as 1h (this setting used to count points), got {value!r}"
        )
    return parse_duration(value)


Span = Annotated[float, BeforeValidator(parse_span)]
"""Seconds, written with a unit (`30m`, `1h`, `7d`): a whole number is refused."""
