"""The flush thread folds pending requests into their windows a batch at a time: the same
counters, histogram buckets, counts, sums (added in the same order), minima and maxima as
folding them one by one, whatever the routes, statuses, latencies and windows."""

from __future__ import annotations

import math
import random

import pytest

from telemetry import _config
from telemetry._metrics import Aggregator
from telemetry.sinks import MemorySink


def _aggregator(**options: object) -> Aggregator:
    agg = Aggregator(_config.load({}, service="s", version="v", **options), MemorySink())
    return agg  # no thread: the test folds


def _snapshot(agg: Aggregator) -> dict:
    out = {}
    for start, w in agg._windows.items():
        for route, s in w.api.items():
            d = s.dists["Latency"]
            if hasattr(d, "values"):
                hist: object = (repr(d.values), d.dropped)  # repr: NaN equals NaN
            else:
                hist = (sorted(d.buckets.items()), d.zeros, d.count, repr((d.sum, d.min, d.max)))
            out[(start, route)] = (dict(s.counters), hist)
    return out


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("histogram", ["counts", "values"])
def test_a_batch_folds_as_one_by_one(seed: int, histogram: str) -> None:
    rng = random.Random(seed)
    routes = [f"/r{i}/<x>" for i in range(rng.choice([1, 3, 12]))]
    span_s = rng.choice([0.5, 3.0, 130.0])  # within one window, or across several
    start = 1_800_000_000.0 + rng.random() * 60
    entries = []
    for _ in range(rng.choice([1, 7, 400, 3000])):
        latency = rng.lognormvariate(1.0, 1.2)
        odd = rng.random()
        if odd < 0.01:
            latency = 0.0
        elif odd < 0.02:
            latency = 1e-320
        elif odd < 0.025 and seed % 3 == 0:
            latency = math.nan
        status = rng.choice([200, 200, 200, 201, 302, 404, 429, 500, 503])
        entries.append((start + rng.random() * span_s, rng.choice(routes), status, latency))
    entries.sort(key=lambda e: e[0] + rng.random() * 0.05)  # nearly in order, as threads append
    options = {"histogram": histogram, "max_routes": 5}
    batch, single = _aggregator(**options), _aggregator(**options)
    batch.pending.extend(entries)
    with batch._lock:
        batch._drain()
    with single._lock:
        single._fold_each(list(entries))
    assert not batch.pending
    assert _snapshot(batch) == _snapshot(single)
