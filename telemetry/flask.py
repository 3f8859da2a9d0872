"""``instrument(app)``: RED metrics, a JSON access line and a server span for every request.

A lean WSGI wrapper around ``app.wsgi_app`` (timing, request id, span, access line); the
route template is read from the request werkzeug puts in the environ
(:func:`telemetry._context.route_of`), only when needed.
Spans are made with the OpenTelemetry SDK's own id generator, sampler, resource and span
processors (:class:`telemetry._tracing.ServerSpans`) rather than with
``opentelemetry-instrumentation-flask``, which alone costs more than the whole budget
(docs/telemetry.md, "Benchmarks").
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterable
from operator import itemgetter
from time import perf_counter
from typing import Any

import flask
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from werkzeug.wsgi import ClosingIterator

from telemetry import (
    _access_line,
    _context,
    _errors,
    _logging,
    _metrics,
    _runtime,
    _tracing,
    catalog,
)
from telemetry import environment_variables as ev

__all__ = ["instrument"]

_access = logging.getLogger(_access_line.LOGGER)
_LEVEL_NAMES = {logging.INFO: "INFO", logging.ERROR: "ERROR"}
#: bytes of an access line beyond its path and route (time, ids, other values), for the
#: output buffer's limit before the line is rendered
_ACCESS_ESTIMATE = 420
#: Annotation strings up to this long are held whole: no line limit is shorter (half the
#: smallest output buffer, 65,536 bytes); longer ones are checked (``_logging.cut_long``).
_KEEP_WHOLE = 32768
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_SERVER = trace.SpanKind.SERVER
_SPAN_KEY = _tracing.SPAN_KEY
_SCOPE_KEY = _context.SCOPE_KEY
#: OpenTelemetry HTTP semantic conventions: the methods "known" by default (RFC 9110 and PATCH,
#: RFC 5789). Any other method is recorded as ``_OTHER`` (the original in
#: ``http.request.method_original``) and the span is named ``HTTP <route>``, so a client
#: inventing methods cannot create span names, attribute values or log field values at will.
KNOWN_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
)
OTHER_METHOD = "_OTHER"
_MAX_ORIGINAL = 64  # characters of an unknown method kept in http.request.method_original
_XRAY_KEY = "HTTP_X_AMZN_TRACE_ID"
_TRACEPARENT_KEY = "HTTP_TRACEPARENT"
_TRACESTATE_KEY = "HTTP_TRACESTATE"
#: "200 " -> 200 for every valid status code (RFC 9110, section 15: three digits, 100-599):
#: one dict look-up per response, and nothing else (non-ASCII digits, "1000", "0 abc") passes
_STATUS_CODES = {f"{code} ": code for code in range(100, 600)}
#: statuses whose response has no body (RFC 9110, 6.4.1): never a streamed one
_NO_BODY = frozenset((*range(100, 200), 204, 304))
_WERKZEUG_REQUEST = _context.WERKZEUG_REQUEST
#: The environ key of an exception Flask handled as a 500 (its ``got_request_exception``): the
#: WSGI call then returns normally, so only this carries it to the server span's event.
_ERROR_KEY = "telemetry.error"
_MAX_PENDING = _metrics.MAX_PENDING
_Scope = _context.Scope
_new_scope = object.__new__
_name = itemgetter(0)
#: ``X-Request-Id`` in every spelling (header names are case-insensitive: RFC 9110, 5.1), so
#: that a response's own header is found in one C-level pass over its header names
_REQUEST_ID_NAMES = frozenset(
    map("".join, itertools.product(*({c.lower(), c.upper()} for c in "x-request-id")))
)


def normalize_method(method: str) -> tuple[str, str | None]:
    """(the method as recorded, the original if it differs). Werkzeug treats methods as
    case-insensitive (it upper-cases them), so ``get`` is ``GET`` with the original kept, as the
    conventions ask of such frameworks; an unknown method is ``_OTHER``."""
    if method in KNOWN_METHODS:
        return method, None
    upper = method.upper()
    original = method[:_MAX_ORIGINAL]
    return (upper if upper in KNOWN_METHODS else OTHER_METHOD), original


def status_code(status: str) -> int:
    """The code of a WSGI status line (``"404 Not Found"``); 500 if it is none (an app may set
    any status string, e.g. ``Response(status="abc")``): recorded as a server error, never
    raised into the app."""
    code = _STATUS_CODES.get(status[:4]) if type(status) is str else None
    if code is None and type(status) is str and len(status) == 3:  # a code without a reason
        code = _STATUS_CODES.get(status + " ")
    return 500 if code is None else code


def _trace_carrier(environ: dict) -> dict:
    """``environ``, or (when an inbound trace header is malformed) a carrier holding only the
    valid ones: a malformed header starts a new trace, it is never continued as an id the
    caller did not send. Each rejection is noted (``telemetry.counts()``)."""
    xray = environ.get(_XRAY_KEY)
    parent = environ.get(_TRACEPARENT_KEY)
    state = environ.get(_TRACESTATE_KEY)
    bad: dict[str, str] = {}
    if xray is not None and (why := _tracing.xray_header_problem(xray)):
        bad[_XRAY_KEY] = why
    if parent is not None and (why := _tracing.traceparent_problem(parent)):
        bad[_TRACEPARENT_KEY] = why
    if state is not None and (why := _tracing.tracestate_problem(state)):
        bad[_TRACESTATE_KEY] = why
    if not bad:
        return environ
    for key, why in bad.items():
        header = key[5:].replace("_", "-").lower()
        _errors.note("invalid_trace_header", f"{header}: {why}; a new trace is started")
    return {k: v for k, v in environ.items() if k.startswith("HTTP_") and k not in bad}


class _EnvironGetter(Getter[dict]):
    """Reads propagation headers from a WSGI environ."""

    def get(self, carrier: dict, key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return None if value is None else [value]

    def keys(self, carrier: dict) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


_getter = _EnvironGetter()


class _RequestIds:
    """Unique request ids, cheaply: 64 random bits per process (re-drawn after fork) + a counter.

    The middleware reads ``prefix`` and ``counter`` itself (no method call per request)."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self.prefix = f"{random.getrandbits(64):016x}"
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_ids = _RequestIds()


