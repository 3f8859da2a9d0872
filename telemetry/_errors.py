"""Telemetry's own failures: counted (self-metric ``TelemetryErrors``), reported to stderr at most
once a minute, never raised into the application."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import Counter

REPORT_EVERY_S = 60.0
_clock = time.monotonic  # replaceable in tests without touching the time module

_lock = threading.Lock()
_pending = 0  # not yet emitted as TelemetryErrors
_since_report: Counter[str] = Counter()
_last_detail: dict[str, str] = {}
_last_report = -REPORT_EVERY_S
_total = 0


def record(kind: str, detail: object = "") -> None:
    """Count one failure of ``kind`` (e.g. ``invalid_value``, ``sink``); report it if due."""
    global _pending, _total
    try:
        with _lock:
            _pending += 1
            _total += 1
            _since_report[kind] += 1
            _last_detail[kind] = str(detail)[:300]
        _maybe_report()
    except Exception:  # pragma: no cover - nothing left to report with
        pass


def take_pending() -> int:
    """Failures counted since the last call (the aggregator emits them as ``TelemetryErrors``)."""
    global _pending
    with _lock:
        n, _pending = _pending, 0
    return n


def total() -> int:
    """Failures counted since start-up (or fork) in this process."""
    return _total


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
    try:
        stream = sys.stderr
        stream.write(f"telemetry: {sum(counts.values())} error(s) in pid {os.getpid()}: {parts}\n")
        stream.flush()
    except Exception:
        pass  # stderr is gone too; the count still reaches TelemetryErrors


def flush_report() -> None:
    """Report what is still unreported (at shutdown), ignoring the once-a-minute limit."""
    with contextlib.suppress(Exception):
        _maybe_report(force=True)


def _after_fork_in_child() -> None:
    global _lock, _pending, _total, _last_report
    _lock = threading.Lock()
    _pending = 0
    _total = 0
    _since_report.clear()
    _last_detail.clear()
    _last_report = -REPORT_EVERY_S


os.register_at_fork(after_in_child=_after_fork_in_child)
