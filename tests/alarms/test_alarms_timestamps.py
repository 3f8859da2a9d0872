"""EMF timestamps CloudWatch would refuse: no time at all, or too far from when the line was
ingested, which offline the lines around it stand for (alarms._timestamps). Such a line is left out
with a warning and never stretches the replay window; a genuinely long run is kept whole."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from alarms import Evaluator
from alarms._sample_emf import api_lines
from alarms._timestamps import NEIGHBOURS, SET_ASIDE, ingestion_bounds, screen
from telemetry import cloudwatch_rules as rules

from .test_alarms_evaluator import T0, alarm, emf

DAY = 86400
YEAR_9999_END_MS = 253_402_300_799_999


def restamped(line: str, timestamp: Any) -> str:
    """``line`` with its ``_aws.Timestamp`` replaced (NaN and infinities as Python's json writes
    them: the bare literals NaN, Infinity, -Infinity, which json.loads reads back)."""
    doc = json.loads(line)
    doc["_aws"]["Timestamp"] = timestamp
    return json.dumps(doc)


# -- the rules (telemetry.cloudwatch_rules) -------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [0, 1, 1_800_000_000_000, 1.8e12, 1_800_000_000_000.5, YEAR_9999_END_MS, float(10**12)],
)
def test_a_json_number_of_milliseconds_from_1970_to_9999_is_a_time(value: float) -> None:
    assert rules.timestamp_problem(value) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1, "negative"),
        (-1e12, "negative"),
        (YEAR_9999_END_MS + 1, "after the year 9999"),
        (10**30, "after the year 9999"),  # an int far beyond any float date
        (1e300, "after the year 9999"),
        (math.nan, "not NaN or infinity"),
        (math.inf, "not NaN or infinity"),
        (-math.inf, "not NaN or infinity"),
        ("1800000000000", "not a string"),
        (True, "not a boolean"),
        (False, "not a boolean"),
        (None, "not null"),
        ([1_800_000_000_000], "not an array"),
        ({"ms": 1}, "not an object"),
    ],
)
def test_what_is_no_time_at_all(value: object, reason: str) -> None:
    problem = rules.timestamp_problem(value)
    assert problem is not None and reason in problem


def test_cloudwatch_takes_14_days_of_past_and_2_hours_of_future() -> None:
    now = 1_800_000_000.0
    assert rules.MAX_TIMESTAMP_PAST_S == 14 * DAY and rules.MAX_TIMESTAMP_FUTURE_S == 7200
    assert rules.timestamp_age_problem(now - 14 * DAY, now) is None
    assert "14 days before" in str(rules.timestamp_age_problem(now - 14 * DAY - 0.001, now))
    assert rules.timestamp_age_problem(now + 7200, now) is None
    assert "2 hours after" in str(rules.timestamp_age_problem(now + 7200.001, now))
    # an ingestion time known only to lie in an interval: the kindest end applies to each side
    assert rules.timestamp_age_problem(now - 14 * DAY, now, now + DAY) is None
    assert rules.timestamp_age_problem(now + DAY + 7200, now, now + DAY) is None
    assert rules.timestamp_age_problem(now + DAY + 7201, now, now + DAY) is not None


# -- the screen: each line judged by the lines around it -----------------------------------------

GOOD = [T0 + i * 0.5 for i in range(3000)]  # a dense recording: two lines a second


def rejected(timestamps: list[float]) -> list[int]:
    return [i for i, problem in screen([(i, t) for i, t in enumerate(timestamps)]) if problem]


@pytest.mark.parametrize(
    ("where", "bad"),
    [
        (0, 0.0),  # the reported case, as the first line
        (1500, 0.0),  # in the middle
        (3000, 0.0),  # as the last line
        (1500, T0 - 15 * DAY),  # stale: older than CloudWatch takes
        (1500, T0 + 3 * 3600),  # 2 h and more ahead of its neighbours
        (0, YEAR_9999_END_MS / 1000),
        (3000, YEAR_9999_END_MS / 1000),
        (1500, T0 - 20 * 365 * DAY),
    ],
)
def test_one_outlier_among_thousands_is_refused_wherever_it_is(where: int, bad: float) -> None:
    assert rejected([*GOOD[:where], bad, *GOOD[where:]]) == [where]


@pytest.mark.parametrize("burst", [2, 10, SET_ASIDE])
def test_bursts_of_outliers_at_the_start_middle_and_end(burst: int) -> None:
    for where in (0, 1500, len(GOOD)):
        for bad in (0.0, T0 + 30 * DAY):
            stamps = [*GOOD[:where], *[bad] * burst, *GOOD[where:]]
            assert rejected(stamps) == list(range(where, where + burst)), (where, bad)


def test_within_cloudwatchs_limits_nothing_is_refused() -> None:
    assert rejected([*GOOD[:10], T0 - 13 * DAY, *GOOD[10:]]) == []  # 13 days old: accepted
    assert rejected([*GOOD[:10], GOOD[10] + 7000, *GOOD[10:]]) == []  # < 2 h ahead
    # lines out of order by a minute (several processes writing one file)
    shuffled = [t + ((i * 7919) % 121) - 60 for i, t in enumerate(GOOD)]
    assert rejected(shuffled) == []


def test_a_recording_with_a_gap_keeps_both_sides() -> None:
    later = [T0 + 6 * 3600 + i for i in range(1000)]  # the service stopped for 6 hours
    assert rejected([*GOOD, *later]) == []
    resumed = [T0 + 5 * DAY + i for i in range(100)]  # resumed 5 days later, at the end
    assert rejected([*GOOD, *resumed]) == []


@pytest.mark.parametrize("spacing_s", [1, 600, 3600])
def test_a_long_run_keeps_every_line(spacing_s: int) -> None:
    """40 days of lines (every second would be too many for a test: up to 4000 lines at the
    given spacing, then the run continues at hourly spacing): nothing is cut, the replay refuses
    the whole run as too long instead."""
    stamps = [T0 + i * spacing_s for i in range(4000)]
    stamps += [stamps[-1] + h * 3600 for h in range(1, 40 * 24)]
    assert stamps[-1] - stamps[0] > 31 * DAY
    assert rejected(stamps) == []


def test_small_recordings() -> None:
    assert rejected([T0]) == []
    assert rejected([0.0, T0]) == []  # two lines: no majority, both kept (the window refuses)
    assert rejected([0.0, T0, T0 + 1]) == [0]
    assert rejected([T0, T0 + 1, YEAR_9999_END_MS / 1000]) == [2]
    assert rejected([0.0, 0.0, T0, T0 + 1, T0 + 2]) == [0, 1]


def test_items_without_a_timestamp_pass_at_once_and_none_is_lost() -> None:
    items: list[tuple[int, float | None]] = [(i, T0 + i) for i in range(300)]
    items[150] = (150, None)
    out = list(screen(items))
    assert sorted(i for i, _ in out) == list(range(300))
    # passed on at once, ahead of the lines still waiting for the lines after them
    assert out.index((150, None)) < 150
    assert [i for i, _ in out if i != 150] == [i for i in range(300) if i != 150]


def test_ingestion_bounds_set_outliers_aside() -> None:
    assert ingestion_bounds([]) is None and ingestion_bounds([T0]) is None
    assert NEIGHBOURS == 100
    neighbours = sorted([0.0] * SET_ASIDE + [T0] * (NEIGHBOURS - 2 * SET_ASIDE) + [9e10] * 25)
    assert ingestion_bounds(neighbours) == (T0, T0)


# -- the evaluator over a recording ---------------------------------------------------------------


def recording(n: int = 1200) -> list[str]:
    return [emf(T0 + i * 0.5, {"Latency": [500 if i >= n // 2 else 10]}) for i in range(n)]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (0, "more than 14 days before ingestion"),
        (1, "more than 14 days before ingestion"),
        ((T0 - 15 * DAY) * 1000, "more than 14 days before ingestion"),
        ((T0 + 3 * 3600) * 1000, "more than 2 hours after ingestion"),
        (YEAR_9999_END_MS, "more than 2 hours after ingestion"),
        (-1000, "negative"),
        (YEAR_9999_END_MS + 1, "after the year 9999"),
        (10**30, "after the year 9999"),
        (1e20, "after the year 9999"),
        (math.nan, "NaN or infinity"),
        (math.inf, "NaN or infinity"),
        (-math.inf, "NaN or infinity"),
        (str(T0 * 1000), "not a string"),
        (True, "not a boolean"),
        (False, "not a boolean"),
        (None, "not null"),
    ],
)
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_a_bad_timestamp_is_left_out_with_a_warning(bad: Any, reason: str, where: str) -> None:
    lines = recording()
    at = {"start": 0, "middle": len(lines) // 2, "end": len(lines)}[where]
    lines.insert(at, restamped(emf(T0, {"Latency": [10_000]}), bad))
    ev = Evaluator({"MetricAlarms": [alarm(stat="Maximum")]})
    ev.ingest(lines, source="rec.jsonl")
    assert ev.data_range == (T0, T0 + 599.5)  # the window is the run's, not the outlier's
    assert ev.stats["rejected"] == 1 and ev.stats["bad_lines"] == 0
    (warning,) = ev.rejection_warnings
    assert "1 metric values CloudWatch would reject: _aws.Timestamp" in warning
    assert reason in warning and f"rec.jsonl line {at + 1}:" in warning
    # the outlier's value (10000 ms) never reaches the alarm: its maximum is the run's own 500
    last = [e for e in ev.advance(T0 + 600) if e.alarm == "a"][-1]
    assert last.value == 500 and last.state == "ALARM"


def test_integral_floats_and_fractions_of_a_millisecond_are_times() -> None:
    lines = recording()
    lines[300] = restamped(lines[300], float(T0 * 1000 + 150_000))
    lines[301] = restamped(lines[301], T0 * 1000 + 150_500.25)
    ev = Evaluator({"MetricAlarms": [alarm(stat="SampleCount")]})
    ev.ingest(lines)
    assert ev.stats["rejected"] == 0 and ev.rejection_warnings == []


def test_a_line_without_metrics_and_a_bad_timestamp_is_only_a_bad_line() -> None:
    ev = Evaluator({"MetricAlarms": [alarm()]})
    ev.ingest([*recording(10), '{"_aws": {"Timestamp": "x", "CloudWatchMetrics": []}}'])
    assert ev.stats["bad_lines"] == 1 and ev.stats["rejected"] == 0


def test_each_recording_is_judged_on_its_own() -> None:
    """Two files a week apart, each a recording: neither is cut for the other."""
    ev = Evaluator({"MetricAlarms": [alarm()]})
    ev.ingest(recording(), source="blue")
    ev.ingest([emf(T0 + 7 * DAY + i, {"Latency": [10]}) for i in range(200)], source="green")
    assert ev.stats["rejected"] == 0 and ev.data_range == (T0, T0 + 7 * DAY + 199)


def test_live_lines_are_checked_on_their_own() -> None:
    """ingest_line/ingest_record (the rehearsal's live feed) have no lines after to judge by:
    only what is no time at all is refused there."""
    ev = Evaluator({"MetricAlarms": [alarm()]})
    ev.ingest_line(emf(T0, {"Latency": [10]}))
    ev.ingest_line(restamped(emf(T0, {"Latency": [10]}), "soon"))
    assert ev.stats["rejected"] == 1
    assert "'soon'" in ev.rejection_warnings[0] and "e.g.:" in ev.rejection_warnings[0]


def test_sample_recordings_have_no_outliers() -> None:
    lines = list(api_lines(T0, 600, rps=50, window_s=1, versions={"v1": 0.5, "v2": 0.5}))
    ev = Evaluator({"MetricAlarms": [alarm()]})
    ev.ingest(lines)
    assert ev.stats["rejected"] == 0 and ev.stats["emf_lines"] == len(lines)