class _Middleware:
    def __init__(self, wsgi_app: Callable, access_log: bool | None, tracing: bool) -> None:
        self.wsgi_app = wsgi_app
        self.access_log = access_log
        self.tracing = tracing
        #: an access line or a span: they need the method and path, RED metrics do not
        self._details = access_log is not False or tracing
        self._settings = None
        self._exclude: re.Pattern[str] | None = None
        self._trace_keys: tuple[str, ...] = ()
        self._propagator: Any = None
        self._context_var: Any = None

    def _refresh(self) -> None:
        """Re-read settings after every ``configure()`` (e.g. in gunicorn's post_fork)."""
        st = _runtime.state.settings
        self._settings = st
        try:
            self._exclude = re.compile(st.exclude_paths) if st.exclude_paths else None
        except re.error as exc:
            _errors.record("config", f"{ev.TELEMETRY_EXCLUDE_PATHS}: {exc}")
            self._exclude = None
        self._propagator = _runtime.state.propagator
        self._context_var = _tracing.runtime_context_var()
        self._trace_keys = tuple(
            "HTTP_" + f.upper().replace("-", "_") for f in self._propagator.fields
        )

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        # The hot path of every request: kept flat (few Python calls, objects and attribute
        # lookups; docs/telemetry.md, "Benchmarks", has what each part costs).
        t0 = perf_counter()
        ctx_token = None
        scope: _context.Scope | None = None
        span: tuple | None = None  # (this span's context, the parent's, record it, start ns)
        resp: list[Any] = [None, None]  # status (None: start_response not called yet), size
        try:
            if self._settings is not _runtime.state.settings:
                self._refresh()
            exclude = self._exclude
            method = path = ""
            script = original = None
            if self._details or exclude is not None:  # RED alone needs neither
                path = environ.get("PATH_INFO", "")
                # read now: a dispatcher inside the app moves its prefix there while routing
                script = environ.get("SCRIPT_NAME")
                # the whole path, as the access line shows it: the same request is excluded or
                # not whichever of a mounted app and its host is instrumented
                if exclude is not None:
                    whole = script + path if script else path
                    if exclude.fullmatch(whole if whole.isascii() else _as_sent(whole)):
                        return self.wsgi_app(environ, start_response)
                method = environ.get("REQUEST_METHOD", "GET")
                if method not in KNOWN_METHODS:
                    method, original = normalize_method(method)
            if _SCOPE_KEY in environ and getattr(environ[_SCOPE_KEY], "environ", None) is environ:
                # an app mounted in an instrumented one (DispatcherMiddleware): the outer
                # middleware measures and logs this request once
                return self.wsgi_app(environ, start_response)
            rid = environ.get("HTTP_X_REQUEST_ID")
            if rid is None:
                rid = "%s%016x" % (_ids.prefix, next(_ids.counter))  # noqa: UP031 (cheaper)
            elif not _REQUEST_ID.fullmatch(rid):
                _errors.note("invalid_request_id", f"X-Request-Id of {len(rid)} character(s)")
                rid = _ids.next()
            scope = _new_scope(_Scope)  # Scope(rid, None, environ) without its __init__ frame
            scope.request_id = rid
            scope.route = scope.fields = scope.attributes = scope.span_context = None
            scope.environ = environ
            environ[_SCOPE_KEY] = scope  # telemetry._context.current_scope() finds it there
            spans = _runtime.state.server_spans if self.tracing else None
            if spans is not None:
                span, ctx_token = self._start_span(spans, environ, method)
                scope.span_context = span[0]

            def _start_response(status: str, headers: list, exc_info: Any = None) -> Any:
                code = _STATUS_CODES.get(status[:4]) if type(status) is str else None
                resp[0] = code if code is not None else status_code(status)
                if exc_info is not None:  # a response started again: its headers replace any
                    resp[1] = None  # the first call gave (PEP 3333), its size with them
                if scope.route is None:  # Flask clears the request from the environ at its end
                    try:  # the common case inline: werkzeug's request, the rule Flask matched
                        route = environ[_WERKZEUG_REQUEST].url_rule.rule
                    except Exception:  # not routed (404), or another request class
                        route = None
                    if type(route) is str:
                        scope.route = route
                    else:
                        _context.route_of(scope)
                try:
                    if type(headers) is not list:  # WSGI asks for a list; servers take any
                        headers = list(headers)
                    # the size: for access lines, and no size is how a streamed body shows
                    # (werkzeug puts it last, spelt so: look there first)
                    last = headers[-1] if headers else ("", None)
                    if last[0] == "Content-Length":
                        resp[1] = last[1]
                    else:
                        for k, v in headers:
                            if k == "Content-Length" or (
                                len(k) == 14 and k.lower() == "content-length"
                            ):
                                resp[1] = v
                                break
                    # an app's own X-Request-Id (any spelling) is kept, not doubled
                    if _REQUEST_ID_NAMES.isdisjoint(map(_name, headers)):
                        headers.append(("X-Request-Id", rid))
                except Exception:  # not pairs, not iterable: the server refuses them, not us
                    pass
                return start_response(status, headers, exc_info)

        except Exception as exc:  # telemetry failed: serve the request anyway
            _errors.record("internal", repr(exc))
            if ctx_token is not None:
                otel_context.detach(ctx_token)
            if scope is not None:
                scope.environ = None
            return self.wsgi_app(environ, start_response)
        error: BaseException | None = None
        streamed = False
        try:
            body = self.wsgi_app(environ, _start_response)
            if resp[0] is None:  # an app that starts its response as its body is iterated
                body = _started(body, resp)
            if (
                resp[1] is None
                and type(body) is not list
                and type(body) is not tuple
                and resp[0] not in _NO_BODY
                and environ.get("REQUEST_METHOD") != "HEAD"
            ):
                # no Content-Length and a body still to be produced (a generator,
                # stream_with_context): the request ends when the server closes the body
                streamed = True
                out = _Streamed(
                    body, self, t0, resp, scope, span, spans, method, original, path, script, rid
                )
                if ctx_token is not None:  # produced in the request's trace, not outside it
                    out._ctx = (self._context_var, otel_context.get_current())
                return out
            return body
        except BaseException as exc:
            error = exc
            resp[0] = 500
            raise
        finally:
            if not streamed:
                self._end(t0, resp, scope, span, spans, method, original, path, script, rid, error)
            try:
                if ctx_token is not None:
                    if self._context_var is not None:
                        self._context_var.reset(ctx_token)
                    else:
                        otel_context.detach(ctx_token)
                if not streamed:
                    scope.environ = None  # no reference cycle: the environ holds the scope
            except Exception as exc:  # e.g. a response finished in another context
                _errors.record("internal", repr(exc))

    def _end(
        self,
        t0: float,
        resp: list,
        scope: _context.Scope,
        span: tuple | None,
        spans: _tracing.ServerSpans | None,
        method: str,
        original: str | None,
        path: str,
        script: str | None,
        rid: str,
        error: BaseException | None,
    ) -> None:
        """Record the request that began at ``t0`` (``perf_counter``) and ends now: its RED
        metrics, access line and server span. Never raises."""
        try:
            ms = (perf_counter() - t0) * 1000.0
            status = resp[0]
            route = scope.route or _context.route_of(scope) or catalog.UNMATCHED_ROUTE
            # Aggregator.record_request, inline (a call per request)
            agg = _runtime.state.aggregator or _runtime.aggregator()
            pending = agg.pending
            pending.append((agg.clock(), route, status, ms))
            if agg.flush_thread is None or len(pending) > _MAX_PENDING:
                agg.after_record()
            if span is not None or self.access_log is not False:
                if script:  # mounted (DispatcherMiddleware) or served under a prefix
                    path = script + path
                if not path.isascii():
                    path = _as_sent(path)
                sample = self._settings.access_log_sample
                if self.access_log is not False and (
                    status >= 400 or sample >= 1.0 or random.random() < sample
                ):
                    self._log(
                        method,
                        original,
                        path,
                        route,
                        status,
                        ms,
                        resp[1],
                        scope.attributes,
                        error,
                        rid,
                        span[0] if span is not None else None,
                    )
                if span is not None and span[2]:
                    attributes = {
                        "http.request.method": method,
                        "http.route": route,
                        "url.path": path,
                        "http.response.status_code": status,
                    }
                    if original is not None:
                        attributes["http.request.method_original"] = original
                    if scope.attributes:
                        for k, v in scope.attributes.items():
                            attributes.setdefault(k, v)
                    spans.end(  # type: ignore[union-attr]
                        f"{'HTTP' if method == OTHER_METHOD else method} {route}",
                        span[0],
                        span[1],
                        _SERVER,
                        span[3],
                        attributes,
                        error
                        if error is not None or status < 500 or scope.environ is None
                        else scope.environ.pop(_ERROR_KEY, None),
                        status >= 500,
                    )
        except Exception as exc:
            _errors.record("internal", repr(exc))

    def _start_span(self, spans: _tracing.ServerSpans, environ: dict, method: str) -> tuple:
        """(the span's ``(context, parent context, record, start ns)``, the context token)."""
        parent = None
        forced = None
        for key in self._trace_keys:
            if key in environ:
                carrier = _trace_carrier(environ)
                parent = self._propagator.extract(carrier, getter=_getter)
                if not trace.get_current_span(parent).get_span_context().is_valid:
                    header = carrier.get(_XRAY_KEY)
                    root = _tracing.parse_xray_root(header) if header else 0
                    if root:  # ALB "Root=..." without "Parent=": continue that trace
                        forced = _tracing.forced_trace_id.set(root)
                break
        try:
            sc, parent_sc, record = spans.start(
                parent, "HTTP" if method == OTHER_METHOD else method, _SERVER
            )
        finally:
            if forced is not None:
                _tracing.forced_trace_id.reset(forced)
        current = trace.NonRecordingSpan(sc)
        var = self._context_var
        if var is not None:  # what set_span_in_context + attach do, with fewer calls
            base = parent if parent is not None else var.get()
            ctx_token = var.set(
                otel_context.Context({**base, _SPAN_KEY: current})
                if base
                else otel_context.Context({_SPAN_KEY: current})
            )
        else:
            ctx_token = otel_context.attach(trace.set_span_in_context(current, parent))
        return (sc, parent_sc, record, time.time_ns()), ctx_token

    def _log(
        self,
        method: str,
        original: str | None,
        path: str,
        route: str,
        status: int,
        ms: float,
        size: str | None,
        extra: dict | None,
        error: BaseException | None,
        rid: str,
        sc: trace.SpanContext | None,
    ) -> None:
        """The access line (values as :func:`telemetry._access_line.fields` takes them)."""
        level = logging.ERROR if status >= 500 else logging.INFO
        if not _access.isEnabledFor(level):
            return
        estimate = _ACCESS_ESTIMATE + 2 * len(path) + len(route)
        if extra:  # a copy: the line is rendered later, by the writer thread
            # what it holds until then counts against the buffer limit (a big annotation
            # must not pile up while stdout is stuck); values are str, bool, int or float. A
            # string longer than any line is held as the line will show it (cut), or its
            # size alone would drop the line.
            copy = {}
            for k, v in extra.items():
                if type(v) is str:
                    if len(v) > _KEEP_WHOLE:
                        v = _logging.cut_long(v)
                    estimate += len(k) + len(v)
                else:
                    estimate += len(k) + 24
                copy[k] = v
            extra = copy
        direct = _logging.direct_handler(_access, level) if error is None else None
        if direct is not None:
            try:
                direct.writer.write_deferred(
                    _access_line.render,
                    (direct.formatter, time.time(), _LEVEL_NAMES[level], rid, sc, method,
                     original, path, route, status, ms, size, extra),
                    estimate,
                )  # fmt: skip
            except Exception as exc:
                _errors.record("log", repr(exc))
            return
        message, fields = _access_line.fields(
            method, original, path, route, status, ms, size, extra
        )
        record = _access.makeRecord(
            _access.name,
            level,
            "",
            0,
            message,
            None,
            (type(error), error, error.__traceback__) if error is not None else None,
        )
        record.telemetry = fields
        # Flask has ended the request: its scope is no longer found through it, and the span
        # of a streamed body is no longer the current one
        scope = _context.Scope(rid)
        scope.span_context = sc
        token = _context.current.set(scope)
        try:
            _access.handle(record)
        finally:
            _context.current.reset(token)


