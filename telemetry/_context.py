"""Per-request / per-job state carried in a context variable (thread- and asyncio-safe)."""

from __future__ import annotations

import sys
from contextvars import ContextVar

from telemetry import _errors


class Scope:
    """What log lines and metrics need to know about the request or job in progress."""

    __slots__ = ("attributes", "environ", "fields", "request_id", "route")

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


current: ContextVar[Scope | None] = ContextVar("telemetry_scope", default=None)


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
