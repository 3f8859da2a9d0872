"""Green judged against blue: the ratio alarms synthesised, in the template, and evaluated offline
on EMF (missing blue data, zero denominators)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from alarms import Evaluator, parse_spec, rollback_alarm_names, synth
from alarms._sample_emf import api_lines

LATENCY = "points-service-green-vs-blue-latency-avg"
ERRORS = "points-service-green-vs-blue-error-rate"
T0 = 1_800_000_000 - 1_800_000_000 % 3600


def _by_name(defs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["AlarmName"]: a for a in defs["MetricAlarms"]}


def test_ratio_alarms_are_metric_math_rollback_triggers(rehearsal_defs) -> None:
    alarms = _by_name(rehearsal_defs)
    lat, err = alarms[LATENCY], alarms[ERRORS]
    assert lat["Metrics"][0]["Expression"] == "g / (b + 10) * (b / b)"
    assert err["Metrics"][0]["Expression"] == "(100 * ge / gr) / (100 * be / br + 1)"
    for alarm in (lat, err):
        assert alarm["TreatMissingData"] == "notBreaching"
        assert "no datapoint (not breaching)" in alarm["AlarmDescription"]
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 2)
        versions = {
            d["Value"]
            for q in alarm["Metrics"][1:]
            for d in q["MetricStat"]["Metric"]["Dimensions"]
            if d["Name"] == "Version"
        }
        assert versions == {"v1", "v2"}  # both versions, resolved from the spec
        assert {q["MetricStat"]["Period"] for q in alarm["Metrics"][1:]} == {10}
    assert (lat["Threshold"], err["Threshold"]) == (3.0, 2.0)
    assert {LATENCY, ERRORS} <= set(rollback_alarm_names(rehearsal_defs))


def test_spec_sets_the_ratios_or_turns_them_off() -> None:
    spec = parse_spec({"service": "s", "baseline": {"latency_ratio": 2, "latency_floor_ms": 50}})
    alarms = _by_name(synth(spec, "json", "production"))
    lat = alarms["s-green-vs-blue-latency-avg"]
    assert lat["Threshold"] == 2.0 and lat["Metrics"][0]["Expression"] == "g / (b + 50) * (b / b)"
    assert lat["Metrics"][1]["MetricStat"]["Period"] == 60
    off = synth(parse_spec({"service": "s", "baseline": False}), "json")
    assert not [n for n in _by_name(off) if "vs-blue" in n]
    with pytest.raises(ValueError, match=r"baseline\.latency_ratio"):
        parse_spec({"service": "s", "baseline": {"latency_ratio": 0}})
    # A ratio <= 1 fires on a green no worse than blue: a rollback of every healthy deployment.
    for key in ("latency_ratio", "error_rate_ratio"):
        for bad in (0.5, 1, 1.0):
            with pytest.raises(ValueError, match=rf"baseline\.{key}: must be > 1"):
                parse_spec({"service": "s", "baseline": {key: bad}})
    with pytest.raises(ValueError, match=r"baseline\.error_rate_floor_percent: must be <= 100"):
        parse_spec({"service": "s", "baseline": {"error_rate_floor_percent": 1000}})
    with pytest.raises(ValueError, match=r"baseline\.ratio"):
        parse_spec({"service": "s", "baseline": {"ratio": 2}})


def test_ratio_alarms_in_the_template_are_cfn_lint_clean(spec, tmp_path: Path) -> None:
    template = synth(spec, format="cloudformation", profile="production")
    resources = template["Resources"].values()
    names = {r["Properties"].get("AlarmName") for r in resources}
    assert {LATENCY, ERRORS} <= names
    path = tmp_path / "alarms.json"
    path.write_text(json.dumps(template))
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    errors = [line for line in proc.stdout.splitlines() if re.search(r":E\d{4}:", line)]
    assert proc.returncode in (0, 4) and not errors, proc.stdout + proc.stderr


def _replay(defs: dict[str, Any], lines: list[str], seconds: float) -> dict[str, list]:
    ev = Evaluator(defs, start=T0)
    for line in lines:
        ev.ingest_line(line)
    out: dict[str, list] = {LATENCY: [], ERRORS: []}
    for e in ev.advance(T0 + seconds):
        if e.alarm in out:
            out[e.alarm].append(e)
    return out


def _lines(seconds: float, **kw: Any) -> list[str]:
    return list(api_lines(T0, seconds, window_s=1, high_resolution=True, **kw))


def test_a_green_3x_slower_than_a_fast_blue_alarms_below_the_static_threshold(
    rehearsal_defs,
) -> None:
    # blue 30 ms, green 4x (typical latencies; the sample histograms average a little above):
    # under the 250 ms static threshold, above 3 x (blue + 10 ms).
    slow = _lines(60, versions={"v1": 0.9, "v2": 0.1},
                  latency_ms=lambda t, v: 120.0 if v == "v2" else 30.0)  # fmt: skip
    evals = _replay(rehearsal_defs, slow, 60)
    assert evals[LATENCY][-1].state == "ALARM"
    assert evals[LATENCY][-1].value > 3
    ev = Evaluator(rehearsal_defs, start=T0)
    for line in slow:
        ev.ingest_line(line)
    ev.advance(T0 + 60)
    assert ev.states["points-service-green-latency-avg"] == "OK"  # the static alarm misses it
    same = _lines(60, versions={"v1": 0.9, "v2": 0.1}, latency_ms=lambda t, v: 40.0)
    assert _replay(rehearsal_defs, same, 60)[LATENCY][-1].state == "OK"


def test_missing_blue_data_is_no_datapoint_not_a_breach(rehearsal_defs) -> None:
    # Green at 100 %, slow and failing: no blue series, so neither ratio has a datapoint and
    # both stay OK (notBreaching); the static alarms are the ones to catch this.
    only_green = _lines(60, versions={"v2": 1.0}, latency_ms=lambda t, v: 900.0,
                        error_ratio=lambda t, v: 0.5)  # fmt: skip
    evals = _replay(rehearsal_defs, only_green, 60)
    for name in (LATENCY, ERRORS):
        assert evals[name], name
        assert {e.state for e in evals[name]} == {"OK"}, name
        assert all(e.value is None for e in evals[name])


def test_error_rate_ratio_with_zero_blue_errors_and_zero_green_requests(rehearsal_defs) -> None:
    # Blue has requests and no errors: the floor (1 point) is the denominator, 20 % / 1 = 20.
    failing = _lines(60, versions={"v1": 0.9, "v2": 0.1},
                     error_ratio=lambda t, v: 0.2 if v == "v2" else 0.0)  # fmt: skip
    evals = _replay(rehearsal_defs, failing, 60)
    assert evals[ERRORS][-1].state == "ALARM"
    assert evals[ERRORS][-1].value == pytest.approx(20.0, rel=0.1)
    # Green without requests (gr = 0): no datapoint, not breaching.
    idle = _lines(60, versions={"v1": 1.0})
    assert {e.state for e in _replay(rehearsal_defs, idle, 60)[ERRORS]} == {"OK"}
