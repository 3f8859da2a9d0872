"""The report's figure from a synthetic timeline: gaps, the decision mark, every panel."""

from __future__ import annotations

import math

from rehearsal.listener import Record
from rehearsal.report import _gaps_filled, plot
from rehearsal.timeline import Timeline

T0 = 1_800_000_000.0


def test_seconds_without_requests_count_zero_and_break_the_latency_line() -> None:
    rows = [(0.5, 3, 10.0, 20.0), (3.5, 2, 11.0, 30.0)]
    filled = _gaps_filled(rows)
    assert [r[0] for r in filled] == [0.5, 1.5, 2.5, 3.5]
    assert [r[1] for r in filled] == [3, 0, 0, 2]
    assert math.isnan(filled[1][2]) and math.isnan(filled[2][3])
    assert _gaps_filled([]) == []


def test_the_figure_marks_the_rollback_and_names_every_rollback_alarm() -> None:
    timeline = Timeline(t0=T0)
    for i in range(200):
        at = T0 - 5 + i * 0.1
        target = "green" if 0 <= at - T0 < 12 and i % 10 == 0 else "blue"
        latency = 1500.0 if target == "green" else 8.0
        timeline.observe(Record(at, target, "GET", "/x", 200, latency), b"")
    timeline.set_traffic(T0 - 5, 0)
    timeline.set_traffic(T0, 10)
    timeline.set_traffic(T0 + 12, 0)
    alarms = ["svc-green-latency-avg", "svc-alb-green-5xx"]
    evaluations = [
        {"alarm": alarms[0], "epoch": T0 + 2, "state": "OK", "value": 900.0},
        {"alarm": alarms[0], "epoch": T0 + 11, "state": "ALARM", "value": 1400.0},
    ]
    decision = {"outcome": "rolled_back", "decided_at": T0 + 12}
    svg = plot(timeline, evaluations, alarms, decision, {alarms[0]: 250.0})
    assert svg.startswith("<svg")
    for text in ("rollback at 12.0 s", "svc-alb-green-5xx", "svc-green-latency-avg",
                 "green-latency-avg threshold 250 ms", "Traffic weight", "green 10%"):  # fmt: skip
        assert text in svg, text
