"""Per-request / per-job state carried in a context variable (thread- and asyncio-safe)."""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import Any

from telemetry import _errors


class Scope:
    """What log lines and metrics need to know about the request or job in progress."""

    __slots__ = ("attributes", "environ", "fields", "request_id", "route", "span_context")

    def __init__(
        self, request_id: str, route: str | None = None, environ: dict | None = None
    ) -> None:
        self.request_id = request_id
        self.route = route
        #: a request's WSGI environ, where werkzeug puts the request (and so its matched rule)
        self.environ = environ
        self.fields: dict[str, object] | None = None  # extra fields for every log line (jobs)
        #: ``telemetry.annotate()``d fields of a request: on its server span and its access line
        self.attributes: dict[str, str | bool | int | float] | None = None
        #: a request's server span context: the trace of its log lines where the span is no
        #: longer the current one (a body streamed with ``stream_with_context`` runs after
        #: the WSGI call returned and the span's context was detached)
        self.span_context: Any = None


#: A job's scope (:mod:`telemetry.jobs`), or one a caller set around its own code.
current: ContextVar[Scope | None] = ContextVar("telemetry_scope", default=None)
#: The WSGI environ key of a request's scope: ``telemetry.flask`` puts it there, where Flask's
#: request context already makes it reachable, instead of setting a context variable of its
#: own (a set and a reset on every request: ~4 k instructions, ~0.4 % of a gunicorn request).
SCOPE_KEY = "telemetry.scope"


def current_scope() -> Scope | None:
    """The scope of the job or request in progress: :data:`current` if set, else the scope of
    the Flask request being handled (in its environ). ``None`` outside both: e.g. in a WSGI
    middleware between ``instrument()`` and Flask, or after Flask ended the request."""
    scope = current.get()
    if scope is None:
        flask = sys.modules.get("flask")  # a worker process need not import it
        if flask is not None:
            try:
                environ = _flask_environ(flask)
                if environ is not None:
                    scope = environ.get(SCOPE_KEY)
            except Exception as exc:  # an exotic request context: the caller goes on
                _errors.record("internal", f"request scope not read: {exc!r}")
    return scope


def _flask_environ(flask: Any) -> dict | None:
    """The WSGI environ of Flask's current request, or None outside one: read from Flask's
    context variable (private to Flask, so looked up defensively; else the public calls)."""
    var = getattr(getattr(flask, "globals", None), "_cv_request", None)
    if var is not None:
        ctx = var.get(None)
        return ctx.request.environ if ctx is not None else None
    return flask.request.environ if flask.has_request_context() else None


#: The WSGI environ key werkzeug's ``Request`` puts itself under (its ``populate_request``,
#: on by default; Flask's requests use it).
WERKZEUG_REQUEST = "werkzeug.request"


def route_of(scope: Scope) -> str | None:
    """The route template of ``scope``'s request (``/v1/users/<user_id>/points``): given, or the
    rule Flask matched for the request werkzeug put in its environ; ``None`` before routing,
    for an unmatched request or outside a request. Read only when needed (a metric, the
    response's start, an exception Flask lets through: Flask removes the request from the
    environ when it ends): noting it when Flask assigns the rule took a request class of our
    own, which cost every request more than the rest of RED (``benchmarks/gunicorn_bench.py``)."""
    route = scope.route
    if route is None and scope.environ is not None:
        try:
            rule = getattr(scope.environ.get(WERKZEUG_REQUEST), "url_rule", None)
            if rule is None:
                # a view (or a library) that made a ``werkzeug.Request(environ)`` of its own
                # replaced Flask's request there; Flask's current request still has the rule
                rule = _flask_rule()
            if rule is not None:
                route = scope.route = str(rule.rule)
        except Exception as exc:  # an exotic request or Rule class: the request goes on
            _errors.record("internal", f"route template not read: {exc!r}")
    return route


def _flask_rule() -> object:
    """The rule of Flask's current request, or None (no request context, no match, no Flask:
    a worker process need not import it)."""
    flask = sys.modules.get("flask")
    if flask is None or not flask.has_request_context():
        return None
    return flask.request.url_rule
