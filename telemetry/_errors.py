"""Telemetry's own failures: counted (self-metric ``TelemetryErrors``), reported to stderr at most
once a minute, never raised into the application.

Besides failures, a few events caused by the outside world rather than by telemetry (a client's
malformed trace header) are *noted*: counted per kind (:func:`counts`) and reported the same way,
but not part of ``TelemetryErrors``, so no client can raise that metric.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter

from telemetry import _output

REPORT_EVERY_S = 60.0
_clock = time.monotonic  # replaceable in tests without touching the time module

_lock = threading.Lock()
_pending = 0  # not yet emitted as TelemetryErrors
_since_report: Counter[str] = Counter()
_last_detail: dict[str, str] = {}
_last_report = -REPORT_EVERY_S
_total = 0
_by_kind: Counter[str] = Counter()  # since start-up (or fork), errors and notes


def record(kind: str, detail: object = "", n: int = 1) -> None:
    """Count ``n`` failures of ``kind`` (e.g. ``invalid_value``, ``sink``); report if due."""
    global _pending, _total
    try:
        with _lock:
            _pending += n
            _total += n
            _since_report[kind] += n
            _by_kind[kind] += n
            _last_detail[kind] = str(detail)[:300]
        _maybe_report()
    except Exception:  # pragma: no cover - nothing left to report with
        pass


def note(kind: str, detail: object = "") -> None:
    """Count one event of ``kind`` that is not a telemetry failure (not in TelemetryErrors)."""
    try:
        with _lock:
            _since_report[kind] += 1
            _by_kind[kind] += 1
            _last_detail[kind] = str(detail)[:300]
        _maybe_report()
    except Exception:  # pragma: no cover
        pass


def collect_output() -> None:
    """Turn the output lines dropped (and write failures) since the last call into failures."""
    dropped, failed, errors = _output.take_dropped()
    if dropped:
        record("output_dropped", f"{dropped} line(s) dropped: output not read fast enough", dropped)
    if failed:  # a broken stdout/stderr: the same kind as a failing EMF sink
        record("sink", "; ".join(errors)[:300] or f"{failed} line(s) not written", failed)


def take_pending() -> int:
    """Failures counted since the last call (the aggregator emits them as ``TelemetryErrors``)."""
    global _pending
    collect_output()
    with _lock:
        n, _pending = _pending, 0
    return n


def total() -> int:
    """Failures counted since start-up (or fork) in this process."""
    collect_output()
    return _total


def counts() -> dict[str, int]:
    """Failures and notes per kind since start-up (or fork) in this process."""
    collect_output()
    with _lock:
        return dict(_by_kind)


def _maybe_report(force: bool = False) -> None:
    global _last_report
    now = _clock()
    with _lock:
        if not _since_report or (not force and now - _last_report < REPORT_EVERY_S):
            return
        _last_report = now
        counts = dict(_since_report)
        details = dict(_last_detail)
        _since_report.clear()
        _last_detail.clear()
    parts = ", ".join(f"{k}={n} (last: {details.get(k, '')})" for k, n in sorted(counts.items()))
    report(f"telemetry: {sum(counts.values())} event(s) in pid {os.getpid()}: {parts}")


def report(line: str) -> None:
    """One line on stderr, through the non-blocking writer (a stuck stderr drops it)."""
    with contextlib.suppress(Exception):
        _output.STDERR.write(line.replace("\n", " "))


def flush_report() -> None:
    """Report what is still unreported (at shutdown), ignoring the once-a-minute limit."""
    with contextlib.suppress(Exception):
        collect_output()
        _maybe_report(force=True)


def _after_fork_in_child() -> None:
    global _lock, _pending, _total, _last_report
    _lock = threading.Lock()
    _pending = 0
    _total = 0
    _since_report.clear()
    _last_detail.clear()
    _by_kind.clear()
    _last_report = -REPORT_EVERY_S


os.register_at_fork(after_in_child=_after_fork_in_child)
