"""The progress line: in place on a terminal, compact when the terminal is narrower than
FULL_COLUMNS (120), at every width cut to the width."""

from __future__ import annotations

import io
import os

import pytest

from rehearsal import progress
from rehearsal.progress import Progress, format_line

WINDOW = {
    "blue": {"rps": 34.2, "p50": 8.0, "p99": 35.0, "429": 0, "5xx": 0},
    "green": {"rps": 3.4, "p50": 3500.0, "p99": 5300.0, "429": 7, "5xx": 0},
}
STATES = {"avg": "ALARM", "p90": "OK", "err": "OK", "alb": "INSUFFICIENT_DATA"}


def _shown(columns: int, monkeypatch) -> str:
    monkeypatch.setattr(
        progress.shutil, "get_terminal_size", lambda _fallback: os.terminal_size((columns, 24))
    )
    out = io.StringIO()
    p = Progress(out, tty=True)
    p.update(
        format_line(16, "shifting", 10, WINDOW, STATES),
        format_line(16, "shifting", 10, WINDOW, STATES, compact=True),
    )
    p.close()
    return out.getvalue()


def test_a_wide_terminal_gets_the_full_line(monkeypatch) -> None:
    text = _shown(200, monkeypatch)
    assert "green  10%" in text and "p50 3.5s p99 5.3s 429:7" in text
    assert "1 ALARM 2 ok 1 no-data (avg)" in text
    assert progress.COMPACT_LEGEND not in text


@pytest.mark.parametrize(
    ("columns", "compact"), [(40, True), (80, True), (100, True), (119, True), (120, False),
                             (132, False), (200, False)],
)  # fmt: skip
def test_the_form_depends_on_the_width_alone_and_fits_it(columns, compact, monkeypatch) -> None:
    text = _shown(columns, monkeypatch)
    shown = [line for line in text.replace("\r\x1b[K", "").split("\n") if line]
    assert (progress.COMPACT_LEGEND[: columns - 1] in shown) is compact
    line = shown[-1]
    assert len(line) <= columns - 1
    assert line.startswith("+16s shift 10% |" if compact else "  +16s shifting green  10% |")


def test_a_typical_full_line_fits_120_columns() -> None:
    # The points service's five rollback alarms, nothing firing: the whole line is shown.
    names = ["green-latency-avg", "green-latency-p90", "green-error-rate", "alb-green-5xx",
             "alb-green-response-time"]  # fmt: skip
    states = {f"points-service-{n}": "OK" for n in names[:3]}
    states |= {f"points-service-{n}": "INSUFFICIENT_DATA" for n in names[3:]}
    line = format_line(-123, "warm-up", 100, WINDOW, states)
    assert len(line) < progress.FULL_COLUMNS
    assert line.endswith("| alarms 3 ok 2 no-data")


def test_an_80_column_terminal_gets_everything_that_matters_within_the_width(monkeypatch) -> None:
    text = _shown(80, monkeypatch)
    legend, line = text.replace("\r\x1b[K", "").strip("\n").split("\n")
    assert legend == progress.COMPACT_LEGEND
    assert len(line) < 80
    # Green's share and latency, blue's latency and the alarm states all survive.
    assert line == "+16s shift 10% | green 3/s 3.5s/5.3s 429:7 | blue 34/s 8ms/35ms | 1 ALARM 2 ok"


def test_without_a_terminal_plain_full_lines_are_printed() -> None:
    out = io.StringIO()
    p = Progress(out, tty=False, every_s=0)
    p.update(format_line(-3, "warm-up", 0, {"blue": WINDOW["blue"]}, {}), "short")
    assert out.getvalue().endswith("green idle | alarms -\n")
    assert "\r" not in out.getvalue()


@pytest.mark.parametrize("compact", [False, True])
def test_a_moment_just_before_zero_reads_plus_zero_not_minus_zero(compact: bool) -> None:
    # an alarm transition 0.3 s before the traffic shift printed "-0s"
    line = format_line(-0.3, "baking", 100, {}, {}, compact=compact)
    assert "-0s" not in line and "+0s" in line
    assert progress.offset(-0.3, 6) == "    +0s" and progress.offset(-0.6) == "-1s"
