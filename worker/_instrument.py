"""The worker's only door to ``telemetry``: USE metrics, per-job JSON logs and spans.

Kept in one module so the worker loop reads as SQS logic, and because telemetry must never break
the worker: every call here is guarded (telemetry itself promises not to raise; this is the belt
to its braces, at the cost of one ``try`` per call).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import telemetry

DEFAULT_SERVICE = "points-worker"

log = logging.getLogger("worker")


def configure(slots: int) -> None:
    """Start telemetry for this process; ``slots`` (job concurrency) is utilization's 100 %."""
    service = os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE
    with _guard():
        telemetry.configure(service=service, worker_slots=slots)
    global log
    with _guard():
        log = telemetry.get_logger("worker")


def shutdown() -> None:
    """Flush metrics, logs and spans (also registered atexit by telemetry)."""
    with _guard():
        telemetry.shutdown()


@contextlib.contextmanager
def job(message_id: str, order_id: str | None) -> Iterator[Any]:
    """One job: duration, Jobs/JobErrors, busy time for utilization, a span and a JSON log line.

    An exception raised in the block marks the job failed and propagates.
    """
    cm: Any = None
    handle: Any = None
    with _guard():
        cm = telemetry.job(message_id=message_id, order_id=order_id)
        handle = cm.__enter__()
    if cm is None:
        yield None
        return
    try:
        yield handle
    except BaseException as exc:
        with _guard():
            cm.__exit__(type(exc), exc, exc.__traceback__)
        raise
    else:
        with _guard():
            cm.__exit__(None, None, None)


def dead_lettered() -> None:
    """One message given up on: poison, or failed on its last allowed receive."""
    with _guard():
        telemetry.put_metric("DeadLettered", 1)


def message_age(seconds: float) -> None:
    with _guard():
        telemetry.record_message_age(seconds)


def queue_depths(backlog: int, in_flight: int, dead_letter: int | None) -> None:
    with _guard():
        telemetry.report_queue(backlog=backlog, in_flight=in_flight, dead_letter=dead_letter)


@contextlib.contextmanager
def _guard() -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # telemetry must never stop a job
        logging.getLogger("worker").debug("telemetry call failed: %r", exc)
