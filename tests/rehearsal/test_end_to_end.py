"""Every scenario end to end through ``python -m rehearsal``: real gunicorn, real Locust, the
alarms generated from the packaged spec; plus Ctrl-C and bad arguments."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rehearsal import traces
from rehearsal.listener import SERVED_BY
from rehearsal.supervisor import group_pids
from tests.support.processes import ROOT

RESULT_KEYS = {
    "scenario",
    "deployment_config",
    "cloudwatch_rejects",
    "outcome",
    "alarm",
    "alarm_time_s",
    "traffic",
    "requests",
    "errors",
    "rollback_safe",
    "data_safety",
    "versions",
    "one_way_door_guard",
    "harm",
}


def _rehearsal(
    *args: str, timeout: float = 240, tmpdir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmpdir)} if tmpdir is not None else None
    return subprocess.run(
        [sys.executable, "-m", "rehearsal", "--no-progress", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# What must never be in a rehearsal's out dir: private key material and bearer tokens.
SECRETS = re.compile(
    rb"PRIVATE KEY|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.|Bearer [A-Za-z0-9_.-]{20,}"
    rb'|"d"\s*:\s*"'  # a JWK's private member
)


def _no_secrets(out: Path, tmpdir: Path) -> None:
    """Nothing under ``out`` holds key material or a token, and the run's key directory (under
    its TMPDIR) is gone."""
    for path in out.rglob("*"):
        if path.is_file():
            found = SECRETS.search(path.read_bytes())
            assert found is None, f"{path.name} holds {found.group(0)[:12]!r}"
    left = list(tmpdir.glob("rehearsal-keys-*"))
    assert not left, "the rehearsal's key directory was left behind"


def _no_children_left(out: Path) -> None:
    pgids = json.loads((out / "run.json").read_text())["children"]
    assert set(pgids) == {"blue", "green", "locust"}
    deadline = time.monotonic() + 10
    while any(group_pids(p) for p in pgids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {name: group_pids(p) for name, p in pgids.items() if group_pids(p)}
    assert not left, f"child processes still running: {left}"


def _alarm_states(out: Path) -> dict[str, set[str]]:
    states: dict[str, set[str]] = {}
    for line in (out / "evaluations.jsonl").read_text().splitlines():
        ev = json.loads(line)
        states.setdefault(ev["alarm"], set()).add(ev["state"])
    return states


@pytest.mark.slow
def test_regression_is_rolled_back_at_the_first_step(tmp_path: Path) -> None:
    out, tmpdir = tmp_path / "regression", tmp_path / "tmp"
    tmpdir.mkdir()
    # Time scale 1: the first step (10 %) lasts a full minute, so only detection ends it. The
    # alarms alone (--no-judge): this run checks their path, live and replayed; the judge's
    # rollback is run end to end by tests/rehearsal/test_compare.py.
    proc = _rehearsal(
        "--scenario", "regression", "--time-scale", "1", "--out", str(out),
        "--expect", "rolled_back", "--no-judge", tmpdir=tmpdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ROLLED BACK" in proc.stdout
    assert str(out / "report.html") in proc.stdout

    result = json.loads((out / "result.json").read_text())
    assert set(result) == RESULT_KEYS
    assert result["outcome"] == "rolled_back"
    assert result["scenario"] == "regression"
    # the services' own EMF passes CloudWatch's rules (telemetry sanitises what the app gives)
    assert result["cloudwatch_rejects"] == {"count": 0, "warnings": []}
    assert result["deployment_config"] == "CodeDeployDefault.ECSLinear10PercentEvery1Minutes"
    run = json.loads((out / "run.json").read_text())
    assert result["alarm"] in run["rollback_alarms"]
    assert run["green_percent_at_alarm"] == 10, "caught at the first traffic step"
    # Traffic: blue only, then 10 % green, then back to 0 at the decision.
    percents = [p for _, p in result["traffic"]]
    assert percents == [0, 10, 0]
    assert result["traffic"][-1][0] == pytest.approx(result["alarm_time_s"], abs=0.5)
    assert result["requests"] > 100
    assert result["errors"] <= result["requests"] * 0.01
    # Harm: green's refused and slow requests, as the listener recorded them.
    harm = result["harm"]
    assert harm["harmed_requests"] == harm["by_version"]["green"]["harmed"] > 0
    assert 0 < harm["harmed_users"] <= harm["harmed_requests"]
    assert harm["total"]["requests"] == result["requests"]
    recorded = (out / "requests.jsonl").read_text().splitlines()
    assert len(recorded) == result["requests"]
    assert "Harm by green:" in proc.stdout and "Harm by green:" in (out / "report.html").read_text()

    # Blue still serves every balance, including the points green granted.
    safety = run["safety"]
    assert safety["ok"], safety
    assert safety["served_by"] == "blue"
    assert safety["writes_by_other_version"] > 0

    assert "ALARM" in _alarm_states(out)[result["alarm"]]
    emf = (out / "emf.jsonl").read_text().splitlines()
    assert emf and all("_aws" in json.loads(line) for line in emf)
    versions = {json.loads(line).get("Version") for line in emf}
    assert {"v1", "v2"} <= versions
    assert (out / "locust_stats.csv").read_text().count("\n") > 2
    # Every request carried a token the versions accepted (and only the customer's own).
    failures = (out / "locust_failures.csv").read_text()
    assert "401" not in failures and "403" not in failures, failures
    _no_secrets(out, tmpdir)
    report = (out / "report.html").read_text()
    assert "<svg" in report and "rolled_back" in report
    assert "http://" not in report.split("<svg", 1)[0].replace("http://127.0.0.1", "")
    _no_children_left(out)
    _check_explanation(out, proc.stdout, report, result["alarm"], "Latency Average of v2")

    # emf.jsonl replays offline with the same alarms and fires the same alarm.
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


def _check_explanation(out: Path, stdout: str, report: str, alarm: str, because: str) -> None:
    """The console's ROLLBACK reason is the report's first "why" line; the report's requests are
    green's, their trace ids in traces.jsonl (OTLP JSON) and in green.log; a limited request's
    rate_limiter child span covers its wait."""
    (why_line,) = [x for x in stdout.splitlines() if x.strip().startswith(f"why: {alarm}")]
    why_line = why_line.strip().removeprefix("why: ")
    section = report.split('<div class="why">', 1)[1].split("</div>", 1)[0]
    assert html.escape(why_line) in section
    assert because in why_line
    read = traces.read(out / "traces.jsonl")
    assert read.unreadable_lines == 0
    by_trace = read.by_trace()
    green_log = (out / "green.log").read_text()
    shown = set(re.findall(r"1-[0-9a-f]{8}-[0-9a-f]{24}", section))
    assert shown
    for xray in shown:
        spans = by_trace[xray[2:10] + xray[11:]]
        assert any(s.kind == "SERVER" and s.version == "v2" for s in spans)
        assert f'"trace_id": "{xray}"' in green_log
    assert "waiting in the rate limiter" in section
    # every row names a user: the ledger's, or (a request refused before its body was read) the
    # authenticated caller
    for row in re.findall(r"<tr>(.*?)</tr>", section)[1:]:
        cells = re.findall(r"<td>(.*?)</td>", row)
        assert not cells or cells[-1] != "-", row
    limited = [
        s for s in read.spans if s.name == "rate_limiter" and s.attributes["rate_limit.admitted"]
    ]
    waited = [s for s in limited if s.attributes["rate_limit.wait_ms"] > 100]
    assert waited, "green's limiter made some requests wait"
    for span in waited:
        assert span.duration_ms >= span.attributes["rate_limit.wait_ms"]


@pytest.mark.slow
def test_the_judges_rollback_is_explained_with_the_requests_it_judged(tmp_path: Path) -> None:
    # The packaged defaults: the judge is a rollback trigger besides the alarms, and usually
    # the first to fire; its verdict and the requests of the window it judged explain it.
    out, tmpdir = tmp_path / "judged", tmp_path / "tmp"
    tmpdir.mkdir()
    proc = _rehearsal(
        "--scenario", "regression", "--time-scale", "1", "--out", str(out),
        "--expect", "rolled_back", tmpdir=tmpdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out / "result.json").read_text())
    report = (out / "report.html").read_text()
    if result["alarm"] != "judge":
        pytest.skip(f"an alarm ({result['alarm']}) fired before the judge this time")
    _check_explanation(out, proc.stdout, report, "judge", "judge Fail")
    assert "judged window" in report.split('<div class="why">', 1)[1].split("</div>", 1)[0]
    _no_children_left(out)


@pytest.mark.slow
def test_healthy_deployment_succeeds(tmp_path: Path) -> None:
    out = tmp_path / "healthy"
    proc = _rehearsal(
        "--scenario", "healthy", "--deployment-config", "custom:canary:10:20",
        "--time-scale", "1", "--bake", "15", "--out", str(out), "--expect", "succeeded",
        # Half the demo's load: the suite may share the machine with other tests.
        "--rps", "20",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCEEDED" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert set(result) == RESULT_KEYS
    assert result["outcome"] == "succeeded"
    assert result["alarm"] is None and result["alarm_time_s"] is None
    assert [p for _, p in result["traffic"]] == [0, 10, 100]
    assert result["errors"] <= result["requests"] * 0.01
    run = json.loads((out / "run.json").read_text())
    states = _alarm_states(out)
    for name in run["rollback_alarms"]:
        assert "ALARM" not in states.get(name, set()), name
    # Green evaluated with data: its latency alarm saw OK, not only "no data".
    green_latency = [n for n in run["rollback_alarms"] if "green-latency" in n]
    assert green_latency and all("OK" in states[n] for n in green_latency)
    safety = run["safety"]
    assert safety["ok"] and safety["served_by"] == "green"
    assert safety["writes_by_other_version"] > 0
    _no_children_left(out)


@pytest.mark.slow
def test_breaking_change_rolled_back_across_the_one_way_door_is_not_safe(tmp_path: Path) -> None:
    out = tmp_path / "breaking"
    proc = _rehearsal(
        "--scenario", "breaking", "--time-scale", "1", "--out", str(out), "--rps", "20",
        "--expect", "rolled_back",
    )  # fmt: skip
    # Rolled back as expected, but not safely: its own exit status.
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "ONE-WAY DOOR" in proc.stdout and "Data safety FAILED on blue" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert set(result) == RESULT_KEYS
    assert result["outcome"] == "rolled_back"
    assert result["versions"] == {"blue": "v1", "green": "v3"}
    assert result["rollback_safe"] is False
    guard = result["one_way_door_guard"]
    assert guard["ok"] is False and guard["overridden"] is True
    assert "deploy the prepare version first" in guard["message"]
    safety = result["data_safety"]
    assert not safety["ok"] and safety["unservable_count"] > 0
    # Each user blue cannot serve is named with its format-2 records, and those are exactly
    # the records green wrote in format 2 (read from the store directly).
    with contextlib.closing(sqlite3.connect(out / "points.db")) as conn:
        format_2 = dict(conn.execute("SELECT entry_id, user_id FROM ledger WHERE format = 2"))
    assert format_2
    named = {r: u["user_id"] for u in safety["unservable_users"] for r in u["records"]}
    assert named.items() <= format_2.items() and set(named.values()) == set(format_2.values())
    for user in safety["unservable_users"]:
        assert user["status"] == 503 and user["formats_found"] == [2]
        assert any("by green" in w for w in user["acknowledged"])
    report = (out / "report.html").read_text()
    assert "One-way door." in report and "unreadable records" in report
    _no_children_left(out)


@pytest.mark.slow
def test_two_phase_deployment_rolls_back_safely_to_the_prepare_version(tmp_path: Path) -> None:
    out = tmp_path / "two-phase"
    proc = _rehearsal(
        "--scenario", "two-phase", "--deployment-config", "custom:canary:10:20",
        "--time-scale", "1", "--bake", "10", "--rps", "20", "--out", str(out),
        "--expect", "rolled_back",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert set(result) == RESULT_KEYS | {"phases"}
    prepare, activate = result["phases"]
    assert (prepare["phase"], prepare["versions"]) == ("prepare", {"blue": "v1", "green": "v2"})
    assert prepare["outcome"] == "succeeded" and prepare["one_way_door_guard"]["ok"]
    assert (activate["phase"], activate["versions"]) == ("activate", {"blue": "v2", "green": "v3"})
    assert activate["outcome"] == "rolled_back" and activate["one_way_door_guard"]["ok"]
    # The rollback to v2 is safe: v2 serves what v3 wrote in format 2, and no write
    # acknowledged in either deployment is missing.
    assert result["rollback_safe"] is True
    safety = activate["data_safety"]
    assert safety["ok"] and safety["served_by"] == "blue" and safety["problem_count"] == 0
    assert safety["writes_by_other_version"] > 0
    # v3's own writes (green here) are among them, and so is every write of the first deployment.
    assert safety["writes_by_target"]["green"] > 0
    assert safety["writes_by_target"].keys() >= {"v1", "v2", "blue", "green"}
    first = prepare["data_safety"]["writes_checked"]
    assert first > 0 and safety["writes_checked"] > first  # both deployments' writes
    assert safety["writes_by_target"]["v1"] + safety["writes_by_target"]["v2"] == first
    with contextlib.closing(sqlite3.connect(out / "points.db")) as conn:
        formats = dict(conn.execute("SELECT format, count(*) FROM ledger GROUP BY format"))
        ledger_users = {u for (u,) in conn.execute("SELECT DISTINCT user_id FROM ledger")}
    assert formats.get(1, 0) > 0 and formats.get(2, 0) > 0
    assert safety["users"] <= len(ledger_users)
    for phase in ("1-prepare", "2-activate"):
        assert (out / phase / "report.html").exists()
    assert "2-activate/report.html" in (out / "report.html").read_text()


@pytest.mark.slow
def test_ctrl_c_stops_every_child(tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rehearsal", "--no-progress", "--scenario", "healthy",
         "--time-scale", "1", "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (out / "run.json").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        started = json.loads((out / "run.json").read_text())
        assert all(group_pids(p) for p in started["children"].values())
        # Anyone can curl the listener during the run; it names the version that answered.
        listener = started["listener"]
        with urllib.request.urlopen(f"{listener}/version", timeout=10) as resp:
            assert resp.headers[SERVED_BY] == "blue"
            assert json.loads(resp.read())["version"] == "v1"
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    _no_children_left(out)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scenario", "broken"], "--scenario"),
        (["--scenario", "healthy", "--time-scale", "0"], "--time-scale"),
        (["--scenario", "healthy", "--time-scale", "fast"], "--time-scale"),
        (["--scenario", "healthy", "--deployment-config", "CodeDeployDefault.Nope"], "Nope"),
        (["--scenario", "healthy", "--deployment-config", "custom:linear:0:60"], "percent"),
        (["--scenario", "healthy", "--expect", "maybe"], "--expect"),
        (["--scenario", "healthy", "--spec", "/nonexistent/spec.yaml"], "spec"),
        (["--scenario", "healthy", "--port", "70000"], "--port"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    proc = _rehearsal(*args, "--out", str(tmp_path / "x"), timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert not (tmp_path / "x").exists()


def test_a_port_in_use_or_an_unusable_out_dir_exits_2_before_any_child_starts(
    tmp_path: Path,
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _rehearsal(
            "--scenario", "healthy", "--port", str(port), "--out", str(tmp_path / "x"), timeout=60
        )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--port" in lines[0] and "in use" in lines[0], proc.stderr
    assert not (tmp_path / "x").exists()

    (tmp_path / "file").write_text("")
    proc = _rehearsal("--scenario", "healthy", "--out", str(tmp_path / "file" / "sub"), timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0], proc.stderr


def test_a_bad_spec_exits_2_naming_the_field(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("service: points-service\nlatency:\n  threshold_ms: -3\n")
    proc = _rehearsal("--scenario", "healthy", "--spec", str(spec), "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "latency.threshold_ms" in lines[0], proc.stderr
