"""The report's figure from a synthetic timeline: gaps, the decision mark, every panel."""

from __future__ import annotations

import json
import math
from pathlib import Path

from alarms import Evaluation
from rehearsal.listener import Record
from rehearsal.model import ROLLED_BACK, SUCCEEDED, Decision
from rehearsal.report import _gaps_filled, plot, render_html
from rehearsal.safety import SafetyReport
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
        Evaluation(T0 + 2, alarms[0], "OK", "INSUFFICIENT_DATA", 900.0, (), ""),
        Evaluation(T0 + 11, alarms[0], "ALARM", "OK", 1400.0, (), ""),
    ]
    decision = Decision(ROLLED_BACK, T0 + 12, (alarms[0],), 12.0, 10)
    svg = plot(timeline, evaluations, alarms, decision, {alarms[0]: 250.0})
    assert svg.startswith("<svg")
    for text in ("rollback at 12.0 s", "svc-alb-green-5xx", "svc-green-latency-avg",
                 "green-latency-avg threshold 250 ms", "Traffic weight", "green 10%"):  # fmt: skip
        assert text in svg, text


def _page(time_scale: float, safety: SafetyReport | None, transitions=()) -> str:
    result = {"scenario": "regression", "deployment_config": "X", "outcome": SUCCEEDED,
              "alarm": None, "alarm_time_s": None, "requests": 10, "errors": 0, "traffic": []}  # fmt: skip
    details = {"options": {"time_scale": time_scale, "bake_s": 60.0}, "t0": T0}
    return render_html(result, details, "<svg/>", list(transitions), [], [], safety)


def test_user_inputs_are_printed_as_given() -> None:
    for scale, shown in ((0.75, "0.75"), (0.125, "0.125"), (1.0, "1"), (0.3333333, "0.3333333")):
        assert f"<td>time scale</td><td>{shown}</td>" in _page(scale, None)


def test_the_safety_line_says_what_was_checked_on_which_version() -> None:
    ok = SafetyReport("green", users=3, writes_checked=7, writes_by_other=2, store_checked=True)
    page = _page(0.75, ok)
    assert "Rollback" not in page  # nothing rolled back
    assert (
        "Data safety OK on green, the version left serving: all 7 writes acknowledged to clients"
        " (2 made by blue) for 3 users are in the histories green serves, each history adds up to"
        " its balance, and each balance matches the store." in page
    )
    bad = SafetyReport("blue", users=3, writes_checked=7, problems=["u1: lost", "u2: lost"])
    assert "Data safety FAILED on blue, the version left serving: 2 problems" in bad.describe()
    assert "nothing could be checked" in SafetyReport("blue").describe()


def test_state_changes_show_the_value_against_the_threshold() -> None:
    change = Evaluation(T0 + 20, "svc-green-latency-avg", "ALARM", "OK", 250.0001, (), "why",
                        250.0, "GreaterThanThreshold")  # fmt: skip
    page = _page(0.75, None, [change])
    assert "<td>+20</td><td>svc-green-latency-avg</td><td>OK</td><td>ALARM</td>" in page
    assert "<td>250.0001 (&gt; 250)</td>" in page


