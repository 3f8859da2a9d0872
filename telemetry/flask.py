"""``instrument(app)``: RED metrics, a JSON access line and a server span for every request.

A lean WSGI wrapper around ``app.wsgi_app`` (timing, request id, span, access line) plus one
``before_request`` hook that reads the matched route template. It creates spans directly with the
OpenTelemetry SDK tracer instead of using ``opentelemetry-instrumentation-flask``, which costs
more than the whole budget here (see docs/telemetry.md, "Benchmarks").
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any

import flask
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter

from telemetry import _context, _errors, _runtime, _tracing, catalog

__all__ = ["instrument"]

_access = logging.getLogger("telemetry.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_SERVER = trace.SpanKind.SERVER
_ERROR = trace.Status(trace.StatusCode.ERROR)

try:  # the request context without going through the LocalProxy (cheaper per request)
    from flask.globals import _cv_request

    def _url_rule() -> Any:
        return _cv_request.get().request.url_rule

except ImportError:  # pragma: no cover - other Flask versions

    def _url_rule() -> Any:
        return flask.request.url_rule


class _EnvironGetter(Getter[dict]):
    """Reads propagation headers from a WSGI environ."""

    def get(self, carrier: dict, key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return None if value is None else [value]

    def keys(self, carrier: dict) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


_getter = _EnvironGetter()


def _capture_route() -> None:
    scope = _context.current.get()
    if scope is not None:
        try:
            rule = _url_rule()
            scope.route = rule.rule if rule is not None else catalog.UNMATCHED_ROUTE
        except Exception as exc:
            _errors.record("internal", repr(exc))


class _Middleware:
    def __init__(self, wsgi_app: Callable, access_log: bool | None, tracing: bool) -> None:
        self.wsgi_app = wsgi_app
        self.access_log = access_log
        self.tracing = tracing
        self._settings = None
        self._exclude: re.Pattern[str] | None = None
        self._trace_keys: tuple[str, ...] = ()
        self._propagator = None

    def _refresh(self) -> None:
        """Re-read settings after every ``configure()`` (e.g. in gunicorn's post_fork)."""
        st = _runtime.state.settings
        self._settings = st
        try:
            self._exclude = re.compile(st.exclude_paths) if st.exclude_paths else None
        except re.error as exc:
            _errors.record("config", f"TELEMETRY_EXCLUDE_PATHS: {exc}")
            self._exclude = None
        self._propagator = _runtime.state.propagator
        self._trace_keys = tuple(
            "HTTP_" + f.upper().replace("-", "_") for f in self._propagator.fields
        )

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        try:
            if self._settings is not _runtime.state.settings:
                self._refresh()
            path = environ.get("PATH_INFO", "")
            excluded = self._exclude is not None and self._exclude.fullmatch(path) is not None
        except Exception as exc:
            _errors.record("internal", repr(exc))
            return self.wsgi_app(environ, start_response)
        if excluded:
            return self.wsgi_app(environ, start_response)
        return self._call(environ, start_response, path)

    def _call(self, environ: dict, start_response: Callable, path: str) -> Iterable[bytes]:
        t0 = perf_counter()
        scope = span = token = ctx_token = None
        method = environ.get("REQUEST_METHOD", "GET")
        state: list[Any] = [500, None]
        try:
            rid = environ.get("HTTP_X_REQUEST_ID")
            if rid is None or not _REQUEST_ID.fullmatch(rid):
                rid = f"{random.getrandbits(128):032x}"
            scope = _context.Scope(rid)
            token = _context.current.set(scope)
            tracer = _runtime.state.tracer if self.tracing else None
            if tracer is not None:
                span, ctx_token = self._start_span(tracer, environ, method, path)

            def _start_response(status: str, headers: list, exc_info: Any = None) -> Any:
                state[0] = int(status[:3])
                for k, v in headers:
                    if k.lower() == "content-length":
                        state[1] = v
                        break
                headers.append(("X-Request-Id", rid))
                return start_response(status, headers, exc_info)

        except Exception as exc:  # telemetry failed: serve the request anyway
            _errors.record("internal", repr(exc))
            return self.wsgi_app(environ, start_response)
        error: BaseException | None = None
        try:
            return self.wsgi_app(environ, _start_response)
        except BaseException as exc:
            error = exc
            state[0] = 500
            raise
        finally:
            self._finish(t0, method, path, scope, state, span, error)
            if ctx_token is not None:
                otel_context.detach(ctx_token)
            if token is not None:
                _context.current.reset(token)

    def _start_span(self, tracer: trace.Tracer, environ: dict, method: str, path: str):
        parent = None
        forced = None
        for key in self._trace_keys:
            if key in environ:
                parent = self._propagator.extract(environ, getter=_getter)
                if not trace.get_current_span(parent).get_span_context().is_valid:
                    header = environ.get("HTTP_X_AMZN_TRACE_ID")
                    root = _tracing.parse_xray_root(header) if header else 0
                    if root:  # ALB "Root=..." without "Parent=": continue that trace
                        forced = _tracing.forced_trace_id.set(root)
                break
        try:
            span = tracer.start_span(
                method,
                context=parent,
                kind=_SERVER,
                attributes={"http.request.method": method, "url.path": path},
            )
        finally:
            if forced is not None:
                _tracing.forced_trace_id.reset(forced)
        ctx_token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span, ctx_token

    def _finish(
        self,
        t0: float,
        method: str,
        path: str,
        scope: _context.Scope | None,
        state: list[Any],
        span: Any,
        error: BaseException | None,
    ) -> None:
        try:
            ms = (perf_counter() - t0) * 1000.0
            status = state[0]
            route = (scope.route if scope is not None else None) or catalog.UNMATCHED_ROUTE
            _runtime.aggregator().record_request(route, status, ms)
            st = self._settings
            log = st.access_log_sample > 0 if self.access_log is None else self.access_log
            if log and (
                status >= 400
                or st.access_log_sample >= 1.0
                or random.random() < st.access_log_sample
            ):
                self._log(method, path, route, status, ms, state[1], error)
            if span is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    if error is not None:
                        span.record_exception(error)
                    span.set_status(_ERROR)
                span.end()
        except Exception as exc:
            _errors.record("internal", repr(exc))

    def _log(self, method, path, route, status, ms, size, error) -> None:
        level = logging.ERROR if status >= 500 else logging.INFO
        if not _access.isEnabledFor(level):
            return
        record = _access.makeRecord(
            _access.name,
            level,
            "",
            0,
            "%s %s %s",
            (method, path, status),
            (type(error), error, error.__traceback__) if error is not None else None,
        )
        record.telemetry = {
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": round(ms, 3),
            "bytes": int(size) if size is not None and size.isdigit() else None,
        }
        _access.handle(record)


def instrument(
    app: flask.Flask, *, access_log: bool | None = None, tracing: bool = True
) -> flask.Flask:
    """Instrument ``app`` (any Flask app): RED metrics per route template, an access line and a
    server span per request. Paths matching ``TELEMETRY_EXCLUDE_PATHS`` are not instrumented.

    ``access_log=False`` turns access lines off (``None``: on, sampled by
    ``TELEMETRY_ACCESS_LOG_SAMPLE``); ``tracing=False`` creates no spans. Idempotent.
    """
    try:
        if app.extensions.get("telemetry") is not None:
            return app
        app.wsgi_app = _Middleware(app.wsgi_app, access_log, tracing)  # type: ignore[method-assign]
        # first, so it runs even when a later before_request hook answers (e.g. a rate limiter)
        app.before_request_funcs.setdefault(None, []).insert(0, _capture_route)
        app.extensions["telemetry"] = app.wsgi_app
    except Exception as exc:
        _errors.record("internal", repr(exc))
    return app
