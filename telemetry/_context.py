"""Per-request / per-job state carried in a context variable (thread- and asyncio-safe)."""

from __future__ import annotations

from contextvars import ContextVar


class Scope:
    """What log lines and metrics need to know about the request or job in progress."""

    __slots__ = ("attributes", "fields", "request_id", "route")

    def __init__(self, request_id: str, route: str | None = None) -> None:
        self.request_id = request_id
        self.route = route
        self.fields: dict[str, object] | None = None  # extra fields for every log line (jobs)
        #: ``telemetry.annotate()``d fields of a request: on its server span and its access line
        self.attributes: dict[str, str | bool | int | float] | None = None


current: ContextVar[Scope | None] = ContextVar("telemetry_scope", default=None)