def _as_sent(path: str) -> str:
    """The path as the client sent it: WSGI hands it over as latin-1 text of the raw bytes;
    they are UTF-8, as werkzeug routes them (invalid bytes become U+FFFD), not mojibake."""
    return path.encode("latin-1", "replace").decode("utf-8", "replace")


def _started(body: Iterable[bytes], resp: list) -> Iterable[bytes]:
    """``body`` of an app that calls ``start_response`` only while its body is iterated (WSGI
    allows it up to the first non-empty item, PEP 3333: a generator app, or a middleware put
    between Flask and ``instrument()``): its items are read here up to the one that comes with
    the status, so that the request is recorded with its status, route and size rather than
    as a 500; the server gets those items first, then the rest, and ``close()`` reaches
    ``body``. No ``start_response`` by the first non-empty item: a 500 (the server refuses it)."""
    head: list[bytes] = []
    try:
        it = iter(body)
        for item in it:
            head.append(item)
            if resp[0] is not None or item:  # a non-empty item without a status: the server
                break  # refuses it (not read on here: the body may be endless)
    except BaseException:
        close = getattr(body, "close", None)
        if close is not None:
            close()
        raise
    if resp[0] is None:
        resp[0] = 500
    return ClosingIterator(itertools.chain(head, it), getattr(body, "close", None))


