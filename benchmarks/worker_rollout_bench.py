"""Worker rolling-update rehearsal goals, measured on this machine (not timed tests).

* Detection: the regression (the new version's slow downstream call) at the defaults (4 tasks,
  minimum healthy 100 %, maximum 150 %, time scale 1: ECS's real 40 s healthy wait per round)
  ``WORKER_ROLLOUT_BENCH_REGRESSION_RUNS`` times (default 3): the rollback decision must come
  before the rolling update replaces more than half of the tasks (median of the runs), with
  exactly-once credit.
* False rollbacks: the healthy scenario ``WORKER_ROLLOUT_BENCH_HEALTHY_RUNS`` times (default 5)
  at time scale 0.5 (20 s per round, then the 30 s bake, unscaled): never rolled back, exactly-once
  credit in every run.

Each run is ``python -m rehearsal --target worker`` in a subprocess, exactly as a user runs it;
every run is bounded (15 minutes).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.environment_variables import (
    WORKER_ROLLOUT_BENCH_HEALTHY_RUNS,
    WORKER_ROLLOUT_BENCH_REGRESSION_RUNS,
)

ROOT = Path(__file__).resolve().parents[1]
HEALTHY_ARGS = ["--time-scale", "0.5"]


def _run(scenario: str, out: Path, *extra: str) -> tuple[dict[str, Any], dict[str, Any], float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "rehearsal", "--target", "worker", "--no-progress",
         "--scenario", scenario, "--out", str(out), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if not (out / "result.json").exists():
        raise RuntimeError(
            f"worker rehearsal {scenario} failed ({proc.returncode}): {proc.stderr[-500:]}"
        )
    return (
        json.loads((out / "result.json").read_text()),
        json.loads((out / "run.json").read_text()),
        elapsed,
    )


def detection(tmp: Path, runs: int) -> None:
    fractions, times, walls, exact = [], [], [], 0
    for i in range(runs):
        result, details, elapsed = _run("regression", tmp / f"regression-{i}")
        desired = result["deployment"]["desired_count"]
        replaced = result["replaced_at_decision"]
        fraction = replaced / desired if result["outcome"] == "rolled_back" else 1.0
        fractions.append(fraction)
        walls.append(elapsed)
        exact += bool(result["exactly_once"])
        if result["alarm_time_s"] is not None:
            times.append(result["alarm_time_s"])
        h = result["harm"]
        print(
            f"  run {i + 1}: {result['outcome']} by {result['alarm']} {result['alarm_time_s']} s "
            f"after the first new task started, round {result['round_at_decision']}, "
            f"{replaced}/{desired} old tasks replaced, {result['new_tasks_at_decision']} new "
            f"running; {result['orders_produced']} orders, exactly once "
            f"{'ok' if result['exactly_once'] else 'FAILED'}; harm: {h['delayed_past_objective']} "
            f"late, {h['dead_lettered']} dead-lettered, {h['credited_twice']} credited twice; "
            f"killed tasks {len(details.get('tasks_killed', []))}; {elapsed:.0f} s wall clock"
        )
    if not runs:
        return
    median = statistics.median(fractions)
    timing = (
        f"decision {min(times):.1f} / {statistics.median(times):.1f} / {max(times):.1f} s "
        "(min/median/max) after the first new task started; "
        if times
        else ""
    )
    print(
        f"worker regression: {timing}tasks replaced at the decision: median {median:.0%} "
        f"(target <= 50 %); exactly-once {exact}/{runs}; {max(walls):.0f} s wall clock at most"
    )


def false_rollbacks(tmp: Path, runs: int) -> None:
    rolled, exact, walls = 0, 0, []
    for i in range(runs):
        result, _details, elapsed = _run("healthy", tmp / f"healthy-{i}", *HEALTHY_ARGS)
        walls.append(elapsed)
        exact += bool(result["exactly_once"])
        if result["outcome"] != "succeeded":
            rolled += 1
            print(f"  run {i + 1}: ROLLED BACK by {result['alarm']} at {result['alarm_time_s']} s")
        else:
            print(
                f"  run {i + 1}: succeeded; {result['orders_produced']} orders, exactly once "
                f"{'ok' if result['exactly_once'] else 'FAILED'}; delay p99 "
                f"{result['harm']['delay_p99_s']} s; {elapsed:.0f} s wall clock"
            )
    if runs:
        print(
            f"worker healthy ({' '.join(HEALTHY_ARGS)}): {runs - rolled}/{runs} succeeded, {rolled} "
            f"false rollbacks (target 0); exactly-once {exact}/{runs}; "
            f"{sum(walls) / runs:.0f} s per run"
        )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="worker-rollout-bench-") as tmp:
        detection(Path(tmp), int(os.environ.get(WORKER_ROLLOUT_BENCH_REGRESSION_RUNS, "3")))
        false_rollbacks(Path(tmp), int(os.environ.get(WORKER_ROLLOUT_BENCH_HEALTHY_RUNS, "5")))


if __name__ == "__main__":
    main()
