"""Rehearsal goals, measured on this machine (not timed tests).

* Detection: the demo's regression run (``make demo`` settings): seconds from green first taking
  traffic to the rollback decision (scaled time, as the rehearsal runs it) and green's traffic
  share at that moment; the regression must be caught at the first traffic step. Also the
  demo's wall-clock time end to end (target: <= 3 minutes).
  ``REHEARSAL_BENCH_REGRESSION_RUNS`` runs (default 3).
* The listener next to a direct connection to the same gunicorn: requests/s and latency.
* Harm: requests green harmed (failed, refused or slower than the spec's latency objective, as
  clients saw them) in each of the demo's regression runs, median of them; target <= 25.
* False rollbacks: the healthy scenario run ``REHEARSAL_BENCH_HEALTHY_RUNS`` times (default 10),
  packaged defaults (alarms and the judge), at a short time scale: must never roll back; the
  judge's own false rollbacks are counted apart.

Each run is ``python -m rehearsal`` in a subprocess, exactly as a user runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.environment_variables import (
    REHEARSAL_BENCH_HEALTHY_RUNS,
    REHEARSAL_BENCH_REGRESSION_RUNS,
)
from points.environment_variables import POINTS_DB_PATH
from sample_api import environment_variables as api_env

ROOT = Path(__file__).resolve().parents[1]
#: The healthy runs: a canary (10 % for 5 minutes, then 100 %) at a twentieth of real time, with
#: a 10 s bake at 100 % green, so each run sees green at both shares under the full load (about
#: 40 s a run: 10 runs stay under 8 minutes).
HEALTHY_ARGS = [
    "--deployment-config",
    "CodeDeployDefault.ECSCanary10Percent5Minutes",
    "--time-scale",
    "0.05",
    "--bake",
    "200",
]


def _run(scenario: str, out: Path, *extra: str) -> tuple[dict[str, Any], dict[str, Any], float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "rehearsal", "--no-progress", "--scenario", scenario,
         "--out", str(out), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if not (out / "result.json").exists():
        raise RuntimeError(f"rehearsal {scenario} failed ({proc.returncode}): {proc.stderr[-500:]}")
    result = json.loads((out / "result.json").read_text())
    details = json.loads((out / "run.json").read_text())
    return result, details, elapsed


def detection(tmp: Path, runs: int) -> int:
    """Run the demo's regression ``runs`` times; return how many were caught at the first step."""
    caught = 0
    times, walls, harmed = [], [], []
    first_len = float("nan")
    for i in range(runs):
        result, details, elapsed = _run("regression", tmp / f"regression-{i}")
        steps = details["schedule"]["steps"]
        first_step = steps[0]
        first_len = steps[1][0] - steps[0][0] if len(steps) > 1 else float("nan")
        share = details.get("green_percent_at_alarm")
        first = result["outcome"] == "rolled_back" and share == first_step[1]
        caught += first
        walls.append(elapsed)
        if result["alarm_time_s"] is not None:
            times.append(result["alarm_time_s"])
        safety = details.get("safety") or {}
        harm = result["harm"]
        harmed.append(harm["harmed_requests"])
        print(
            f"  run {i + 1}: {harm['harmed_requests']} requests harmed by green "
            f"({harm['harmed_users']} users); "
            f"{result['outcome']} by {result['alarm']} {result['alarm_time_s']} s "
            f"after green first took traffic, at green {share} % "
            f"({'first step' if first else 'NOT the first step'}); "
            f"{result['requests']} requests, {result['errors']} server errors; "
            f"safety {'ok' if safety.get('ok') else 'FAILED'} "
            f"({safety.get('writes_by_other_version')} green writes served by blue); "
            f"{elapsed:.0f} s wall clock"
        )
    if times:
        print(
            f"regression (make demo settings): detection {min(times):.1f} / "
            f"{sorted(times)[len(times) // 2]:.1f} / {max(times):.1f} s (min/median/max) after "
            f"green first took traffic; first step lasts {first_len:.0f} s scaled; caught at the first "
            f"step in {caught}/{runs} runs; make demo wall clock {max(walls):.0f} s at most "
            "(target <= 180 s)"
        )
    if harmed:
        print(
            f"harm of a bad deployment (make demo settings): median {sorted(harmed)[len(harmed) // 2]}"
            f" harmed requests served by green (runs: {', '.join(map(str, harmed))}; target <= 25)"
        )
    return caught


