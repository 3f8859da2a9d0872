"""What happened during a rehearsal, second by second: requests per version, traffic weights, alarms.

The request side is measured at the listener, i.e. what clients see (the ALB's
``TargetResponseTime`` per target group); the alarms judge the services' own EMF metrics.
"""

from __future__ import annotations

import json
import math
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from rehearsal.listener import Record

WRITE_PATHS = {"/v1/points/grants": "grant", "/v1/points/redemptions": "redemption"}


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (``nan`` when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class Write:
    """A grant or redemption the listener acknowledged to a client (2xx), and who served it."""

    target: str
    kind: str
    user_id: str
    order_id: str
    points: int


@dataclass
class Timeline:
    """Thread-safe record of the run; ``t0`` is when green first takes traffic (epoch seconds)."""

    records: list[Record] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    traffic: list[tuple[float, int]] = field(default_factory=list)  # (epoch s, green percent)
    t0: float | None = None
    planned_t0: float | None = None  # before the deployment starts: when it is due to
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, record: Record, body: bytes) -> None:
        """Listener observer: keep the record; remember acknowledged writes for the safety check."""
        kind = WRITE_PATHS.get(record.path.split("?", 1)[0]) if record.method == "POST" else None
        write = None
        if kind and record.status in (200, 201):
            try:
                data = json.loads(body)
                write = Write(
                    record.target,
                    kind,
                    str(data["user_id"]),
                    str(data["order_id"]),
                    int(data["points"]),
                )
            except (ValueError, KeyError, TypeError):
                write = None
        with self._lock:
            self.records.append(record)
            if write is not None:
                self.writes.append(write)

    def all_records(self) -> list[Record]:
        """A copy of every record so far, in completion order."""
        with self._lock:
            return list(self.records)

    def since_t0(self, at: float) -> float:
        """Seconds from green's first traffic (or from when it is due) to ``at``."""
        origin = self.t0 or self.planned_t0 or at
        return at - origin

    def set_traffic(self, at: float, green_percent: int) -> None:
        with self._lock:
            if not self.traffic or self.traffic[-1][1] != green_percent:
                self.traffic.append((at, green_percent))

    def snapshot(self, since: float) -> list[Record]:
        with self._lock:
            # Records are appended in completion order, so scan from the end.
            out = []
            for record in reversed(self.records):
                if record.time < since:
                    break
                out.append(record)
            return out

    def window(self, now: float, seconds: float) -> dict[str, dict[str, float]]:
        """Per target over the last ``seconds``: rps, p50/p99 ms, 5xx and 429 counts."""
        stats: dict[str, dict[str, float]] = {}
        by_target: dict[str, list[Record]] = defaultdict(list)
        for record in self.snapshot(now - seconds):
            by_target[record.target].append(record)
        for target, recs in by_target.items():
            lat = sorted(r.latency_ms for r in recs)
            stats[target] = {
                "rps": len(recs) / seconds,
                "p50": percentile(lat, 50),
                "p99": percentile(lat, 99),
                "5xx": sum(1 for r in recs if r.status >= 500),
                "429": sum(1 for r in recs if r.status == 429),
            }
        return stats

    def per_second(self) -> dict[str, list[tuple[float, int, float, float]]]:
        """Per target: ``(t relative to t0, count, p50 ms, p99 ms)`` for each one-second bucket."""
        origin = self.t0 or (self.records[0].time if self.records else 0.0)
        buckets: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        with self._lock:
            for r in self.records:
                buckets[r.target][math.floor(r.time - origin)].append(r.latency_ms)
        out: dict[str, list[tuple[float, int, float, float]]] = {}
        for target, seconds in buckets.items():
            rows = []
            for second in sorted(seconds):
                lat = sorted(seconds[second])
                rows.append((second + 0.5, len(lat), percentile(lat, 50), percentile(lat, 99)))
            out[target] = rows
        return out

    def totals(self) -> dict[str, Any]:
        with self._lock:
            records = list(self.records)
        by_target: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for r in records:
            t = by_target[r.target]
            t["requests"] += 1
            t["5xx"] += r.status >= 500
            t["429"] += r.status == 429
            t["4xx"] += 400 <= r.status < 500
        return {
            "requests": len(records),
            "errors": sum(1 for r in records if r.status >= 500),
            "by_target": {k: dict(v) for k, v in by_target.items()},
        }
