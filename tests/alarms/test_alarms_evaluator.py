"""The evaluator's CloudWatch semantics: identity, statistics, periods, schedule, math, composites."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from alarms import Evaluator
from alarms._expr import ExpressionError, eval_rule, parse_math, parse_rule
from alarms._rules import low_sample_minimum

T0 = 1_800_000_000 - 1_800_000_000 % 3600  # a UTC hour boundary


def emf(
    ts: float,
    values: dict[str, Any],
    *,
    dims: list[list[str]] | None = None,
    props: dict[str, str] | None = None,
    unit: str = "Milliseconds",
    hires: bool = True,
    namespace: str = "NS",
) -> str:
    metrics = [
        {"Name": n, "Unit": unit, **({"StorageResolution": 1} if hires else {})} for n in values
    ]
    doc = {
        "_aws": {
            "Timestamp": int(ts * 1000),
            "CloudWatchMetrics": [
                {"Namespace": namespace, "Dimensions": dims or [["Service"]], "Metrics": metrics}
            ],
        },
        "Service": "svc",
        **(props or {}),
        **values,
    }
    return json.dumps(doc)


def alarm(
    name: str = "a",
    *,
    stat: str = "Average",
    period: int = 10,
    n: int = 1,
    m: int = 1,
    threshold: float = 100.0,
    op: str = "GreaterThanThreshold",
    treat: str = "missing",
    dims: list[dict[str, str]] | None = None,
    unit: str | None = None,
    metric: str = "Latency",
    **extra: Any,
) -> dict[str, Any]:
    a = {
        "AlarmName": name,
        "Namespace": "NS",
        "MetricName": metric,
        "Dimensions": dims if dims is not None else [{"Name": "Service", "Value": "svc"}],
        "Period": period,
        "EvaluationPeriods": n,
        "DatapointsToAlarm": m,
        "Threshold": threshold,
        "ComparisonOperator": op,
        "TreatMissingData": treat,
        **extra,
    }
    if stat.startswith("p"):
        a["ExtendedStatistic"] = stat
    else:
        a["Statistic"] = stat
    if unit:
        a["Unit"] = unit
    return a


def run(alarms: list[dict], lines: list[str], until: float, **opts: Any) -> tuple[Evaluator, list]:
    ev = Evaluator(
        {"MetricAlarms": alarms, "CompositeAlarms": opts.pop("composites", [])},
        start=opts.pop("start", T0),
        **opts,
    )
    for line in lines:
        ev.ingest_line(line)
    return ev, ev.advance(until)


def last(evals: list, name: str = "a"):
    return [e for e in evals if e.alarm == name][-1]


# -- statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stat", "expected"),
    [
        ("SampleCount", 10.0),
        ("Sum", 55.0),
        ("Average", 5.5),
        ("Minimum", 1.0),
        ("Maximum", 10.0),
        ("p50", 5.0),
        ("p90", 9.0),
        ("p99", 10.0),
        ("p10", 1.0),
        ("p100", 10.0),
        ("p0", 1.0),
    ],
)
def test_statistics_over_one_period(stat: str, expected: float) -> None:
    lines = [emf(T0 + 1, {"Latency": [1, 2, 3, 4, 5]}), emf(T0 + 7, {"Latency": [6, 7, 8, 9, 10]})]
    _, evals = run([alarm(stat=stat)], lines, T0 + 10)
    e = last(evals)
    assert e.datapoints[-1] == (float(T0), expected)
    assert e.value == expected


@pytest.mark.parametrize(
    ("stat", "expected"), [("p50", 5.5), ("p90", 9.1), ("p10", 1.9), ("p100", 10.0), ("p0", 1.0)]
)
def test_interpolated_percentile_definition_is_selectable(stat: str, expected: float) -> None:
    lines = [
        emf(T0 + 1, {"Latency": {"Values": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "Counts": [1] * 10}})
    ]
    _, evals = run([alarm(stat=stat)], lines, T0 + 10, percentile_method="interpolate")
    assert last(evals).value == pytest.approx(expected)


def test_unknown_percentile_method_is_refused() -> None:
    with pytest.raises(ValueError, match="percentile_method"):
        Evaluator({"MetricAlarms": [alarm(stat="p90")]}, percentile_method="median-of-medians")


@pytest.mark.parametrize(
    ("pct", "minimum"),
    [(99, 1000), (95, 200), (50, 20), (90, 100), (10, 100), (100, float("inf")), (0, float("inf")),
     (99.9, 10000), (99.99, 100000), (80, 50), (70, 34), (30, 34), (25, 40), (0.1, 10000)],
)  # fmt: skip
def test_low_sample_minimum_is_the_documented_rule(pct: float, minimum: float) -> None:
    # exact: "fewer than 10/(1-p)" with 10/(1-0.9) = 100 must let 100 samples through
    assert low_sample_minimum(pct) == minimum


@pytest.mark.parametrize(("stat", "enough"), [("p90", 100), ("p99.9", 10000), ("p10", 100)])
def test_a_period_with_exactly_the_documented_minimum_of_samples_is_evaluated(
    stat: str, enough: int
) -> None:
    """EvaluateLowSampleCountPercentile=ignore: the documented minimum itself is enough (100
    samples for p90), one fewer keeps the state."""
    a = [alarm(stat=stat, threshold=500, EvaluateLowSampleCountPercentile="ignore")]
    _, evals = run(a, [emf(T0 + 1, {"Latency": {"Values": [900], "Counts": [enough]}})], T0 + 10)
    assert last(evals).state == "ALARM", last(evals).reason
    few = {"Values": [900], "Counts": [enough - 1]}
    _, evals = run(a, [emf(T0 + 1, {"Latency": few})], T0 + 10)
    assert last(evals).state == "INSUFFICIENT_DATA"
    assert f"(< {enough})" in last(evals).reason


def test_values_with_counts_are_repeated_samples() -> None:
    hist = {"Values": [10, 1000], "Counts": [9, 1]}
    _, evals = run(
        [
            alarm(stat="SampleCount"),
            alarm("avg"),
            alarm("p90", stat="p90"),
            alarm("p95", stat="p95"),
        ],
        [emf(T0, {"Latency": hist})],
        T0 + 10,
    )
    assert last(evals).value == 10
    assert last(evals, "avg").value == pytest.approx((9 * 10 + 1000) / 10)
    assert last(evals, "p90").value == 10
    assert last(evals, "p95").value == 1000


def test_statistic_set_next_to_values_gives_exact_count_sum_min_max() -> None:
    # telemetry writes bucketed Values/Counts plus the exact Count/Sum/Min/Max of the window
    hist = {"Values": [10, 20], "Counts": [1, 1], "Min": 9.5, "Max": 21, "Count": 2, "Sum": 30.5}
    _, evals = run(
        [alarm("avg"), alarm("max", stat="Maximum"), alarm("p50", stat="p50")],
        [emf(T0, {"Latency": hist})],
        T0 + 10,
    )
    assert last(evals, "avg").value == pytest.approx(15.25)
    assert last(evals, "max").value == 21
    assert last(evals, "p50").value == 10


def test_percentile_unavailable_with_negative_samples() -> None:
    _, evals = run(
        [alarm(stat="p50", treat="notBreaching"), alarm("avg")],
        [emf(T0, {"Latency": [-5, 500]})],
        T0 + 10,
    )
    assert last(evals).datapoints[-1][1] is None
    assert last(evals, "avg").value == 247.5


# -- identity ------------------------------------------------------------------------------


def test_each_dimension_set_is_its_own_metric_and_the_set_must_match_exactly() -> None:
    line = emf(
        T0,
        {"Latency": [500]},
        dims=[["Service"], ["Service", "Version"]],
        props={"Version": "v2", "Route": "/x"},
    )
    other = emf(T0, {"Latency": [1]}, dims=[["Service", "Version"]], props={"Version": "v1"})
    alarms = [
        alarm("svc"),
        alarm("v2", dims=[{"Name": "Service", "Value": "svc"}, {"Name": "Version", "Value": "v2"}]),
        alarm("v1", dims=[{"Name": "Version", "Value": "v1"}, {"Name": "Service", "Value": "svc"}]),
        alarm(
            "route", dims=[{"Name": "Service", "Value": "svc"}, {"Name": "Route", "Value": "/x"}]
        ),
        alarm("none", dims=[]),
    ]
    _, evals = run(alarms, [line, other], T0 + 10)
    assert last(evals, "svc").value == 500  # the v1 line has no [Service] set
    assert last(evals, "v2").value == 500
    assert last(evals, "v1").value == 1  # dimension order does not matter
    assert last(evals, "route").value is None  # Route was a property, not in a dimension set
    assert last(evals, "none").value is None


def test_unit_and_namespace_are_part_of_the_identity() -> None:
    lines = [emf(T0, {"Latency": [500]}, unit="Seconds"), emf(T0, {"Latency": [7]}, namespace="X")]
    alarms = [alarm("ms", unit="Milliseconds"), alarm("s", unit="Seconds"), alarm("any")]
    _, evals = run(alarms, lines, T0 + 10)
    assert last(evals, "ms").value is None
    assert last(evals, "s").value == 500
    assert last(evals, "any").value == 500


def test_standard_resolution_gives_no_sub_minute_datapoints() -> None:
    lines = [emf(T0 + s, {"Latency": [200]}, hires=False) for s in range(0, 60, 5)]
    _, evals = run([alarm(n=6, m=6)], lines, T0 + 60)
    points = dict(last(evals).datapoints)
    assert points[T0] == 200  # the whole minute lands in its first 10 s period
    assert [points[T0 + k] for k in range(10, 60, 10)] == [None] * 5
    hires = [emf(T0 + s, {"Latency": [200]}, hires=True) for s in range(0, 60, 5)]
    _, evals = run([alarm(n=6, m=6)], hires, T0 + 60)
    assert [v for _, v in last(evals).datapoints][-6:] == [200.0] * 6


def test_hires_periods_are_utc_aligned_and_stamped_at_their_start() -> None:
    lines = [
        emf(T0 + 3, {"Latency": [1]}),
        emf(T0 + 13, {"Latency": [2]}),
        emf(T0 + 19.9, {"Latency": [4]}),
    ]
    _, evals = run([alarm(n=2, m=2, stat="Sum")], lines, T0 + 20)
    assert last(evals).datapoints[-2:] == ((float(T0), 1.0), (float(T0 + 10), 6.0))


# -- schedule ------------------------------------------------------------------------------


def test_schedule_every_10_s_for_sub_minute_periods_and_every_minute_otherwise() -> None:
    _, evals = run([alarm("fast", period=10), alarm("slow", period=60)], [], T0 + 120)
    fast = [e.time - T0 for e in evals if e.alarm == "fast"]
    slow = [e.time - T0 for e in evals if e.alarm == "slow"]
    assert fast == list(range(0, 121, 10))
    assert slow == [0, 60, 120]


def test_tick_override_and_incremental_advance_equal_one_batch() -> None:
    lines = [emf(T0 + s, {"Latency": [50 if s < 60 else 500]}) for s in range(0, 180)]
    a = [alarm(n=3, m=2)]
    _, batch = run(a, lines, T0 + 180)
    ev = Evaluator({"MetricAlarms": a}, start=T0)
    step: list = []
    for s, line in enumerate(lines):  # data arrives live, one line a second
        ev.ingest_line(line)
        step += ev.advance(T0 + s)
    step += ev.advance(T0 + 180)
    assert [e.to_dict() for e in step] == [e.to_dict() for e in batch]
    _, slow = run(a, lines, T0 + 180, tick_s=30)
    assert [e.time - T0 for e in slow] == [0, 30, 60, 90, 120, 150, 180]


def test_rolling_and_period_alignment_of_a_5_minute_period() -> None:
    a = [alarm(period=300, stat="Sum", threshold=0)]
    _, rolling = run(a, [], T0 + 420)
    _, fixed = run(a, [], T0 + 420, alignment="period")
    assert last(rolling).datapoints[-1][0] == T0 + 120  # ends at the evaluation time
    assert last(fixed).datapoints[-1][0] == T0  # the last complete UTC 5-minute period


def test_evaluation_range_size_and_datapoint_delay_are_configurable() -> None:
    _, evals = run([alarm(n=3, m=3)], [], T0 + 60)
    assert len(last(evals).datapoints) == 5
    _, evals = run([alarm(n=3, m=3)], [], T0 + 60, range_extra=0)
    assert len(last(evals).datapoints) == 3
    _, evals = run([alarm(n=1)], [], T0 + 60, datapoint_delay_s=20)
    assert last(evals).datapoints[-1][0] == T0 + 30


def test_late_data_counts_from_the_next_evaluation_or_is_dropped_when_configured() -> None:
    ev = Evaluator({"MetricAlarms": [alarm(n=3, m=1, treat="notBreaching")]}, start=T0)
    ev.ingest_line(emf(T0, {"Latency": [1]}))
    assert ev.advance(T0 + 20)[-1].state == "OK"
    ev.ingest_line(emf(T0 + 5, {"Latency": [10_000]}))  # late, for an evaluated period
    assert ev.advance(T0 + 30)[-1].state == "ALARM"
    strict = Evaluator({"MetricAlarms": [alarm(n=3, m=1)]}, start=T0, max_lateness_s=5)
    strict.ingest_line(emf(T0, {"Latency": [1]}))
    strict.advance(T0 + 20)
    assert strict.ingest_line(emf(T0 + 5, {"Latency": [10_000]})) == 0
    assert strict.stats["late_dropped"] == 1


# -- M of N end to end -----------------------------------------------------------------------


def test_two_of_three_goes_to_alarm_and_back() -> None:
    lat = [50, 500, 50, 500, 500, 50, 50, 50]
    lines = [emf(T0 + 10 * i + 1, {"Latency": [v]}) for i, v in enumerate(lat)]
    _, evals = run([alarm(n=3, m=2, threshold=250)], lines, T0 + 90)
    states = [(e.time - T0, e.state) for e in evals if e.changed]
    assert states == [(10, "OK"), (40, "ALARM"), (70, "OK")]


def test_low_sample_count_percentile_ignore_keeps_the_state() -> None:
    few = [emf(T0 + 10 * i, {"Latency": [900] * 50}) for i in range(3)]  # 50 < 100 for p90
    many = [  # 150 per period, in lines of at most 100 values (the EMF limit)
        emf(T0 + 30 + 10 * i, {"Latency": [900] * 75}) for i in range(3) for _ in range(2)
    ]
    a = [
        alarm("ignore", stat="p90", n=1, threshold=500, EvaluateLowSampleCountPercentile="ignore"),
        alarm("evaluate", stat="p90", n=1, threshold=500),
    ]
    _, evals = run(a, few + many, T0 + 60)
    ign = [e for e in evals if e.alarm == "ignore"]
    assert [e.state for e in ign if e.time <= T0 + 30] == ["INSUFFICIENT_DATA"] * 4
    assert "too few" in ign[2].reason or "samples" in ign[2].reason
    assert ign[-1].state == "ALARM"
    assert [e.state for e in evals if e.alarm == "evaluate"][1] == "ALARM"


def test_ignore_keeps_state_and_missing_goes_insufficient_on_no_data() -> None:
    lines = [emf(T0 + 1, {"Latency": [500]})]
    a = [alarm("ign", treat="ignore"), alarm("mis", treat="missing")]
    ev, _evals = run(a, lines, T0 + 100)
    assert ev.states["ign"] == "ALARM"
    assert ev.states["mis"] == "INSUFFICIENT_DATA"


# -- metric math -----------------------------------------------------------------------------


def math_alarm(expr: str, *, treat: str = "missing", period: int = 10) -> dict[str, Any]:
    def stat(qid: str, metric: str) -> dict[str, Any]:
        return {
            "Id": qid,
            "ReturnData": False,
            "MetricStat": {
                "Metric": {
                    "Namespace": "NS",
                    "MetricName": metric,
                    "Dimensions": [{"Name": "Service", "Value": "svc"}],
                },
                "Period": period,
                "Stat": "Sum",
            },
        }

    return {
        "AlarmName": "m",
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 1,
        "Threshold": 10.0,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": treat,
        "Metrics": [
            {"Id": "e1", "Expression": expr, "ReturnData": True},
            stat("errors", "Errors"),
            stat("requests", "Requests"),
        ],
    }


def test_metric_math_missing_is_zero_division_by_zero_drops_the_point() -> None:
    lines = [
        emf(T0, {"Errors": 5, "Requests": 20}, unit="Count"),  # 25 %
        emf(T0 + 10, {"Requests": 20}, unit="Count"),  # errors missing -> 0 %
        emf(T0 + 20, {"Errors": 3}, unit="Count"),  # requests missing -> 3 / 0 -> dropped
        emf(T0 + 30, {"Errors": 0, "Requests": 0}, unit="Count"),  # 0 / 0 -> dropped
    ]  # T0 + 40: nothing at all -> no datapoint
    _, evals = run([math_alarm("100 * errors / requests")], lines, T0 + 50)
    assert [v for _, v in last(evals, "m").datapoints] == [25.0, 0.0, None, None, None]


def test_metric_math_chained_expressions() -> None:
    a = math_alarm("ratio * 100")
    a["Metrics"].append({"Id": "ratio", "Expression": "errors / requests", "ReturnData": False})
    _, evals = run([a], [emf(T0, {"Errors": 1, "Requests": 4}, unit="Count")], T0 + 10)
    assert last(evals, "m").value == 25.0


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("1 + 2 * 3", {}, 7.0),
        ("(1 + 2) * 3", {}, 9.0),
        ("-a + b", {"a": 1, "b": 3}, 2.0),
        ("2 ^ 3 ^ 2", {}, 512.0),
        ("a / b", {"a": 1, "b": 0}, None),
        ("a - b", {"a": None, "b": 2}, -2.0),
        ("1.5e2 / 3", {}, 50.0),
        ("10 / 4 / 5", {}, 0.5),
        ("8 - 2 - 1", {}, 5.0),
    ],
)
def test_math_parser(text: str, env: dict, expected: float | None) -> None:
    assert parse_math(text)(env) == expected


@pytest.mark.parametrize("text", ["", "1 +", "(a", "a b", "FILL(a, 0)", "A1 + 1", "a $ b", "1 )"])
def test_math_parser_rejects(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse_math(text)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("a ^ 0.5", {"a": -4}, None),  # no real result: dropped (Python gives a complex)
        ("(0 - a) ^ (1 / 3)", {"a": 8}, None),
        ("a ^ 0.5", {"a": 4}, 2.0),
        ("+".join(["a"] * 1000), {"a": 1}, 1000.0),  # a long chain is no deep recursion
        ("*".join(["a"] * 1000), {"a": 1}, 1.0),
        ("(" * 100 + "a" + ")" * 100, {"a": 3}, 3.0),
        ("(a)+" * 500 + "a", {"a": 1}, 501.0),  # siblings are not nesting
    ],
)
def test_math_hostile_but_valid(text: str, env: dict, expected: float | None) -> None:
    assert parse_math(text)(env) == expected


@pytest.mark.parametrize(
    "text", ["(" * 1000 + "a" + ")" * 1000, "-" * 2000 + "a", "^".join(["a"] * 1000)]
)
def test_math_nested_too_deep_is_an_expression_error(text: str) -> None:
    # within CloudWatch's 2,048 characters, and no RecursionError
    with pytest.raises(ExpressionError, match="nested more than"):
        parse_math(text)


def test_math_negative_base_to_a_fraction_drops_the_point_in_an_alarm() -> None:
    _, evals = run(
        [math_alarm("(0 - errors) ^ 0.5")], [emf(T0, {"Errors": 4}, unit="Count")], T0 + 10
    )
    assert [v for _, v in last(evals, "m").datapoints] == [None] * 5
    _, evals = run([math_alarm("errors ^ 0.5")], [emf(T0, {"Errors": 4}, unit="Count")], T0 + 10)
    assert last(evals, "m").value == 2.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"EvaluationPeriods": 10**8}, "above PutMetricAlarm's limit of 86400 s"),
        ({"Period": 60 * 10**12}, "above PutMetricAlarm's limit of 604800 s"),
        ({"Period": 3600, "EvaluationPeriods": 169}, "limit of 604800 s"),
        ({"EvaluationPeriods": float("inf")}, "EvaluationPeriods inf is not a whole number"),
        ({"EvaluationPeriods": 0, "DatapointsToAlarm": 0}, "at least 1"),
        ({"Metrics": ["a", "b"]}, "must be an object"),
        ({"Metrics": [{"Id": "m", "MetricStat": [1]}]}, "must be an object"),
        (
            {"Metrics": [{"Id": "m", "MetricStat": {"Metric": [1], "Period": 10, "Stat": "Sum"}}]},
            "Metric must be an object",
        ),
        # found by review r17: accepted silently, or a confusing message
        ({"Threshold": float("nan")}, "not a finite number"),
        ({"Threshold": float("inf")}, "not a finite number"),
        ({"Period": 10.5}, "Period 10.5 is not a whole number"),
        ({"EvaluationPeriods": 1.5}, "EvaluationPeriods 1.5 is not a whole number"),
        ({"DatapointsToAlarm": True}, "DatapointsToAlarm True is not a whole number"),
        ({"Dimensions": "Service=svc"}, "Dimensions must be a list of {Name, Value} objects"),
        ({"Dimensions": [{"Name": "Service"}]}, "Dimensions must be a list of {Name, Value}"),
        # found by review r20: other members of the class, read as numbers or text before
        ({"Threshold": True}, "Threshold True is not a finite number"),
        ({"Threshold": "2_50"}, "Threshold '2_50' is not a finite number"),
        ({"Threshold": "\uff12\uff15\uff10"}, "is not a finite number"),
        ({"Threshold": 10**400}, "is not a finite number"),
        ({"Period": " 60 "}, "Period ' 60 ' is not a whole number"),
        ({"Period": "\uff16\uff10"}, "is not a whole number"),
        ({"EvaluationPeriods": "1_0"}, "EvaluationPeriods '1_0' is not a whole number"),
        ({"DatapointsToAlarm": 0}, "DatapointsToAlarm must be between 1"),
        ({"DatapointsToAlarm": False}, "DatapointsToAlarm False is not a whole number"),
        ({"Dimensions": [{"Name": None, "Value": "svc"}]}, "list of {Name, Value}"),
        ({"Dimensions": [{"Name": "Service", "Value": {"Ref": "X"}}]}, "Value must be text"),
        ({"Dimensions": [{"Name": "Service", "Value": None}]}, "Value must be text"),
    ],
)
def test_hostile_alarm_definitions_stay_insufficient_with_a_warning(
    change: dict, message: str
) -> None:
    # each one was a hang (a day's limit ignored) or a stack trace before
    ev, evals = run([alarm(n=1, **{}) | change], [emf(T0, {"Latency": 500})], T0 + 120)
    assert ev.states["a"] == "INSUFFICIENT_DATA"
    assert message in ev.warnings[0]
    assert "not evaluated" in evals[-1].reason


def test_the_longest_window_cloudwatch_allows_is_evaluated() -> None:
    ev, _ = run([alarm(period=10, n=8640, m=1)], [emf(T0, {"Latency": 500})], T0 + 20)
    assert ev.states["a"] == "ALARM" and not ev.warnings


def test_unsupported_alarm_stays_insufficient_with_a_warning() -> None:
    ev, evals = run([math_alarm("FILL(errors, 0)")], [], T0 + 10)
    assert ev.states["m"] == "INSUFFICIENT_DATA"
    assert "FILL" in ev.warnings[0] and "not evaluated" in evals[-1].reason


# -- composite alarms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ('ALARM("a") AND ALARM("b")', False),
        ('ALARM("a") OR ALARM("b")', True),
        ("ALARM(a) AND NOT ALARM(b)", True),
        ('OK("b") AND (INSUFFICIENT_DATA("c") OR FALSE)', True),
        ("NOT (ALARM(a) OR TRUE)", False),
        ('ALARM("arn:aws:cloudwatch:us-east-1:123456789012:alarm:a")', True),
        ("TRUE AND NOT FALSE", True),
        ("ALARM(a) OR ALARM(b) AND FALSE", True),  # AND binds tighter than OR
    ],
)
def test_rules(rule: str, expected: bool) -> None:
    assert eval_rule(parse_rule(rule), {"a": "ALARM", "b": "OK"}) is expected


@pytest.mark.parametrize(
    "rule",
    [
        "",
        "ALARM(a) AND",
        "(ALARM(a)",
        "ALARM(a) XOR ALARM(b)",
        "AT_LEAST(2, ALARM, (a, b))",
        "ALARM(a) ALARM(b)",
    ],
)
def test_rule_parser_rejects(rule: str) -> None:
    with pytest.raises(ExpressionError):
        parse_rule(rule)


def test_rules_over_hundreds_of_alarms_and_deep_nesting() -> None:
    # CloudWatch allows 10,240 characters: a long OR is one node, not a nest per alarm
    names = [f"a{i}" for i in range(900)]
    rule = parse_rule(" OR ".join(f"ALARM({n})" for n in names))
    assert eval_rule(rule, {"a899": "ALARM"}) is True
    assert eval_rule(rule, {}) is False
    assert eval_rule(parse_rule(" AND ".join(f"OK({n})" for n in names)), {}) is False
    assert eval_rule(parse_rule("NOT " * 100 + "TRUE"), {}) is True
    assert eval_rule(parse_rule("(TRUE) AND " * 500 + "TRUE"), {}) is True
    for text in ("NOT " * 2500 + "TRUE", "(" * 3000 + "TRUE" + ")" * 3000):
        with pytest.raises(ExpressionError, match="nested more than"):
            parse_rule(text)


def test_composite_follows_children_in_the_same_evaluation() -> None:
    lines = [emf(T0 + 10 * i, {"Latency": [500 if i >= 2 else 1]}) for i in range(5)]
    comps = [
        {"AlarmName": "both", "AlarmRule": 'ALARM("a") AND ALARM("b")'},
        {"AlarmName": "top", "AlarmRule": 'ALARM("both") OR ALARM("missing-one")'},
    ]
    ev, evals = run(
        [alarm("a"), alarm("b", threshold=250)], lines, T0 + 50, composites=list(reversed(comps))
    )
    top = [e for e in evals if e.alarm == "top"]
    assert [e.time - T0 for e in top if e.changed] == [0, 30]
    assert ev.states["both"] == ev.states["top"] == "ALARM"
    assert any("missing-one" in w for w in ev.warnings)


def test_composite_cycle_is_an_error() -> None:
    with pytest.raises(ValueError, match="cycle"):
        Evaluator(
            {
                "CompositeAlarms": [
                    {"AlarmName": "x", "AlarmRule": "ALARM(y)"},
                    {"AlarmName": "y", "AlarmRule": "ALARM(x)"},
                ]
            }
        )


# -- input robustness ----------------------------------------------------------------------


def test_bad_lines_are_counted_never_raised() -> None:
    ev = Evaluator({"MetricAlarms": [alarm()]}, start=T0)
    bad = [
        "",
        "not json",
        "[1, 2]",
        '{"no": "emf"}',
        '{"_aws": {"Timestamp": "x"}}',
        emf(T0, {"Latency": "fast"}),
        emf(T0, {"Latency": [1, "x"]}),
        b"\xff\xfe",
        emf(T0, {"Latency": {"Values": [1], "Counts": [1, 2]}}),
        '{"_aws": {"Timestamp": -1000, "CloudWatchMetrics": []}}',
        '{"_aws": {"Timestamp": 1e20, "CloudWatchMetrics": []}}',
        '{"_aws": {"Timestamp": true, "CloudWatchMetrics": []}}',  # was 1 ms after 1970
        json.dumps({"_aws": {"Timestamp": str(T0 * 1000), "CloudWatchMetrics": []}}),
        '{"_aws": {"Timestamp": 1e400, "CloudWatchMetrics": []}}',
        emf(T0, {"Latency": {"Values": [1], "Counts": [float("inf")]}}),
    ]
    assert sum(ev.ingest_line(x) for x in bad) == 0
    assert ev.stats["bad_lines"] == len(bad)
    assert ev.data_range == (T0, T0)  # absurd timestamps do not stretch the replay window
    assert ev.advance(T0)[0].state == "INSUFFICIENT_DATA"


def test_cloudwatch_logs_export_lines() -> None:
    inner = emf(T0, {"Latency": [500]})
    lines = [
        json.dumps({"timestamp": T0 * 1000, "message": inner, "logStreamName": "s"}),
        f"2027-01-15T08:00:00.000Z\t{inner}",
        f"2027-01-15T08:00:00.000Z {inner}",
    ]
    _ev, evals = run([alarm(stat="SampleCount")], lines, T0 + 10)
    assert last(evals).value == 3


def test_aws_namespace_alarms_report_no_data() -> None:
    a = alarm("alb", treat="notBreaching")
    a["Namespace"] = "AWS/ApplicationELB"
    ev, evals = run([a], [emf(T0, {"Latency": [1]})], T0 + 30)
    assert ev.states["alb"] == "INSUFFICIENT_DATA"
    assert "no data" in last(evals, "alb").reason


def test_milliseconds_passed_to_advance_is_refused() -> None:
    with pytest.raises(ValueError, match="seconds"):
        Evaluator({"MetricAlarms": [alarm()]}).advance(T0 * 1000.0)


def test_composites_without_metric_alarms_are_evaluated_every_minute() -> None:
    ev = Evaluator({"CompositeAlarms": [{"AlarmName": "t", "AlarmRule": "TRUE"}]}, start=T0)
    evals = ev.advance(T0 + 120)
    assert [(e.time - T0, e.state) for e in evals] == [(0, "ALARM"), (60, "ALARM"), (120, "ALARM")]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (emf(T0, {"Latency": float("nan")}), "finite"),
        (emf(T0, {"Latency": [1, float("inf")]}), "finite"),
        (emf(T0, {"Latency": {"Values": [float("nan")], "Counts": [1]}}), "finite"),
        (emf(T0, {"Latency": 1e200}), "2^360"),
        (emf(T0, {"Latency": [-(2.0**361)]}), "2^360"),
        (emf(T0, {"Latency": 1e-200}), "2^-360"),
        (emf(T0, {"Latency": [500] * 101}), "101 values (the EMF specification: at most 100)"),
        (
            emf(T0, {"Latency": {"Values": list(range(400, 501)), "Counts": [1] * 101}}),
            "101 values",
        ),
        (
            emf(
                T0,
                {
                    "Latency": {
                        "Values": [500] * 150,
                        "Counts": [1] * 150,
                        "Count": 150,
                        "Sum": 75000,
                        "Min": 500,
                        "Max": 500,
                    }
                },
            ),
            "150 values",
        ),
        (
            emf(T0, {"Latency": {"Values": [500], "Sum": 1e300, "Count": 1, "Min": 1, "Max": 1}}),
            "2^360",
        ),
        (
            emf(
                T0,
                {"Latency": 500},
                props={"Service": "svc", "Route": "/ポイント"},
                dims=[["Service"], ["Route"]],
            ),
            "Route '/ポイント': a dimension value must contain only ASCII",
        ),
        (
            emf(T0, {"Latency": 500}, props={"Route": " \t "}, dims=[["Service"], ["Route"]]),
            "non-whitespace",
        ),
        (
            emf(T0, {"Latency": 500}, props={"Route": "a\x01b"}, dims=[["Service"], ["Route"]]),
            "control characters",
        ),
        (emf(T0, {"Latency": 500}, props={":x": "1"}, dims=[["Service"], [":x"]]), "':'"),
        # The EMF specification: "the target member MUST have a string value"; a number, a
        # boolean, null, an array or an object is not read as its text (it was: "2")
        *(
            (
                emf(T0, {"Latency": 500}, props={"Version": v}, dims=[["Service"], ["Version"]]),  # type: ignore[dict-item]
                f"Version {short}: a dimension value must be a string, not {kind}",
            )
            for v, short, kind in [
                (2, "2", "int"),
                (2.5, "2.5", "float"),
                (True, "True", "bool"),
                (None, "None", "NoneType"),
                ([1], "[1]", "list"),
                ({"a": "b"}, "{'a': 'b'}", "dict"),
            ]
        ),
        # ... and a dimension name is a string: 1, null, true or an array names no member
        *(
            (
                emf(T0, {"Latency": 500}, dims=[["Service"], [name]]),  # type: ignore[list-item]
                f"dimension name {short}: a dimension name must be a string, not {kind}",
            )
            for name, short, kind in [
                (1, "1", "int"),
                (None, "None", "NoneType"),
                (True, "True", "bool"),
                (["Service"], "['Service']", "list"),
            ]
        ),
        (
            emf(T0, {"Latency": 500}, props={"Version": "v2"}, dims=[["Service"], ["Version", 7]]),  # type: ignore[list-item]
            "dimension name 7: a dimension name must be a string, not int",
        ),
        (emf(T0, {"Latency": 500}, namespace="AWS/ApplicationELB"), "reserved for AWS"),
        (emf(T0, {"Latency": 500}, namespace="with space"), "namespace"),
        (emf(T0, {"Latency": 500}, namespace="N" * 256), "characters long"),
        (
            emf(
                T0,
                {"Latency": 500},
                props={f"D{i}": "x" for i in range(31)},
                dims=[["Service"], [f"D{i}" for i in range(31)]],
            ),
            "at most 30",
        ),
    ],
)
def test_metric_data_cloudwatch_would_reject_is_warned_about_and_left_out(
    line: str, reason: str
) -> None:
    """The offline evaluator applies telemetry.cloudwatch_rules: what CloudWatch would reject is
    counted, named in a warning and never reaches an alarm (in production it would not either)."""
    alb = alarm("alb", stat="Maximum")
    alb["Namespace"] = "AWS/ApplicationELB"
    ev, _evals = run([alarm(stat="Maximum"), alb], [line], T0 + 10)
    assert ev.stats["rejected"] >= 1 and ev.stats["bad_lines"] == 0
    assert len(ev.rejection_warnings) == 1
    assert (
        reason in ev.rejection_warnings[0] and "CloudWatch would reject" in ev.rejection_warnings[0]
    )
    assert ev.states["alb"] == "INSUFFICIENT_DATA"  # EMF cannot publish into AWS/
    # a rejected value never alarms; a rejected dimension set leaves the accepted [Service] set
    bad_dimension = '"Dimensions": [["Service"], [' in line
    assert (ev.states["a"] == "ALARM") is bad_dimension


def test_a_directive_of_more_than_100_metrics_gives_no_metric_at_all() -> None:
    """The EMF specification allows 100 MetricDefinitions per directive; with more, CloudWatch
    extracts none of the document's metrics (EMFValidationErrors; aws/amazon-cloudwatch-agent
    #664, #1813), the first 100 included: the alarm sees no data, the values are warned about."""
    many = {f"M{i}": 1 for i in range(99)}
    ev, evals = run([alarm(stat="Maximum")], [emf(T0, {"Latency": 500, **many})], T0 + 10)
    assert last(evals).state == "ALARM" and ev.stats["rejected"] == 0  # 100: taken
    line = emf(T0, {"Latency": 500, **many, "M99": 1}, dims=[["Service"], []])
    ev, evals = run([alarm(stat="Maximum")], [line], T0 + 10)
    assert last(evals).state == "INSUFFICIENT_DATA"
    assert ev.stats["rejected"] == 202 and ev.stats["bad_lines"] == 0  # 101 metrics x 2 sets
    (warning,) = ev.rejection_warnings
    assert "a directive of 101 metrics (the EMF specification: at most 100)" in warning


