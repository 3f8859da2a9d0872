"""Distributions for one window: log-linear buckets (bounded relative error) or raw values.

Bucket ``i`` holds the values in ``(gamma**(i-1), gamma**i]`` and is written as the value
``2 * gamma**i / (gamma + 1)`` rounded to 4 significant digits, so every sample is represented
within ``ALPHA`` (0.9 %) plus the rounding (0.05 %): **at most 1 % relative error**, for any
percentile computed from the written ``Values``/``Counts``. ``Count``, ``Sum``, ``Min`` and
``Max`` are exact.
"""

from __future__ import annotations

import math

ALPHA = 0.009
GAMMA = (1 + ALPHA) / (1 - ALPHA)
INV_LOG_GAMMA = 1.0 / math.log(GAMMA)
#: The bound documented to users (and checked by the tests): bucketing + rounding.
RELATIVE_ERROR = 0.01
MAX_PER_ARRAY = 100  # EMF: at most 100 values per metric array
#: CloudWatch rejects non-zero magnitudes below 2^-360 (telemetry.cloudwatch_rules): such a
#: sample is recorded as 0, the nearest value it accepts (absolute error < 2^-360).
TINY = 2.0**-360


def _round(value: float) -> float:
    return float(f"{value:.4g}")


class Histogram:
    """Counts per log-linear bucket plus exact count, sum, min and max."""

    __slots__ = ("buckets", "count", "max", "min", "sum", "zeros")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        # (telemetry._metrics.Aggregator._drain does this for a batch of latencies at once)
        if 0.0 < value < TINY:
            value = 0.0
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value > 0.0:
            i = math.ceil(math.log(value) * INV_LOG_GAMMA)
            b = self.buckets
            b[i] = b.get(i, 0) + 1
        else:
            self.zeros += 1

    def pairs(self) -> list[tuple[float, int]]:
        """(representative value, count), ascending, clamped into [min, max]."""
        out: list[tuple[float, int]] = [(0.0, self.zeros)] if self.zeros else []
        scale = 2.0 / (GAMMA + 1.0)
        for i in sorted(self.buckets):
            v = _round(scale * GAMMA**i)
            out.append((min(max(v, self.min), self.max), self.buckets[i]))
        return out

    def chunks(self) -> list[dict[str, object]]:
        """EMF ``{"Values","Counts","Min","Max","Count","Sum"}`` objects, <= 100 values each.

        Split so that merging the chunks (as CloudWatch does) gives back the exact count, sum,
        min and max: the first chunk carries the exact minimum, the last the exact maximum and
        the remainder of the exact sum.
        """
        pairs = self.pairs()
        out: list[dict[str, object]] = []
        rest = self.sum
        for start in range(0, len(pairs), MAX_PER_ARRAY):
            part = pairs[start : start + MAX_PER_ARRAY]
            last = start + MAX_PER_ARRAY >= len(pairs)
            part_sum = rest if last else sum(v * c for v, c in part)
            rest -= part_sum
            out.append(
                {
                    "Values": [v for v, _ in part],
                    "Counts": [c for _, c in part],
                    "Min": self.min if start == 0 else part[0][0],
                    "Max": self.max if last else part[-1][0],
                    "Count": sum(c for _, c in part),
                    "Sum": part_sum,
                }
            )
        return out


class Samples:
    """Raw values (the plain documented EMF form), bounded per window."""

    __slots__ = ("dropped", "limit", "values")

    def __init__(self, limit: int) -> None:
        self.values: list[float] = []
        self.limit = limit
        self.dropped = 0

    @property
    def count(self) -> int:
        return len(self.values)

    def add(self, value: float) -> None:
        if 0.0 < value < TINY:
            value = 0.0
        if len(self.values) < self.limit:
            self.values.append(value)
        else:
            self.dropped += 1

    def chunks(self) -> list[list[float]]:
        v = self.values
        return [v[i : i + MAX_PER_ARRAY] for i in range(0, len(v), MAX_PER_ARRAY)]
