"""Replay a synthetic day of EMF (a 200 requests/s service) through every generated alarm.

Target: a day replays in under 30 s. Prints samples/s, lines/s, evaluations/s and the day's
replay time for both profiles, side by side.
"""

from __future__ import annotations

import time

from alarms import POINTS_SERVICE_SPEC, Evaluator, load_spec, synth
from alarms._sample_emf import api_lines, worker_lines

DAY_S = 86_400
RPS = 200.0
TARGET_S = 30.0


def _day(start: int, high_resolution: bool) -> list[str]:
    def latency(t: float, version: str) -> float:
        # a daily swell plus a one-hour regression of the green version in the afternoon
        base = 15.0 + 10.0 * ((t - start) % DAY_S) / DAY_S
        return 900.0 if version == "v2" and 14 * 3600 <= t - start < 15 * 3600 else base

    lines = list(
        api_lines(
            start,
            DAY_S,
            rps=RPS,
            window_s=5,
            versions={"v1": 0.9, "v2": 0.1},
            latency_ms=latency,
            high_resolution=high_resolution,
        )
    )
    lines += worker_lines(start, DAY_S, window_s=5, version="v2")
    return lines


def _run(profile: str, lines: list[str], start: int) -> dict[str, float]:
    defs = synth(load_spec(POINTS_SERVICE_SPEC), format="json", profile=profile)
    began = time.perf_counter()
    ev = Evaluator(defs, start=start)
    for line in lines:
        ev.ingest_line(line)
    ingested = time.perf_counter()
    evaluations = alarmed = 0
    for hour in range(1, 25):  # advance an hour at a time, as `replay` does
        batch = ev.advance(start + hour * 3600)
        evaluations += len(batch)
        alarmed += sum(1 for e in batch if e.changed and e.state == "ALARM")
    done = time.perf_counter()
    return {
        "alarms": len(defs["MetricAlarms"]) + len(defs["CompositeAlarms"]),
        "lines": len(lines),
        "samples": ev.stats["samples"],
        "ingest_s": ingested - began,
        "evaluate_s": done - ingested,
        "total_s": done - began,
        "evaluations": evaluations,
        "alarm_transitions": alarmed,
    }


def main() -> None:
    start = 1_800_000_000 - 1_800_000_000 % DAY_S
    print(
        f"synthetic day: {RPS:g} requests/s, 5 s EMF windows, blue 90 % / green 10 %,"
        " green regresses for one hour"
    )
    rows = []
    for profile, hires in (("production", False), ("rehearsal", True)):
        t0 = time.perf_counter()
        lines = _day(start, hires)
        gen = time.perf_counter() - t0
        r = _run(profile, lines, start)
        rows.append((profile, r))
        print(
            f"{profile:>10}: {r['alarms']} alarms, {r['lines']:,} lines ({gen:.1f} s to generate),"
            f" {r['samples']:,.0f} samples, {r['evaluations']:,} evaluations,"
            f" {r['alarm_transitions']} ALARM transitions"
        )
        print(
            f"{'':>10}  replay {r['total_s']:.2f} s (ingest {r['ingest_s']:.2f} s + evaluate"
            f" {r['evaluate_s']:.2f} s): {r['samples'] / r['total_s']:,.0f} samples/s,"
            f" {r['lines'] / r['total_s']:,.0f} lines/s,"
            f" {r['evaluations'] / max(r['evaluate_s'], 1e-9):,.0f} evaluations/s"
        )
        print(
            f"{'':>10}  {DAY_S / r['total_s']:,.0f}x faster than real time;"
            f" {r['total_s'] / TARGET_S:.2f} of the {TARGET_S:g} s target"
            f" ({'PASS' if r['total_s'] < TARGET_S else 'MISS'})"
        )
    (_, a), (_, b) = rows
    print(f"rehearsal/production replay time ratio: {b['total_s'] / a['total_s']:.2f}")


if __name__ == "__main__":
    main()