def test_emf_cloudwatch_would_reject_is_reported_by_the_run(tmp_path: Path) -> None:
    """What the versions write that CloudWatch would reject (telemetry.cloudwatch_rules) reaches
    result.json, the end-of-run summary and the report, so a rehearsal reveals it."""
    from alarms import Evaluator
    from rehearsal.__main__ import summary
    from rehearsal.collector import Collector
    from rehearsal.model import Outcome
    from rehearsal.rolling.cli import summary as worker_summary

    def line(route: str, namespace: str = "SafeDeploy", value: float = 12.0) -> str:
        return json.dumps({
            "_aws": {"Timestamp": T0 * 1000, "CloudWatchMetrics": [{
                "Namespace": namespace, "Dimensions": [["Service", "Route"]],
                "Metrics": [{"Name": "Latency", "Unit": "Milliseconds"}]}]},
            "Service": "svc", "Route": route, "Latency": value})  # fmt: skip

    collector = Collector(tmp_path, Evaluator({"MetricAlarms": []}))
    collector.on_line("blue", line("/v1/points"))
    assert collector.cloudwatch_rejects() == {"count": 0, "warnings": []}
    for bad in (line("/ポイント"), line(" "), line("/x", "AWS/ECS"), line("/x", value=math.nan)):
        collector.on_line("green", bad)
    rejects = collector.cloudwatch_rejects()
    collector.close()
    assert rejects["count"] == 4 and len(rejects["warnings"]) == 4
    result = {"scenario": "regression", "deployment_config": "X", "outcome": SUCCEEDED,
              "alarm": None, "alarm_time_s": None, "requests": 10, "errors": 0, "traffic": [],
              "cloudwatch_rejects": rejects}  # fmt: skip
    text = summary(Outcome(result, tmp_path / "report.html", None, {}))
    assert "WARNING: CloudWatch would reject 4 metric values" in text
    assert "'/ポイント': a dimension value must contain only ASCII" in text
    assert "reserved for AWS" in text and "must be finite" in text
    page = render_html(result, {"options": {"time_scale": 1.0}, "t0": T0}, "", [], [], [])
    assert "CloudWatch would reject 4 metric values" in page and "&#x27;/ポイント&#x27;" in page
    assert "CloudWatch would reject" not in _page(0.75, None)  # nothing to warn about
    worker = {"outcome": "succeeded", "deployment": {}, "orders_produced": 1,
              "harm": {"delayed_past_objective": 0, "objective_s": 1, "dead_lettered": 0,
                       "credited_twice": 0, "credits_from": "ledger",
                       "credit_log_lines_missing": 0},
              "cloudwatch_rejects": rejects}  # fmt: skip
    fake = type("O", (), {"result": worker, "exactly_once": None, "details": {},
                          "report_path": tmp_path / "report.html"})()  # fmt: skip
    assert "WARNING: CloudWatch would reject 4 metric values" in worker_summary(fake)


def test_a_change_shows_the_value_that_decided_it_as_cloudwatchs_reason_does() -> None:
    # CloudWatch: "... 1 out of the last 3 datapoints [120.0 (...)] was not greater than the
    # threshold (250.0) (minimum 2 datapoints for ALARM -> OK transition)": the value that
    # brought it back, not the last breaching one
    points = ((T0 - 30, 900.0), (T0 - 20, 120.0), (T0 - 10, 300.0))
    back = Evaluation(T0, "svc-green-latency-avg", "OK", "ALARM", 300.0, points, "1 of 3",
                      250.0, "GreaterThanThreshold")  # fmt: skip
    assert back.value_vs_threshold() == "120 (> 250)"
    # to ALARM: the newest breaching datapoint, though a newer one did not breach (2 of 3)
    fired = Evaluation(T0, "svc-green-latency-avg", "ALARM", "OK", 120.0,
                       ((T0 - 30, 900.0), (T0 - 20, 300.0), (T0 - 10, 120.0)), "2 of 3",
                       250.0, "GreaterThanThreshold")  # fmt: skip
    assert fired.value_vs_threshold() == "300 (> 250)"
    # OK only because missing data counted as not breaching: no datapoint decided it
    filled = Evaluation(T0, "svc-green-latency-avg", "OK", "INSUFFICIENT_DATA", 257.4,
                        ((T0 - 30, None), (T0 - 20, None), (T0 - 10, 257.4)), "1 of 1, 2 missing",
                        250.0, "GreaterThanThreshold")  # fmt: skip
    assert filled.value_vs_threshold() == "no data (> 250)"
    assert filled.value == 257.4  # the JSON keeps the newest datapoint
    page = _page(0.75, None, [back])
    assert "<td>OK</td><td>120 (&gt; 250)</td>" in page
