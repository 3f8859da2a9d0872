"""The worker's only door to ``telemetry``: USE metrics, per-job JSON logs and spans.

``telemetry`` promises never to raise into application code; these wrappers keep that promise on
the worker's side too (a broken log handler or filter, a failing span exporter, a bug): every
call here is guarded, a failure is counted (:func:`failures`) and reported once on stderr, and
the job goes on. They also keep metric names and the job's span name in one place.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import telemetry

DEFAULT_SERVICE = "points-worker"
#: Name of the CONSUMER span (and of the ``job`` log field) for one message.
JOB_NAME = "order.completed"

_lock = threading.Lock()
_failures = 0


def failures() -> int:
    """Telemetry calls (logs, metrics, spans) that raised and were swallowed since start-up."""
    return _failures


def _failed(what: str, exc: BaseException) -> None:
    global _failures
    with _lock:
        _failures += 1
        first = _failures == 1
    if first:  # once: the log itself may be what is broken; later ones are only counted
        with contextlib.suppress(Exception):
            print(
                f"points-worker: telemetry {what} failed ({type(exc).__name__}); "
                "further failures are only counted",
                file=sys.stderr,
                flush=True,
            )


class _SafeLogger:
    """``logging.Logger``'s calls the worker makes, never raising (filters and handlers can)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _call(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        try:
            self._logger.log(level, msg, *args, **kwargs)
        except Exception as exc:
            _failed("log", exc)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._call(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._call(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._call(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._call(logging.ERROR, msg, *args, **kwargs)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exc_info", True)
        self._call(logging.ERROR, msg, *args, **kwargs)


#: The worker's logger (``worker``); use it like a :class:`logging.Logger`.
log = _SafeLogger(logging.getLogger("worker"))


def configure(slots: int) -> None:
    """Start telemetry for this process; ``slots`` (job concurrency) is utilization's 100 %.

    Every AWS call (SQS receive/delete, DynamoDB) becomes a CLIENT span through OpenTelemetry's
    own botocore instrumentation: a call costs milliseconds, the span ~0.1 of one
    (docs/telemetry.md, "Spans")."""
    telemetry.configure(default_service=DEFAULT_SERVICE, worker_slots=slots)
    # botocore logs "Found credentials in environment variables." and the like at INFO
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

        instrumentor = BotocoreInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    except Exception as exc:  # spans are a help, never a reason not to work
        log.warning("AWS calls not traced: %s", exc, extra={"error": repr(exc)})


def store_span(operation: str) -> telemetry.Span:
    """The child span of the job around one ledger call (``store.grant``)."""
    return telemetry.span(f"store.{operation}")


def shutdown() -> None:
    """Flush metrics, logs and spans (also registered atexit by telemetry)."""
    try:
        telemetry.shutdown()
    except Exception as exc:
        _failed("shutdown", exc)


class JobScope:
    """What :func:`job` yields: set ``failed = True`` to count a handled failure."""

    def __init__(self) -> None:
        self.failed = False


@contextlib.contextmanager
def job(message_id: str, order_id: str | None, receive_count: int | None) -> Iterator[JobScope]:
    """One job: Jobs/JobErrors/JobDuration, busy time for WorkerUtilization, a CONSUMER span
    (child of the current context: the producer's trace) and ``message_id``/``order_id`` on
    every log line written inside it. Set ``.failed = True`` on what it yields to count a handled
    failure; an exception from the block counts as failed too and propagates unchanged.

    If telemetry itself fails to open or close the job, the block still runs (once) and the
    failure is counted in :func:`failures`.
    """
    scope = JobScope()
    try:
        tjob: telemetry.Job | None = telemetry.job(
            JOB_NAME, message_id=message_id, order_id=order_id, receive_count=receive_count
        )
        assert tjob is not None
        tjob.__enter__()
    except Exception as exc:
        _failed("job start", exc)
        tjob = None
    try:
        yield scope
    except BaseException as exc:
        if tjob is not None:
            _close(tjob, scope, exc)
        raise
    if tjob is not None:
        _close(tjob, scope, None)


def _close(tjob: telemetry.Job, scope: JobScope, exc: BaseException | None) -> None:
    try:
        tjob.failed = scope.failed
        tjob.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)
    except Exception as err:
        _failed("job end", err)


def dead_lettered() -> None:
    """One message given up on: poison or failed on its last allowed receive, bound for the DLQ."""
    _put("DeadLettered", 1)


def message_age(seconds: float) -> None:
    try:
        telemetry.record_message_age(seconds)
    except Exception as exc:
        _failed("metric", exc)


def queue_depths(backlog: int, in_flight: int, dead_letter: int | None) -> None:
    try:
        telemetry.report_queue(backlog=backlog, in_flight=in_flight, dead_letter=dead_letter)
    except Exception as exc:
        _failed("metric", exc)


def _put(name: str, value: float) -> None:
    try:
        telemetry.put_metric(name, value)
    except Exception as exc:
        _failed("metric", exc)