class _Streamed:
    """A streamed body (no ``Content-Length``: a generator, ``stream_with_context``) handed
    to the server: its request is recorded (RED metrics, access line, span) when the server
    closes it (PEP 3333: a server calls ``close()`` whatever happened, a client gone
    included), so its duration covers producing the body; an exception raised while it is
    produced makes it a 500 (the client got a cut body). Items pass through unchanged. Each
    item, and ``close()``, is produced with the request's OpenTelemetry context current (its
    server span the parent of what the body traces and logs; what the body made current, such
    as a span open across items, current again for the next item), reset after it: the
    server's thread is back in its own context between items and after the request."""

    __slots__ = ("_body", "_ctx", "_done", "_end", "_error", "_it")

    def __init__(self, body: Iterable[bytes], middleware: _Middleware, *state: Any) -> None:
        self._body = body
        self._it = iter(body)
        self._end = (middleware, state)
        self._error: BaseException | None = None
        self._done = False
        #: (the runtime's context variable or None, the request's OpenTelemetry context)
        self._ctx: tuple[Any, otel_context.Context] | None = None

    def __iter__(self) -> _Streamed:
        return self

    def __next__(self) -> bytes:
        return self._produce(self._it.__next__)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                self._produce(close)
        finally:
            self._finish()

    def _produce(self, step: Callable[[], Any]) -> Any:
        """``step()`` (the next item, the body's ``close``) in the request's context; an
        exception it raises, other than the body's end, is the request's error."""
        token = self._enter()
        try:
            return step()
        except StopIteration:
            raise
        except BaseException as exc:
            if self._error is None:
                self._error = exc
            raise
        finally:
            if token is not None:
                self._leave(token)

    def _enter(self) -> Any:
        """Make the request's context current; the token to reset it (None: nothing set)."""
        if self._ctx is None:
            return None
        var, ctx = self._ctx
        try:
            return var.set(ctx) if var is not None else otel_context.attach(ctx)
        except Exception as exc:
            _errors.record("internal", repr(exc))
            return None

    def _leave(self, token: Any) -> None:
        try:
            var = self._ctx[0]  # type: ignore[index]
            # what the body made current (a span open across items) is current again for
            # its next item, as in a generator's own context; not in the server's
            if var is not None:
                self._ctx = (var, var.get())
                var.reset(token)
            else:
                self._ctx = (None, otel_context.get_current())
                otel_context.detach(token)
        except Exception as exc:  # e.g. an item produced in another context than the last
            _errors.record("internal", repr(exc))

    def _finish(self) -> None:
        if self._done:  # close() twice: recorded once
            return
        self._done = True
        middleware, state = self._end  # _Middleware._end's arguments but the error
        resp, scope = state[1], state[2]
        if self._error is not None and not isinstance(self._error, GeneratorExit):
            resp[0] = 500
        middleware._end(*state, self._error)
        scope.environ = None


