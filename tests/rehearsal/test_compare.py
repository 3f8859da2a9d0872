"""``python -m rehearsal compare`` end to end on a tiny matrix, and its refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rehearsal.compare import _spec_without_ratios, bound_s, summarise, table
from tests.support.processes import ROOT


def _compare(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rehearsal", "compare", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_compare_end_to_end_on_a_tiny_matrix(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    proc = _compare("--configs", "custom:canary:50:20", "--detection", "judge-only",
                    "--runs", "1", "--time-scale", "1", "--bake", "5", "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "at most" in proc.stdout.splitlines()[0]  # the bound, before anything starts
    doc = json.loads((out / "compare.json").read_text())
    (row,) = doc["runs"]
    assert row["outcome"] == "rolled_back" and row["trigger"] == "judge"
    assert row["green_percent"] == 50 and row["harmed_requests"] > 0
    run_result = json.loads((Path(row["out"]) / "result.json").read_text())
    # the run's console lines are kept (a console.log was removed by the run's clean-up, then
    # refused as someone else's file)
    assert (
        "rehearsal: regression with custom:canary:50:20"
        in (Path(row["out"]) / "console.txt").read_text()
    )
    assert run_result["harm"]["harmed_requests"] == row["harmed_requests"]
    (cell,) = doc["summary"]
    assert cell["detected"] == 1 and cell["healthy_s"] == 25  # 20 s at 50 %, then a 5 s bake
    assert "custom:canary:50:20  judge-only" in proc.stdout
    assert (out / "compare.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--detection", "psychic"], "unknown 'psychic'"),
        (["--configs", "ECSNever"], "unknown deployment configuration"),
        (["--runs", "0"], "expected a number > 0"),
        (["--runs", "50", "--max-minutes", "5"], "above --max-minutes 5"),
        # Repeated cells overwrote each other's output and were summed into one cell.
        (["--detection", "judge,judge"], "judge given more than once"),
        (["--configs", "ECSAllAtOnce,CodeDeployDefault.ECSAllAtOnce"], "given more than once"),
        # A bad spec crashed static-1m with a traceback, or failed the first run once started.
        (["--spec", "pyproject.toml"], "--spec 'pyproject.toml': spec error"),
        (["--spec", "README.md", "--detection", "static-1m"], "spec error"),
    ],
)
def test_compare_refuses_bad_arguments_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = _compare(*args, "--out", str(tmp_path / "x"), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert not (tmp_path / "x").exists()  # nothing was started


def test_bound_and_summary_table() -> None:
    # all-at-once: 0 s of steps + 6 s bake (scaled 0.1); 2 setups x 2 runs.
    assert bound_s(["CodeDeployDefault.ECSAllAtOnce"], ["judge", "static-1m"], 2, 0.1, 60) == (
        pytest.approx(4 * (6 + 120))
    )
    rows = [
        {"config": "C", "detection": "judge", "outcome": "rolled_back", "detection_s": s,
         "green_percent": 10, "harmed_requests": h, "harmed_users": h, "healthy_s": 60,
         "healthy_scaled_s": 6}
        for s, h in ((5.0, 10), (7.0, 30), (6.0, 20))
    ] + [{"config": "C", "detection": "static-1m", "outcome": "succeeded", "detection_s": None,
          "green_percent": None, "harmed_requests": 500, "harmed_users": 300, "healthy_s": 60,
          "healthy_scaled_s": 6}]  # fmt: skip
    by = {s["detection"]: s for s in summarise(rows)}
    assert (by["judge"]["detection_s"], by["judge"]["harmed_requests"]) == (6.0, 20)
    assert by["judge"]["detected"] == 3 and by["static-1m"]["detected"] == 0
    text = table(summarise(rows))
    assert "3/3" in text and "0/1" in text and "500" in text


def test_the_static_spec_copy_keeps_yaml_1_2_numbers(tmp_path: Path) -> None:
    from alarms import load_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text("service: svc\nlatency:\n  threshold_ms: 1e3\n")
    copy = load_spec(_spec_without_ratios(spec, tmp_path))
    assert copy.latency.threshold_ms == 1000.0 and not copy.baseline
