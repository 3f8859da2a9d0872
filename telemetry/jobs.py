"""USE metrics for queue workers: one job at a time, queue depth and message age."""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable
from time import perf_counter
from types import TracebackType
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace

from telemetry import _context, _errors, _runtime, _tracing
from telemetry.spans import text

__all__ = ["Job", "job", "record_message_age", "report_queue"]

_log = logging.getLogger("telemetry.jobs")
_F = TypeVar("_F", bound=Callable[..., Any])


class Job:
    """One job (e.g. one SQS message): ``Jobs``, ``JobErrors``, ``JobDuration``, the busy time
    behind ``WorkerUtilization``, a JSON log line and a CONSUMER span.

    A job fails when its block raises (the exception propagates unchanged) or when
    ``job.failed = True`` is set (the worker caught the error and leaves the message to SQS).
    """

    def __init__(self, name: str = "job", message_id: str | None = None, **fields: object) -> None:
        self._setup(name, message_id, fields)

    def _setup(self, name: object, message_id: object, fields: dict[str, object]) -> None:
        self.name = name if type(name) is str else text(name)  # never raises into the app
        self.message_id = message_id
        self.fields: dict[str, object] = {k: v for k, v in fields.items() if v is not None}
        if message_id is not None:
            self.fields["message_id"] = message_id
        self.failed = False
        self.duration_ms: float | None = None
        self._state: tuple | None = None

    def __enter__(self) -> Job:
        try:
            t0 = perf_counter()
            rid = text(self.message_id) if self.message_id is not None else ""
            scope = _context.Scope(rid or f"{random.getrandbits(128):032x}")
            scope.fields = {"job": self.name, **self.fields}
            agg = _runtime.aggregator()
            # from here on nothing may fail before _state is set: the busy slot and the scope
            # must be ended in __exit__ whatever a field holds
            token = agg.job_started()
            scope_token = _context.current.set(scope)
            span = ctx_token = None
            tracer = _runtime.state.tracer
            if tracer is not None:
                forced = None
                try:
                    root = otel_context.get_value(_tracing.FORCED_ROOT_KEY)
                    if root and not trace.get_current_span().get_span_context().is_valid:
                        # an X-Ray Root without a parent (extract_trace_context): this trace
                        forced = _tracing.forced_trace_id.set(root)  # type: ignore[arg-type]
                    span = tracer.start_span(
                        self.name,
                        kind=trace.SpanKind.CONSUMER,
                        attributes={text(k): text(v) for k, v in self.fields.items()},
                    )
                    ctx_token = otel_context.attach(trace.set_span_in_context(span))
                except Exception as exc:  # the job is counted and timed without its span
                    _errors.record("tracing", repr(exc))
                    span = ctx_token = None
                finally:
                    if forced is not None:
                        _tracing.forced_trace_id.reset(forced)
            self._state = (t0, agg, token, scope_token, span, ctx_token)
        except Exception as exc:
            _errors.record("internal", repr(exc))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state is None:
            return
        t0, agg, token, scope_token, span, ctx_token = self._state
        self._state = None
        try:
            ms = (perf_counter() - t0) * 1000.0
            self.duration_ms = ms
            failed = self.failed or exc is not None
            agg.job_finished(token)
            _runtime.put_metric("Jobs", 1)
            _runtime.put_metric("JobErrors", 1 if failed else 0)
            _runtime.put_metric("JobDuration", ms)
            extra = {
                "telemetry": {"outcome": "error" if failed else "ok", "duration_ms": round(ms, 3)}
            }
            try:  # a handler that raises (logging.raiseExceptions) must not cost the span
                if failed:
                    _log.error(
                        "%s failed",
                        self.name,
                        exc_info=(exc_type, exc, tb) if exc else None,
                        extra=extra,
                    )
                else:
                    _log.info("%s done", self.name, extra=extra)
            except Exception as e:
                _errors.record("log", repr(e))
            if span is not None:
                scope = _context.current_scope()
                if scope is not None and scope.attributes:  # telemetry.annotate() in the job
                    span.set_attributes(scope.attributes)
                if failed:
                    if exc is not None:
                        span.record_exception(exc)
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
                span.end()
        except Exception as e:
            _errors.record("internal", repr(e))
        finally:
            try:
                if ctx_token is not None:
                    otel_context.detach(ctx_token)
                _context.current.reset(scope_token)
            except Exception as e:
                _errors.record("internal", repr(e))

    def __call__(self, func: _F) -> _F:
        """Use as a decorator: every call is a new job with the same name and fields."""
        name, message_id, fields = self.name, self.message_id, dict(self.fields)
        fields.pop("message_id", None)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _new(name if name != "job" else func.__name__, message_id, fields):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def job(name: str = "job", /, message_id: str | None = None, **fields: object) -> Job:
    """``with telemetry.job(message_id=m.id, order_id=o) as j: ...`` or ``@telemetry.job()``."""
    return _new(name, message_id, fields)


def _new(name: object, message_id: object, fields: dict[str, object]) -> Job:
    """A Job whose fields may be named like ``Job``'s own parameters (``name``: the job's name
    is positional in :func:`job`, so ``job("x", name="alice")`` is a field, never a TypeError)."""
    j = Job.__new__(Job)
    j._setup(name, message_id, fields)
    return j


def report_queue(
    backlog: float | None = None, in_flight: float | None = None, dead_letter: float | None = None
) -> None:
    """Queue gauges: ``QueueBacklog``, ``QueueInFlight``, ``DeadLetterBacklog`` (None: skip)."""
    for name, value in (
        ("QueueBacklog", backlog),
        ("QueueInFlight", in_flight),
        ("DeadLetterBacklog", dead_letter),
    ):
        if value is not None:
            _runtime.put_metric(name, value)


def record_message_age(seconds: float) -> None:
    """``MessageAge``: how old a message was when received (from its ``SentTimestamp``)."""
    _runtime.put_metric("MessageAge", seconds)
