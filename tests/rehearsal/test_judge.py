"""The statistical judge on synthetic samples, its replay over a recorded timeline, its CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from rehearsal.harm import write_requests
from rehearsal.judge import (
    FAIL,
    HIGH,
    LOW,
    MARGINAL,
    NODATA,
    PASS,
    JudgeConfig,
    Metric,
    classify,
    judge,
    replay,
    window_start,
)
from rehearsal.listener import Record
from tests.support.processes import ROOT

LATENCY = Metric("latency_ms", weight=60, effect="shift", min_shift=25.0, relative_shift=1.0)
FAILED = Metric("failed", weight=40, effect="rate", min_shift=0.05)
CONFIG = JudgeConfig()


def _latencies(seed: int, n: int, median: float) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(0, 0.4) * median for _ in range(n)]


def test_identical_distributions_pass() -> None:
    blue, green = _latencies(1, 300, 8), _latencies(2, 40, 8)
    result = classify(LATENCY, blue, green, CONFIG)
    assert result.classification == PASS
    assert result.p_value is not None and result.p_value > 0.01
    same = [5.0] * 20  # every sample equal: nothing to test, a pass
    assert classify(LATENCY, same, same, CONFIG).classification == PASS


def test_a_shifted_green_is_high_and_a_faster_one_low() -> None:
    blue = _latencies(3, 300, 40)
    result = classify(LATENCY, blue, _latencies(4, 30, 120), CONFIG)  # 3x slower, +80 ms
    assert result.classification == HIGH
    assert result.p_value < 0.01 and result.effect > result.tolerance
    # Lower is only reachable below the absolute floor (the relative one is x blue's median).
    absolute = Metric("latency_ms", weight=1, min_shift=10.0)
    assert classify(absolute, blue, _latencies(5, 30, 5), CONFIG).classification == LOW


def test_a_significant_but_small_shift_passes() -> None:
    # 3 ms vs 5 ms over many samples: significant, but below the 25 ms floor of the effect size.
    blue, green = _latencies(6, 400, 3), _latencies(7, 400, 5)
    result = classify(LATENCY, blue, green, CONFIG)
    assert result.p_value < 0.01
    assert result.classification == PASS


def test_too_few_samples_is_no_data() -> None:
    blue = _latencies(8, 300, 10)
    few = _latencies(9, CONFIG.min_samples - 1, 1000)
    result = classify(LATENCY, blue, few, CONFIG)
    assert (result.classification, result.canary_n) == (NODATA, CONFIG.min_samples - 1)
    assert judge({"latency_ms": blue}, {"latency_ms": few}).result == NODATA


def test_failure_rates() -> None:
    blue = [0.0] * 300
    assert classify(FAILED, blue, [1.0] * 5 + [0.0] * 35, CONFIG).classification == HIGH
    assert classify(FAILED, blue, [1.0] * 1 + [0.0] * 99, CONFIG).classification == PASS


def test_the_weighted_score_and_its_thresholds() -> None:
    blue = {"latency_ms": _latencies(10, 300, 10), "failed": [0.0] * 300}
    fine = {"latency_ms": _latencies(11, 40, 10), "failed": [0.0] * 40}
    slow = {"latency_ms": _latencies(12, 40, 500), "failed": [0.0] * 40}
    assert judge(blue, fine).result == PASS and judge(blue, fine).score == 100
    verdict = judge(blue, slow)  # latency High (60), failures Pass (40): score 40
    assert (verdict.result, verdict.score) == (FAIL, 40)
    lenient = JudgeConfig(pass_score=90, marginal_score=40)
    assert judge(blue, slow, lenient).result == MARGINAL
    critical = JudgeConfig(metrics=(LATENCY.__class__(**{**_asdict(LATENCY), "critical": True}),
                                    FAILED), marginal_score=0, pass_score=0)  # fmt: skip
    assert (judge(blue, slow, critical).result, judge(blue, slow, critical).score) == (FAIL, 0)
    # A metric without data is left out of the score, not counted as passing.
    only_latency = {"latency_ms": slow["latency_ms"], "failed": [0.0] * 3}
    assert judge(blue, only_latency).score == 0


def _asdict(m: Metric) -> dict:
    from dataclasses import asdict

    return asdict(m)


@pytest.mark.parametrize(
    "bad",
    [{"confidence": 1.0}, {"min_samples": 2}, {"pass_score": 50, "marginal_score": 60},
     {"consecutive": 0}, {"metrics": ()}],
)  # fmt: skip
def test_bad_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        JudgeConfig(**bad)


def _timeline(regressed_from: float | None) -> tuple[list[Record], list[tuple[float, int]]]:
    """100 s of blue at 36 req/s and green at 4 req/s from t=0, green slow and refusing after
    ``regressed_from``."""
    rng = random.Random(13)
    records = []
    for i in range(4000):
        t = i / 40
        green = i % 10 == 0
        bad = green and regressed_from is not None and t >= regressed_from
        status = 429 if bad and i % 20 == 0 else 200
        ms = rng.lognormvariate(0, 0.4) * (800 if bad else 8)
        records.append(Record(t, "green" if green else "blue", "GET", "/x", status, ms, f"u{i}"))
    return records, [(-5.0, 0), (0.0, 10)]


def test_replay_fires_after_consecutive_failures_and_never_on_a_healthy_run() -> None:
    healthy, traffic = _timeline(None)
    _, fired = replay(healthy, traffic, 0.0, 100.0)
    assert fired is None
    bad, traffic = _timeline(30.0)
    judgements, fired = replay(bad, traffic, 0.0, 100.0)
    assert fired is not None and 30.0 < fired <= 36.0
    first_fail = next(at for at, v in judgements if v.result == FAIL)
    assert fired == first_fail + CONFIG.interval_s * (CONFIG.consecutive - 1)


def test_the_window_never_spans_a_traffic_change() -> None:
    traffic = [(0.0, 10), (50.0, 20)]
    assert window_start(55.0, traffic, 10.0) == 50.0
    assert window_start(70.0, traffic, 10.0) == 60.0


def _recorded_run(tmp_path: Path, regressed_from: float | None) -> Path:
    records, traffic = _timeline(regressed_from)
    write_requests(tmp_path / "requests.jsonl", records)
    (tmp_path / "run.json").write_text(json.dumps({"t0": 0.0, "latency_objective_ms": 250}))
    (tmp_path / "result.json").write_text(json.dumps({"traffic": [list(t) for t in traffic]}))
    return tmp_path


def test_offline_judge_of_a_recorded_run(tmp_path: Path) -> None:
    run_dir = _recorded_run(tmp_path, 30.0)
    proc = subprocess.run(
        [sys.executable, "-m", "rehearsal", "judge", str(run_dir), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert 30.0 < doc["fired_s"] <= 36.0
    # Green's harm up to then: its slow requests (4 a second from 30 s on), those answered
    # after the rollback included when they were sent before it (they take ~0.8 s, < 2 s).
    harmed = doc["harm_at_fired"]["harmed_requests"]
    assert 4 * (doc["fired_s"] - 30.0) <= harmed <= 4 * (doc["fired_s"] - 30.0 + 2)
    text = subprocess.run(
        [sys.executable, "-m", "rehearsal", "judge", str(run_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    assert "would have rolled back" in text


def test_offline_judge_of_a_directory_that_is_no_run(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rehearsal", "judge", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "requests.jsonl does not exist" in proc.stderr


def test_replay_skips_a_long_stretch_without_requests() -> None:
    # One record a year after the run used to cost a judgement a second (a hang); an empty
    # stretch is now judged once and skipped, and the verdicts before it are unchanged.
    bad, traffic = _timeline(30.0)
    before, fired = replay(bad, traffic, 0.0, 100.0)
    late = Record(365 * 86400.0, "green", "GET", "/x", 200, 5.0, "u")
    judgements, fired_late = replay([*bad, late], traffic, 0.0, late.time)
    assert fired_late == fired
    assert judgements[: len(before)] == before
    assert len(judgements) <= len(before) + 12  # the window's tail, one NoData, the last record


def test_the_shift_of_large_samples_is_estimated_without_every_pair() -> None:
    # Every pair of 20 000 x 20 000 requests would be 400 million differences (3 GB).
    from rehearsal.judge import HL_MAX_SAMPLES, _hodges_lehmann, _thin

    blue, green = _latencies(1, 20_000, 10.0), _latencies(2, 20_000, 40.0)
    thinned = _thin(blue)
    assert len(thinned) == HL_MAX_SAMPLES
    assert thinned[0] == min(blue) and thinned[-1] == max(blue)
    assert len(_thin(blue[:50])) == 50  # small samples are used whole
    assert 25 < _hodges_lehmann(green, blue) < 35  # the lognormal medians' difference, 30 ms


@pytest.mark.parametrize("t0", ["-Infinity", "NaN"])
def test_offline_judge_of_a_run_json_with_a_non_finite_t0(tmp_path: Path, t0: str) -> None:
    run_dir = _recorded_run(tmp_path, 30.0)
    (run_dir / "run.json").write_text(f'{{"t0": {t0}, "latency_objective_ms": 250}}')
    proc = subprocess.run(
        [sys.executable, "-m", "rehearsal", "judge", str(run_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # -Infinity was an OverflowError's traceback
    assert proc.stderr.count("\n") == 1 and "must be finite numbers" in proc.stderr


@pytest.mark.parametrize(
    ("run_json", "traffic", "message"),
    [
        ('{"t0": 0}', "[[0, 1e400]]", "whole percent 0..100"),  # was OverflowError's traceback
        ('{"t0": 0}', "[[0, -10]]", "whole percent 0..100"),
        ('{"t0": 0}', "[[0, 10.5]]", "whole percent 0..100"),
        ('{"t0": 0}', "[[0, NaN]]", "whole percent 0..100"),
        ('{"t0": 0, "latency_objective_ms": -5}', "[[0, 10]]", "must be > 0"),
        ('{"t0": 0, "latency_objective_ms": 0}', "[[0, 10]]", "must be > 0"),  # was 250
    ],
)
def test_offline_judge_of_odd_traffic_steps_and_objectives(
    tmp_path: Path, run_json: str, traffic: str, message: str
) -> None:
    run_dir = _recorded_run(tmp_path, 30.0)
    (run_dir / "run.json").write_text(run_json)
    (run_dir / "result.json").write_text(f'{{"traffic": {traffic}}}')
    proc = subprocess.run(
        [sys.executable, "-m", "rehearsal", "judge", str(run_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
