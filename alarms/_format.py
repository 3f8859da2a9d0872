"""Times and numbers as the CLI, reasons and descriptions print them: exact, never rounded."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def iso(epoch_s: float) -> str:
    """UTC ISO 8601 with a ``Z`` suffix (whole seconds when possible)."""
    dt = datetime.fromtimestamp(epoch_s, UTC)
    text = dt.isoformat(timespec="milliseconds" if epoch_s % 1 else "seconds")
    return text.replace("+00:00", "Z")


def number_text(value: float) -> str:
    """``value`` exactly as given: integral values without ``.0``, others as Python's shortest
    round-trip repr (never rounded: a threshold of 250.04 must not read as 250)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if (
        isinstance(value, float)
        and math.isfinite(value)
        and value.is_integer()
        and abs(value) < 1e16
    ):
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def value_text(value: float, threshold: float) -> str:
    """A measured ``value`` short enough to read, with enough digits that it never looks equal
    to ``threshold``, or on the other side of it, when it is not (1523.4 vs 250; 250.00001 vs
    250, never ``250``)."""
    if not math.isfinite(value):
        return repr(value)
    side = (value > threshold) - (value < threshold)
    magnitude = int(math.log10(abs(value))) if value else 0
    text = repr(value)
    for digits in range(max(4, magnitude + 2), 18):
        text = f"{value:.{digits}g}"
        shown = float(text)
        if (shown > threshold) - (shown < threshold) == side:
            return text
    return text