def _sized_line(size: int, pad: str = "x") -> str:
    """An EMF line (Latency 500) of exactly ``size`` UTF-8 bytes, padded with ``pad``."""
    base = json.loads(emf(T0, {"Latency": 500}))
    empty = len(json.dumps({**base, "Pad": ""}, ensure_ascii=False).encode())
    width = len(pad.encode())
    text = pad * ((size - empty) // width) + "x" * ((size - empty) % width)
    return json.dumps({**base, "Pad": text}, ensure_ascii=False)


@pytest.mark.parametrize("pad", ["x", "\u00e9", "\u20ac"])
def test_a_log_event_larger_than_cloudwatch_logs_takes_gives_no_metric(pad: str) -> None:
    """CloudWatch Logs takes events of at most 1 MB (1,048,576 bytes per batch, 26 of them per
    event): a longer EMF line is never ingested, so it never alarms; counted in UTF-8 bytes."""
    limit = 1_048_576 - 26
    ok, big = _sized_line(limit, pad), _sized_line(limit + 1, pad)
    assert len(ok.encode()) == limit and len(big.encode()) == limit + 1
    ev, evals = run([alarm(stat="Maximum")], [ok], T0 + 10)
    assert last(evals).state == "ALARM" and ev.stats["rejected"] == 0
    ev, evals = run([alarm(stat="Maximum")], [big], T0 + 10)
    assert last(evals).state == "INSUFFICIENT_DATA" and ev.stats["rejected"] == 1
    assert "log event of more than 1048550 bytes" in ev.rejection_warnings[0]
    # a recording (replay): named with its line; an export record: its message is the event
    record = json.dumps({"timestamp": T0 * 1000, "message": big})
    ev = Evaluator({"MetricAlarms": [alarm(stat="Maximum")]}, start=T0)
    ev.ingest([emf(T0 - 1, {"Other": 1}), big, record], source="emf.jsonl")
    assert ev.advance(T0 + 10)[-1].state == "INSUFFICIENT_DATA"
    assert ev.stats["rejected"] == 2 and ev.stats["bad_lines"] == 0
    assert "(first: emf.jsonl line 2)" in ev.rejection_warnings[0]


def test_a_numeric_dimension_value_is_not_the_string_an_alarm_names() -> None:
    """``"Version": 2`` is no metric ``Version=2`` (CloudWatch extracts none): an alarm on
    Version "2" sees no data, and the line's accepted [Service] set still counts."""
    on_version = alarm("v", stat="Maximum", dims=[{"Name": "Version", "Value": "2"}])
    line = emf(T0, {"Latency": 500}, props={"Version": 2}, dims=[["Service"], ["Version"]])  # type: ignore[dict-item]
    ev, _ = run([alarm(stat="Maximum"), on_version], [line] * 3, T0 + 10)
    assert ev.states == {"a": "ALARM", "v": "INSUFFICIENT_DATA"}
    assert ev.stats["rejected"] == 3 and ev.stats["bad_lines"] == 0
    assert ev.rejection_warnings == [
        "3 metric values CloudWatch would reject: NS: dimension Version 2: a dimension value "
        "must be a string, not int"
    ]


def test_rejections_are_bounded_and_accepted_data_is_not_warned_about() -> None:
    ev = Evaluator({"MetricAlarms": [alarm(stat="Maximum")]}, start=T0)
    ev.ingest_line(emf(T0, {"Latency": 500}))
    assert ev.stats["rejected"] == 0 and ev.rejection_warnings == []
    for i in range(500):  # ever new bad values: counted, the kinds kept stay bounded
        ev.ingest_line(emf(T0, {"Latency": 1}, props={"Route": f"/é{i}"}, dims=[["Route"]]))
    assert ev.stats["rejected"] == 500
    assert len(ev.rejection_warnings) <= 51
    assert ev.advance(T0 + 10)[-1].state == "ALARM"  # the accepted datum still counts


@pytest.mark.parametrize(
    "options",
    [
        {"range_extra": 10**8},  # one evaluation would read 10^8 datapoints: hours
        {"range_extra": -1},
        {"range_extra": 2.5},
        {"datapoint_delay_s": math.inf},
        {"datapoint_delay_s": math.nan},
        {"max_lateness_s": math.nan},
        {"max_lateness_s": -1.0},
        {"start": -1e12},  # before 1970: not an EMF time
        {"start": math.nan},
    ],
)
def test_out_of_range_options_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Evaluator({"MetricAlarms": [alarm()]}, **options)  # type: ignore[arg-type]


def test_the_number_rules_are_public_api() -> None:
    """``rehearsal`` prints values against thresholds with these (never a private module)."""
    import alarms

    assert {"number_text", "value_text"} <= set(alarms.__all__)
    assert alarms.number_text(250.0004) == "250.0004" and alarms.number_text(250.0) == "250"
    assert alarms.value_text(250.0001, 250.0) == "250.0001"


@pytest.mark.parametrize(("flag", "evaluated"), [(False, True), ("false", True), ("no", False)])
def test_return_data_is_a_boolean_or_a_templates_text(flag: Any, evaluated: bool) -> None:
    """``"ReturnData": "false"`` (CloudFormation's text form) is false, not a true string."""
    definition = math_alarm("errors")
    definition["Metrics"][1]["ReturnData"] = flag  # a MetricStat query; the expression returns
    ev, _ = run([definition], [emf(T0, {"Errors": 4}, unit="Count")], T0 + 10)
    if evaluated:
        assert not ev.warnings
    else:
        assert "ReturnData must be true or false" in ev.warnings[0]


def test_template_text_numbers_and_a_numeric_dimension_are_read() -> None:
    # a CloudFormation template gives numbers as text, and YAML may give a dimension value as a
    # number: the stricter reading (review r20) must keep accepting what CloudWatch accepts
    a = alarm(
        threshold=0, dims=[{"Name": "Service", "Value": "svc"}], Period="10", EvaluationPeriods="1"
    ) | {"Threshold": "1.5e2", "DatapointsToAlarm": "1"}
    ev, _ = run([a], [emf(T0, {"Latency": 500})], T0 + 20)
    assert ev.states["a"] == "ALARM" and not ev.warnings


@pytest.mark.parametrize(
    ("metric", "problem"),
    [({"Unit": "Bogus"}, "Unit 'Bogus' is not a CloudWatch unit"),
     ({"Unit": "milliseconds"}, "Unit 'milliseconds' is not a CloudWatch unit"),
     ({"Unit": ""}, "Unit '' is not a CloudWatch unit"),
     ({"Unit": ["Count"]}, "Unit ['Count'] is not a CloudWatch unit"),
     ({"Unit": 5}, "Unit 5 is not a CloudWatch unit"),
     ({"StorageResolution": 5}, "StorageResolution 5 is not 1 or 60"),
     ({"StorageResolution": "1"}, "StorageResolution '1' is not 1 or 60"),
     ({"StorageResolution": True}, "StorageResolution True is not 1 or 60"),
     ({"StorageResolution": 1.5}, "StorageResolution 1.5 is not 1 or 60"),
     ({"StorageResolution": [1]}, "StorageResolution [1] is not 1 or 60")],
)  # fmt: skip
def test_a_metric_with_a_unit_or_resolution_emf_forbids_is_left_out(
    metric: dict[str, Any], problem: str
) -> None:
    """The EMF specification: Unit MUST be a MetricDatum unit, StorageResolution 1 or 60; such a
    metric is never extracted, so an alarm on it sees no data (it saw 900 ms and alarmed)."""
    line = {
        "_aws": {
            "Timestamp": (T0 + 1) * 1000,
            "CloudWatchMetrics": [
                {"Namespace": "NS", "Dimensions": [["Service"]],
                 "Metrics": [{"Name": "Latency", **metric}]}
            ],
        },
        "Service": "svc",
        "Latency": 900,
    }  # fmt: skip
    ev, evals = run([alarm()], [json.dumps(line)], T0 + 10)
    assert last(evals).state == "INSUFFICIENT_DATA"
    assert ev.stats["rejected"] == 1
    assert any(problem in w for w in ev.rejection_warnings), ev.rejection_warnings
    good = {**line, "_aws": {**line["_aws"], "CloudWatchMetrics": [
        {"Namespace": "NS", "Dimensions": [["Service"]],
         "Metrics": [{"Name": "Latency", "Unit": "Milliseconds", "StorageResolution": 60}]}]}}  # fmt: skip
    _, evals = run([alarm(period=60)], [json.dumps(good)], T0 + 60)
    assert last(evals).state == "ALARM"


@pytest.mark.parametrize(
    ("stat", "taken"),
    [("p99.9", True), ("p0", True), ("p100", True), ("p100.0", True), ("p50", True),
     ("p1e1", False), ("p 50", False), ("p5_0", False), ("pnan", False), ("pinf", False),
     ("p101", False), ("p100.5", False), ("p-1", False), ("p", False), ("p50.", False),
     ("p.5", False), ("p\uff15\uff10", False), ("P50", False)],
)  # fmt: skip
def test_percentile_statistics_are_read_as_putmetricalarm_writes_them(
    stat: str, taken: bool
) -> None:
    # Python's float() reads p1e1, p 50, p5_0 and pnan, and \d matches full-width digits:
    # none is a percentile CloudWatch takes
    ev = Evaluator({"MetricAlarms": [alarm(stat=stat)]})
    assert (ev.warnings == []) is taken, ev.warnings
