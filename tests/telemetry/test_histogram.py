"""Aggregated distributions reproduce count, sum, min, max and percentiles of the raw samples."""

from __future__ import annotations

import json
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry import RELATIVE_ERROR, _config
from telemetry._histogram import Histogram
from telemetry._metrics import Aggregator
from telemetry.sinks import MemorySink

from .conftest import samples


def nearest_rank(sorted_values: list[float], q: float) -> float:
    """The q-quantile by the nearest-rank definition (CloudWatch's pNN on exact values)."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def check(raw: list[float], lines: list[dict]) -> None:
    parts = [line["Latency"] for line in lines if "Latency" in line]
    assert sum(p["Count"] for p in parts) == len(raw)
    assert math.isclose(sum(p["Sum"] for p in parts), math.fsum(raw), rel_tol=1e-9, abs_tol=1e-9)
    assert min(p["Min"] for p in parts) == min(raw)
    assert max(p["Max"] for p in parts) == max(raw)
    expanded = sorted(samples(lines, "Latency"))
    exact = sorted(raw)
    assert len(expanded) == len(exact)
    for q in (0.5, 0.9, 0.99):
        got, want = nearest_rank(expanded, q), nearest_rank(exact, q)
        assert abs(got - want) <= RELATIVE_ERROR * abs(want), (q, got, want)
    # every single sample is represented within the bound, not only the three percentiles
    for got, want in zip(expanded, exact, strict=True):
        assert abs(got - want) <= RELATIVE_ERROR * abs(want)


def emit(raw: list[float]) -> list[dict]:
    sink = MemorySink()
    settings_ = _config.load({}, service="svc", flush_interval_s=60)
    agg = Aggregator(settings_, sink, clock=lambda: 1_700_000_000.0)
    for v in raw:
        agg.record_request("/r", 200, v)
    agg.flush(final=True)
    return [json.loads(x) for x in sink.lines if '"Latency"' in x]


def test_latency_like_samples_are_reproduced_within_the_bound() -> None:
    rng = random.Random(7)
    raw = [rng.lognormvariate(math.log(20), 0.8) for _ in range(20_000)]
    raw += [rng.uniform(800, 3000) for _ in range(200)]  # a slow tail
    raw += [0.0] * 5
    check(raw, emit(raw))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        # CloudWatch's domain: 0 or a magnitude >= 2^-360 (smaller ones are written as 0,
        # tested in test_values.py)
        st.one_of(st.just(0.0), st.floats(min_value=2.0**-360, max_value=1e7)),
        min_size=1,
        max_size=400,
    )
)
def test_any_non_negative_samples_are_reproduced_within_the_bound(raw: list[float]) -> None:
    check(raw, emit(raw))


def test_histogram_is_compact() -> None:
    h = Histogram()
    rng = random.Random(1)
    for _ in range(100_000):
        h.add(rng.lognormvariate(math.log(20), 0.5))
    # a typical latency distribution needs a few hundred buckets at most, whatever the count
    assert len(h.buckets) < 400
    assert h.count == 100_000
