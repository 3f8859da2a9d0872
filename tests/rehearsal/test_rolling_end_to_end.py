"""The worker's rolling update end to end through ``python -m rehearsal --target worker``: moto's
server, the producer, real ``python -m worker`` tasks, the worker alarms from the packaged spec;
plus the worker target's bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rehearsal.supervisor import group_pids
from tests.rehearsal.test_end_to_end import _alarm_states
from tests.support.processes import ROOT

RESULT_KEYS = {
    "target",
    "cloudwatch_rejects",
    "scenario",
    "deployment",
    "outcome",
    "alarm",
    "alarm_time_s",
    "round_at_decision",
    "replaced_at_decision",
    "new_tasks_at_decision",
    "tasks",
    "orders_produced",
    "harm",
    "exactly_once",
}


def _rehearsal(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rehearsal", "--target", "worker", "--no-progress", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _no_children_left(out: Path) -> None:
    pgids = json.loads((out / "run.json").read_text())["children"]
    assert "moto" in pgids and any(n.startswith("task") for n in pgids)
    deadline = time.monotonic() + 10
    while any(group_pids(p) for p in pgids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {name: group_pids(p) for name, p in pgids.items() if group_pids(p)}
    assert not left, f"child processes still running: {left}"


@pytest.mark.slow
def test_regression_is_rolled_back_in_the_first_round_and_credits_exactly_once(
    tmp_path: Path,
) -> None:
    out = tmp_path / "regression"
    # 2 tasks, 100 % / 150 %: one new task first, 40 s before the next round at time scale 1.
    # A 1 s stopTimeout: the slow new tasks are SIGKILLed mid-job, with messages in flight.
    proc = _rehearsal(
        "--scenario", "regression", "--tasks", "2", "--rate", "10", "--stop-timeout", "1",
        "--out", str(out), "--expect", "rolled_back",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ROLLED BACK" in proc.stdout and "Exactly-once OK" in proc.stdout

    result = json.loads((out / "result.json").read_text())
    assert set(result) == RESULT_KEYS
    assert result["target"] == "worker" and result["outcome"] == "rolled_back"
    assert result["deployment"]["rounds"] == [[0, 1], [1, 1], [1, 0]]
    run = json.loads((out / "run.json").read_text())
    assert result["alarm"] in run["rollback_alarms"]
    # caught while the first new task ran, before any old task was replaced
    assert result["round_at_decision"] == 1 and result["replaced_at_decision"] == 0
    assert run["rollback_rounds"] == [[1, 0]]
    # the rollback: the new task stopped, the old revision at the desired count again
    last = result["tasks"][-1][1]
    assert last.get("v2", 0) == 0 and last["v1"] == 2
    assert run["tasks_killed"], "the slow task should have been SIGKILLed mid-job"
    assert result["exactly_once"] is True and run["exactly_once"]["ok"]
    assert run["exactly_once"]["produced"] == result["orders_produced"] > 100
    h = result["harm"]
    assert h["credited_twice"] == 0 and h["never_credited"] == 0
    # Credits are the ledger's: an order whose credit line a SIGKILL lost is credited at the
    # ledger's time, not "never credited". Each grant writes one "credited" line, so the orders
    # without one are exactly those whose line was lost.
    assert h["credits_from"] == "ledger"
    logged = sum(run["credits"]["credited_by_version"].values())
    assert h["credit_log_lines_missing"] == result["orders_produced"] - logged
    assert h["delay_max_s"] is not None
    assert "ALARM" in _alarm_states(out)[result["alarm"]]
    emf = [json.loads(line) for line in (out / "emf.jsonl").read_text().splitlines()]
    assert {"v1", "v2"} <= {r.get("Version") for r in emf}
    assert {r.get("Service") for r in emf} == {"points-worker"}
    report = (out / "report.html").read_text()
    assert "<svg" in report and "rolled_back" in report and "Exactly-once OK" in report
    assert "credit times from the ledger" in report
    _no_children_left(out)

    replay = subprocess.run(
        [sys.executable, "-m", "alarms", "replay", "--alarms", str(out / "alarms.json"),
         "--emf", str(out / "emf.jsonl"), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    fired = [
        json.loads(line)
        for line in replay.stdout.splitlines()
        if line.startswith("{") and '"state": "ALARM"' in line
    ]
    assert any(ev.get("alarm") == result["alarm"] for ev in fired)


@pytest.mark.slow
def test_healthy_rolling_update_completes(tmp_path: Path) -> None:
    out = tmp_path / "healthy"
    # time scale 0.25: 10 s per round; bake 20 s scaled to 5 s
    proc = _rehearsal(
        "--scenario", "healthy", "--tasks", "2", "--rate", "10", "--time-scale", "0.25",
        "--bake", "20", "--out", str(out), "--expect", "succeeded",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCEEDED" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["outcome"] == "succeeded" and result["alarm"] is None
    assert result["replaced_at_decision"] == 2
    last = result["tasks"][-1][1]
    assert last.get("v1", 0) == 0 and last["v2"] == 2
    run = json.loads((out / "run.json").read_text())
    states = _alarm_states(out)
    for name in run["rollback_alarms"]:
        assert "ALARM" not in states.get(name, set()), name
    # the new version was judged on data, not only "no data"
    new_busy = next(n for n in run["rollback_alarms"] if n.endswith("new-utilization"))
    assert "OK" in states[new_busy]
    assert result["exactly_once"] is True
    assert result["harm"]["credited_twice"] == 0
    assert run["credits"]["credited_by_version"]["v2"] > 0
    _no_children_left(out)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rps", "10"], "--rps is an option of --target api"),
        (["--deployment-config", "ECSAllAtOnce"], "--deployment-config"),
        (["--tasks", "0"], "--tasks"),
        (["--tasks", "4", "--min-healthy-percent", "100", "--max-percent", "100"],
         "never progress"),
        (["--max-percent", "250"], "--max-percent"),
        (["--min-healthy-percent", "x"], "--min-healthy-percent"),
        (["--rate", "0"], "--rate"),
        # above the bounds: the producer's schedule overflowed (a traceback, no orders), and a
        # worker task refuses WORKER_SIMULATED_WORK_MS above 600,000 at start
        (["--rate", "1e308"], "--rate: expected a number >= 0.1 and <= 1000"),
        (["--rate", "1e-300"], "--rate: expected a number >= 0.1"),  # no order to measure
        (["--scenario", "regression", "--new-work-ms", "1e308"], "--new-work-ms"),
        (["--new-work-ms", "600001"], "--new-work-ms"),
        # ECS's own limit; 1e308 overflowed the wait for the stopped tasks
        (["--stop-timeout", "121"], "--stop-timeout: expected an integer 1-120"),
        (["--stop-timeout", "1e-9"], "--stop-timeout: expected an integer"),  # whole seconds
        (["--stop-timeout", "1.5"], "--stop-timeout: expected an integer"),  # ECS: an Integer
        (["--delay-objective", "1e300"], "--delay-objective"),  # beyond SQS's retention
        # ECS's 40 s healthy wait x 1e308 is inf: a run that never ends, Infinity in run.json;
        # 1e300 x a 1e10 s bake, or a 1e300 s bake: practically never ending
        (["--time-scale", "1e308"], "--time-scale: expected a number >= 0.001 and <= 1000"),
        (["--time-scale", "1e300", "--bake", "1e10"], "--time-scale"),
        (["--bake", "1e300"], "--bake: expected a number >= 0 and <= 172800"),
        (["--time-scale", "1e-300"], "--time-scale"),  # over before anything was measured
        (["--spec", "no/such/spec.yaml"], "does not exist"),
        (["--blue-env", "A=1"], "--blue-env is an option of --target api"),
        (["--allow-one-way-door"], "--allow-one-way-door"),
        (["--scenario", "breaking"], "not a worker scenario"),
    ],
)  # fmt: skip
def test_bad_worker_arguments_exit_2_with_one_line(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    proc = _rehearsal("--scenario", "healthy", "--out", str(tmp_path / "o"), *args, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "o" / "run.json").exists()


def test_worker_options_are_refused_for_the_api(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rehearsal", "--scenario", "healthy", "--tasks", "3",
         "--out", str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rehearsal: error: --tasks is an option of --target worker, not --target api (see --help)"
    ]


def test_spec_without_worker_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("service: svc\nworker: false\n")
    proc = _rehearsal("--scenario", "healthy", "--spec", str(spec), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "has no worker section" in proc.stderr
