"""RFC 9457 problem details: every error the service returns is ``application/problem+json``.

Handlers cover the app's own errors, werkzeug's HTTP errors (404, 405, 408, 413, 415, ...),
storage errors, gunicorn's errors while the app reads a body (400) and, last, anything unexpected (a 500 problem without a trace; the trace goes to the log).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, json
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from points import (
    FormatUnsupported,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidCursor,
    StorageError,
    StorageUnavailable,
    ValidationError,
)
from sample_api.auth import AuthError
from sample_api.ratelimit import RateLimited

PROBLEM_JSON = "application/problem+json"
# Problem type URIs (relative references, RFC 9457 section 3.1.1); "about:blank" is used for
# plain HTTP errors whose status says it all (404, 405, 413, 415, ...).
TYPE_BASE = "/problems/"


class BadRequest(Exception):
    """A request the API refuses with a problem of its own ``slug`` (400 unless told)."""

    def __init__(
        self, slug: str, title: str, detail: str, *, status: int = 400, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.slug = slug
        self.title = title
        self.detail = detail
        self.status = status
        self.extra = extra


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    slug: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem+json response. ``slug`` picks ``/problems/<slug>``; ``extra`` adds members."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug if slug else "about:blank",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v is not None})
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _http_error(exc: HTTPException) -> Response | HTTPException:
    if exc.code is None or exc.code < 400:
        return exc  # routing redirects (308 to the slash-terminated URL) stay as they are
    headers = {
        name: value
        for name, value in exc.get_headers()
        if name.lower() not in {"content-type", "content-length"}
    }
    detail = exc.description
    if isinstance(exc, RequestEntityTooLarge):
        detail = f"the body must be at most {current_app.config['MAX_CONTENT_LENGTH']} bytes"
    return problem(exc.code, exc.name, detail, headers=headers)


def _bad_request(exc: BadRequest) -> Response:
    return problem(exc.status, exc.title, exc.detail, slug=exc.slug, **exc.extra)


def _validation(exc: ValidationError) -> Response:
    return problem(400, "Invalid request", exc.detail, slug="validation-error", field=exc.field)


def _invalid_cursor(exc: InvalidCursor) -> Response:
    return problem(400, "Invalid cursor", str(exc), slug="invalid-cursor", field="cursor")


def _conflict(exc: IdempotencyConflict) -> Response:
    return problem(
        409, "Idempotency conflict", str(exc), slug="idempotency-conflict", field="order_id"
    )


def _insufficient(exc: InsufficientPoints) -> Response:
    return problem(
        409,
        "Insufficient points",
        str(exc),
        slug="insufficient-points",
        field="points",
        balance=exc.balance,
        requested=exc.requested,
    )


def _unavailable(exc: StorageError) -> Response:
    current_app.logger.warning("storage unavailable: %s", exc)
    return problem(
        503,
        "Storage unavailable",
        "the points store cannot be reached; try again later",
        slug="storage-unavailable",
        headers={"Retry-After": "1"},
    )


def format_problem(exc: FormatUnsupported) -> Response:
    """503 ``ledger-format-unsupported``: this version does not read the store's (or the user's)
    records. Another version may (during blue/green the listener may route the retry there)."""
    return problem(
        503,
        "Ledger format not readable by this version",
        exc.detail,
        slug="ledger-format-unsupported",
        headers={"Retry-After": "1"},
        formats_readable=list(exc.readable),
        formats_found=list(exc.found),
        user_id=exc.user_id,
        records=list(exc.records) or None,
    )


def _format_unsupported(exc: FormatUnsupported) -> Response:
    current_app.logger.warning("ledger format not readable: %s", exc)
    return format_problem(exc)


def _rate_limited(exc: RateLimited) -> Response:
    return problem(
        429,
        "Too many requests",
        f"the request rate limit is exceeded; retry after {exc.retry_after_s} s",
        slug="rate-limited",
        headers={"Retry-After": str(exc.retry_after_s)},
    )


def _unparsable_body(exc: Exception) -> Response:
    # The server could not parse the body the app was reading (a bad chunk size or extension, a
    # missing chunk terminator): the client's fault, not a 500.
    return problem(400, "Bad Request", f"the request body cannot be parsed: {exc}"[:300])


def _auth(exc: AuthError) -> Response:
    headers = {"WWW-Authenticate": exc.challenge} if exc.challenge else {}
    if exc.status == 503:
        headers["Retry-After"] = "1"
    return problem(exc.status, exc.title, exc.detail, slug=exc.slug, headers=headers)


def _unexpected(exc: InternalServerError) -> Response:
    # Flask reached this through its handler for unhandled exceptions: it logged the trace for
    # operators ("Exception on <path> [<method>]") and signalled got_request_exception, which
    # puts the exception on the request's server span. The client gets no internals.
    return problem(500, "Internal server error", "an unexpected error occurred", slug="internal")


def register(app: Flask) -> None:
    """Install every error handler on ``app``."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(BadRequest, _bad_request)
    app.register_error_handler(ValidationError, _validation)
    app.register_error_handler(InvalidCursor, _invalid_cursor)
    app.register_error_handler(IdempotencyConflict, _conflict)
    app.register_error_handler(InsufficientPoints, _insufficient)
    app.register_error_handler(StorageUnavailable, _unavailable)
    app.register_error_handler(FormatUnsupported, _format_unsupported)
    app.register_error_handler(StorageError, _unavailable)
    app.register_error_handler(RateLimited, _rate_limited)
    try:  # gunicorn's parser errors reach the app while it reads a chunked body
        from gunicorn.http.errors import ParseException
    except ImportError:  # another server, or none (tests)
        pass
    else:
        app.register_error_handler(ParseException, _unparsable_body)
    app.register_error_handler(AuthError, _auth)
    # not ``Exception``: a handler for it takes every exception before Flask's own handling of
    # unhandled ones (its log line with the trace, got_request_exception for telemetry's span)
    app.register_error_handler(InternalServerError, _unexpected)