def false_rollbacks(tmp: Path, runs: int) -> int:
    rolled_back = by_judge = 0
    if runs <= 0:
        return 0
    times = []
    for i in range(runs):
        result, _details, elapsed = _run("healthy", tmp / f"healthy-{i}", *HEALTHY_ARGS)
        times.append(elapsed)
        if result["outcome"] != "succeeded":
            rolled_back += 1
            by_judge += result["alarm"] == "judge"
            print(f"  run {i + 1}: ROLLED BACK by {result['alarm']} at {result['alarm_time_s']} s")
    print(
        f"healthy ({' '.join(HEALTHY_ARGS)}): {runs - rolled_back}/{runs} succeeded, "
        f"{rolled_back} false rollbacks (target 0), {by_judge} of them by the judge; "
        f"{sum(times) / max(runs, 1):.0f} s per run"
    )
    return rolled_back


def _hammer(port: int, threads: int, per_thread: int) -> tuple[float, list[float]]:
    """``threads`` keep-alive clients each sending ``per_thread`` GET /healthz; (req/s, ms list)."""
    import http.client
    import threading

    latencies: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for _ in range(per_thread):
            t = time.perf_counter()
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            mine.append((time.perf_counter() - t) * 1000)
        conn.close()
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(latencies) / (time.perf_counter() - started), sorted(latencies)


def listener_overhead(tmp: Path, threads: int = 8, per_thread: int = 400) -> None:
    """The listener next to a direct connection, same gunicorn, same run."""
    from rehearsal.listener import WeightedListener
    from rehearsal.runner import ROOT as PKG_ROOT
    from rehearsal.runner import free_port, wait_ready
    from rehearsal.supervisor import Supervisor

    port = free_port()
    sup = Supervisor(tmp / "listener-bench")
    env = {api_env.PORT: str(port), api_env.BIND: f"127.0.0.1:{port}",
           api_env.WEB_CONCURRENCY: "1", api_env.GUNICORN_THREADS: "4",
           POINTS_DB_PATH: str(tmp / "lb.db"),
           api_env.AUTH_MODE: "off"}  # only /healthz is measured, so no tokens  # fmt: skip
    try:
        child = sup.start(
            "api",
            [sys.executable, "-m", "gunicorn", "-c",
             str(PKG_ROOT / "sample_api" / "gunicorn.conf.py"), "sample_api.wsgi:app"],
            env=env, cwd=PKG_ROOT, on_line=lambda _n, _l: None,
        )  # fmt: skip
        wait_ready(f"http://127.0.0.1:{port}/readyz", child.alive)
        _hammer(port, threads, 50)  # warm up
        direct_rps, direct = _hammer(port, threads, per_thread)
        with WeightedListener({"blue": ("127.0.0.1", port)}) as lb:
            _hammer(lb.port, threads, 50)
            proxied_rps, proxied = _hammer(lb.port, threads, per_thread)
    finally:
        sup.stop_all()

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(p / 100 * len(values)))]

    print(
        f"listener ({threads} keep-alive clients, GET /healthz on one gunicorn worker): direct "
        f"{direct_rps:.0f} req/s, through the listener {proxied_rps:.0f} req/s "
        f"({proxied_rps / direct_rps:.2f}x); p50 {pct(direct, 50):.1f} -> {pct(proxied, 50):.1f} ms, "
        f"p99 {pct(direct, 99):.1f} -> {pct(proxied, 99):.1f} ms; the rehearsal needs 40 req/s"
    )


def main() -> None:
    regressions = int(os.environ.get(REHEARSAL_BENCH_REGRESSION_RUNS, "3"))
    healthy = int(os.environ.get(REHEARSAL_BENCH_HEALTHY_RUNS, "10"))
    with tempfile.TemporaryDirectory(prefix="rehearsal-bench-") as tmp:
        listener_overhead(Path(tmp))
        detection(Path(tmp), regressions)
        false_rollbacks(Path(tmp), healthy)


if __name__ == "__main__":
    main()