def _note_route(sender: object, exception: object = None, **extra: object) -> None:
    """``got_request_exception``: an exception no error handler of the app took (Flask answers
    500, or lets it through under ``PROPAGATE_EXCEPTIONS``). Note the route while the request
    is still there, and the exception for the server span (Flask handles it: the WSGI call
    returns a 500 page and the middleware never sees it)."""
    try:
        scope = _context.current_scope()
        if scope is not None:
            _context.route_of(scope)
            if isinstance(exception, Exception) and scope.environ is not None:
                scope.environ[_ERROR_KEY] = exception
    except Exception as exc:
        _errors.record("internal", repr(exc))


def instrument(
    app: flask.Flask, *, access_log: bool | None = None, tracing: bool = True
) -> flask.Flask:
    """Instrument ``app`` (any Flask app): RED metrics per route template, an access line and a
    server span per request. Paths matching ``TELEMETRY_EXCLUDE_PATHS`` are not instrumented.

    ``access_log=False`` turns access lines off (``None``: on, sampled by
    ``TELEMETRY_ACCESS_LOG_SAMPLE``); ``tracing=False`` creates no spans. Idempotent; never
    raises.
    """
    try:
        if app.extensions.get("telemetry") is not None:
            return app
        middleware = _Middleware(app.wsgi_app, access_log, tracing)
        # its bound method, not the object: CPython calls a bound method without looking up
        # ``__call__`` through the type's slot (docs/telemetry.md, "Benchmarks")
        app.wsgi_app = middleware.__call__  # type: ignore[method-assign]
        # an exception Flask lets through (PROPAGATE_EXCEPTIONS: testing, debug) never reaches
        # start_response: note the route while the request is still there
        flask.got_request_exception.connect(_note_route, app, weak=False)
        app.extensions["telemetry"] = middleware
    except Exception as exc:
        _errors.record("internal", repr(exc))
    return app
