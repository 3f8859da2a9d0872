"""``python -m benchmarks``: names and the documented options (docs/telemetry.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import __main__ as bench_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args", [["--fast"], ["gunicorn_bench", "-q"], ["nope"], ["x_bench"]])
def test_unknown_names_and_options_are_one_line_and_exit_2(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "benchmarks: unknown" in proc.stderr


def test_documented_options_reach_the_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = type(sys)("benchmarks.fake_bench")
    fake.main = lambda: seen.append(list(sys.argv))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks.gunicorn_bench", fake)
    argv = ["benchmarks", "gunicorn_bench", "--quick", "--no-instructions"]
    monkeypatch.setattr(sys, "argv", argv)
    assert bench_cli.main() == 0
    assert seen == [argv]  # read by the benchmark from sys.argv
