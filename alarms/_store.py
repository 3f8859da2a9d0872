"""The per-period bucket store: every EMF sample some alarm reads is pre-aggregated on arrival
into a bucket of its series (namespace, metric, exact dimension set, unit filter) at the series'
granularity (``gcd(period, evaluation interval)``): count, sum, min, max and, for percentile
alarms, a value -> count map. A datapoint of a period merges the buckets it covers; a
:class:`Query` caches its datapoints until the series receives new data."""

from __future__ import annotations

import math
from collections.abc import Mapping

SIMPLE_STATS = ("SampleCount", "Sum", "Average", "Minimum", "Maximum")


class Series:
    """Samples of one metric identity (unit ``None`` = any unit) bucketed at ``gran`` seconds."""

    __slots__ = ("buckets", "gran", "unit", "values", "version")

    def __init__(self, gran: int, unit: str | None) -> None:
        self.gran = gran
        self.unit = unit
        self.values = False  # keep value -> count maps (a percentile alarm reads this series)
        self.buckets: dict[int, list] = {}
        self.version = 0

    def add(
        self,
        bucket: int,
        samples: list[tuple[float, float]],
        stats: tuple[float, float, float, float] | None,
    ) -> None:
        agg = self.buckets.get(bucket)
        if agg is None:
            vmap0: dict[float, float] | None = {} if self.values else None
            agg = self.buckets[bucket] = [0.0, 0.0, math.inf, -math.inf, vmap0, True]
        self.version += 1
        vmap = agg[4]
        if stats is not None:
            # Exact figures written next to the histogram: they give count/sum/min/max.
            c, s, lo, hi = stats
            agg[0] += c
            agg[1] += s
            if lo < agg[2]:
                agg[2] = lo
            if hi > agg[3]:
                agg[3] = hi
            if not samples:
                agg[5] = False  # no values: no percentile for this bucket
            elif vmap is not None:
                for v, n in samples:
                    vmap[v] = vmap.get(v, 0.0) + n
            return
        count, total, lo, hi = agg[0], agg[1], agg[2], agg[3]
        for v, c in samples:
            count += c
            total += v * c
            if v < lo:
                lo = v
            if v > hi:
                hi = v
            if vmap is not None:
                vmap[v] = vmap.get(v, 0.0) + c
        agg[0], agg[1], agg[2], agg[3] = count, total, lo, hi

    def merged(self, start: int, period: int) -> list | None:
        if period == self.gran:
            return self.buckets.get(start)
        parts = [
            b
            for t in range(start, start + period, self.gran)
            if (b := self.buckets.get(t)) is not None
        ]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        vmap: dict[float, float] | None = {} if self.values else None
        agg = [0.0, 0.0, math.inf, -math.inf, vmap, True]
        for p in parts:
            agg[0] += p[0]
            agg[1] += p[1]
            agg[2] = min(agg[2], p[2])
            agg[3] = max(agg[3], p[3])
            agg[5] = agg[5] and p[5]
            if vmap is not None and p[4]:
                for v, c in p[4].items():
                    vmap[v] = vmap.get(v, 0.0) + c
        return agg

    def prune(self, before: int) -> None:
        for t in [t for t in self.buckets if t < before]:
            del self.buckets[t]


PERCENTILE_METHODS = ("nearest_rank", "interpolate")


def percentile(vmap: Mapping[float, float], p: float, method: str = "nearest_rank") -> float:
    """pNN of weighted samples (value -> count).

    ``nearest_rank``: the smallest sample v with at least p% of the samples <= v.
    ``interpolate``: linear interpolation between the closest ranks, ``(n - 1) * p/100``
    (numpy's default), so it can fall between two samples.
    """
    count = sum(vmap.values())
    if method == "interpolate":
        pos = (count - 1) * p / 100.0  # 0-based fractional rank
        lower = math.floor(pos + 1e-9)
        seen = 0.0
        low_value: float | None = None
        for v in sorted(vmap):
            seen += vmap[v]
            if low_value is None and seen > lower:
                low_value = v
                if seen > lower + 1 or pos - lower < 1e-9:
                    return v  # both neighbouring ranks hold this value
            elif low_value is not None:
                return low_value + (v - low_value) * (pos - lower)
        return max(vmap)
    rank = max(1.0, math.ceil(p / 100.0 * count - 1e-9))
    seen = 0.0
    for v in sorted(vmap):
        seen += vmap[v]
        if seen >= rank:
            return v
    return max(vmap)  # pragma: no cover - counts always reach the rank


class Query:
    """One statistic of one series over a period: ``value(start) -> (value | None, samples)``."""

    __slots__ = (
        "cache",
        "cache_version",
        "method",
        "namespace",
        "pct",
        "period",
        "series",
        "stat",
    )

    def __init__(
        self, series: Series, namespace: str, stat: str, period: int, method: str = "nearest_rank"
    ) -> None:
        self.method = method
        self.series = series
        self.namespace = namespace
        self.stat = stat
        self.pct = float(stat[1:]) if stat.startswith("p") else None
        self.period = period
        self.cache: dict[int, tuple[float | None, float]] = {}
        self.cache_version = -1

    def value(self, start: int) -> tuple[float | None, float]:
        s = self.series
        if self.cache_version != s.version:
            self.cache.clear()
            self.cache_version = s.version
        hit = self.cache.get(start)
        if hit is not None:
            return hit
        agg = s.merged(start, self.period)
        if agg is None or agg[0] <= 0:
            out: tuple[float | None, float] = (None, 0.0)
        else:
            count = agg[0]
            stat = self.stat
            if stat == "Average":
                v: float | None = agg[1] / count
            elif stat == "Sum":
                v = agg[1]
            elif stat == "Maximum":
                v = agg[3]
            elif stat == "Minimum":
                v = agg[2]
            elif stat == "SampleCount":
                v = count
            elif agg[2] < 0 or not agg[5] or not agg[4]:
                v = None  # percentiles need raw, non-negative samples
            else:
                v = percentile(agg[4], self.pct, self.method)  # type: ignore[arg-type]
            out = (v, count)
        self.cache[start] = out
        return out
