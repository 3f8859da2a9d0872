"""The evaluator reads what ``telemetry`` really writes (run in a child process: its state is global)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alarms import Evaluator

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import telemetry
telemetry.configure(service="points-service", version="v2", storage_resolution=1,
                    flush_interval_s=1, json_logs=False)
for v in [10, 20, 30, 40, 1000] * 20:
    telemetry.put_metric("Latency", v)
telemetry.shutdown()
"""


@pytest.fixture(scope="module")
def telemetry_lines() -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [x for x in proc.stdout.splitlines() if '"_aws"' in x]


def test_statistics_of_telemetry_histograms(telemetry_lines: list[str]) -> None:
    assert telemetry_lines
    ts = min(json.loads(x)["_aws"]["Timestamp"] for x in telemetry_lines) / 1000
    dims = [{"Name": "Service", "Value": "points-service"}, {"Name": "Version", "Value": "v2"}]

    def alarm(name: str, stat: str) -> dict:
        a = {
            "AlarmName": name,
            "Namespace": "SafeDeploy",
            "MetricName": "Latency",
            "Dimensions": dims,
            "Unit": "Milliseconds",
            "Period": 10,
            "EvaluationPeriods": 1,
            "Threshold": 250.0,
            "ComparisonOperator": "GreaterThanThreshold",
        }
        a["ExtendedStatistic" if stat.startswith("p") else "Statistic"] = stat
        return a

    stats = ["SampleCount", "Average", "Maximum", "Minimum", "p50", "p90"]
    ev = Evaluator({"MetricAlarms": [alarm(s, s) for s in stats]}, start=ts)
    for line in telemetry_lines:
        ev.ingest_line(line)
    period = int(ts // 10) * 10
    evals = ev.advance(period + 10)
    value = {e.alarm: e.value for e in evals if e.datapoints[-1][0] == period}
    assert value["SampleCount"] == 100
    assert value["Average"] == pytest.approx(220.0)  # exact Sum / Count, not bucket values
    assert value["Maximum"] == 1000.0 and value["Minimum"] == 10.0
    assert value["p50"] == pytest.approx(30.0, rel=0.01)  # histogram values: <= 1 % error
    assert value["p90"] == pytest.approx(1000.0, rel=0.01)
    assert ev.states["p90"] == "ALARM" and ev.states["p50"] == "OK"
