"""The points API: grants, redemptions and a user's balance with history. Rate limited."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

import telemetry
from points.domain import (
    ValidationError,
    validate_grant,
    validate_id,
    validate_limit,
    validate_redemption,
)
from points.storage import LedgerEntry
from sample_api import auth, ratelimit
from sample_api.problems import BadRequest
from sample_api.state import current_state

bp = Blueprint("points", __name__)


# Who is calling comes first: an anonymous or forged request is refused before it can take a
# rate-limiter token from real callers, and before its body is read.
bp.before_request(auth.authenticate)


@bp.before_request
def _limit() -> None:
    ratelimit.enforce(current_state().limiter)


bp.after_request(ratelimit.server_timing)


def _store_span(operation: str) -> telemetry.Span:
    """The child span around one ledger call (``store.grant``, ...): where the time went when
    the database is slow. An explicit span rather than opentelemetry-instrumentation-sqlite3,
    which sees only ``cursor.execute`` (the ledger uses ``Connection.execute``) and would cost
    ~19 us per statement, 6 statements a grant (docs/telemetry.md, "Spans")."""
    return telemetry.span(f"store.{operation}", **{"db.system.name": current_state().config.store})


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _read_body() -> bytes:
    limit = request.max_content_length
    if request.content_length is not None or limit is None:
        return request.get_data(cache=False)  # werkzeug answers 413 above the declared limit
    if not request.environ.get("wsgi.input_terminated"):
        return b""  # no length and no chunked framing: no body (as werkzeug reads it)
    # A chunked body: werkzeug would silently cut it at the limit, so read one byte past it.
    stream = request.environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge()
    return b"".join(chunks)


class _EncodedBody(UnsupportedMediaType):
    """415 for a body with a content coding: ``Accept-Encoding: identity`` says what would be
    accepted (RFC 9110 section 15.5.16)."""

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [*super().get_headers(*args, **kwargs), ("Accept-Encoding", "identity")]


def _codings(header: str, plain: set[str]) -> list[str]:
    codings = [c.strip().lower() for c in request.headers.get(header, "").split(",")]
    return [c for c in codings if c and c not in plain]


def _check_not_encoded() -> None:
    # Nothing here decompresses: a gzip body would be read as the JSON text itself (400 "not
    # UTF-8"), and a plain body labelled gzip would be taken, so any coding is refused. The same
    # for a transfer coding: gunicorn undoes "chunked" only and passes "gzip, chunked" through.
    for header, plain in (
        ("Content-Encoding", {"identity"}),
        ("Transfer-Encoding", {"identity", "chunked"}),
    ):
        encoded = _codings(header, plain)
        if encoded:
            raise _EncodedBody(
                f"the body must not be compressed or encoded ({header}: {encoded[0][:40]}); "
                "send it as is"
            )


def json_body() -> Any:
    """The request body as JSON: 415 unless ``application/json`` (UTF-8) without a content
    coding, 413 over the size limit (werkzeug), 400 ``malformed-json`` when it does not parse.
    Strict: no NaN/Infinity, no duplicate keys."""
    _check_not_encoded()
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            f"the body must be application/json, not {request.mimetype or 'missing'}"
        )
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in {"utf-8", "utf8"}:
        raise UnsupportedMediaType(f"the body must be UTF-8 encoded, not {charset}")
    data = _read_body()
    try:
        return json.loads(
            data.decode("utf-8"),
            parse_constant=_reject_constant,
            object_pairs_hook=_no_duplicates,
        )
    except json.JSONDecodeError as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except UnicodeDecodeError:
        detail = "the body is not valid UTF-8"
    except (ValueError, RecursionError) as exc:  # huge integers, nesting, NaN, duplicates
        detail = str(exc)[:200] or type(exc).__name__
    raise BadRequest("malformed-json", "Malformed JSON", f"the body is not valid JSON: {detail}")


@bp.post("/v1/points/grants")
def create_grant() -> tuple[Response, int]:
    state = current_state()
    auth.require_scope(auth.GRANT_SCOPE)  # the order system, not a customer
    grant = validate_grant(json_body())
    telemetry.annotate(user_id=grant.user_id)
    with _store_span("grant"):
        outcome = state.service.grant(grant)
    e = outcome.entry
    body = {
        "grant_id": e.entry_id,
        "user_id": e.user_id,
        "order_id": e.order_id,
        "amount_jpy": e.amount_jpy,
        "points": e.points,
        "balance": e.balance,
    }
    return jsonify(body), 201 if outcome.created else 200


@bp.post("/v1/points/redemptions")
def create_redemption() -> tuple[Response, int]:
    state = current_state()
    redemption = validate_redemption(json_body())
    auth.require_owner(redemption.user_id)  # before the ledger is touched
    telemetry.annotate(user_id=redemption.user_id)
    with _store_span("redeem"):
        outcome = state.service.redeem(redemption)
    e = outcome.entry
    body = {
        "redemption_id": e.entry_id,
        "user_id": e.user_id,
        "order_id": e.order_id,
        "points": e.points,
        "balance": e.balance,
    }
    return jsonify(body), 201 if outcome.created else 200


def _query(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise ValidationError(f"{name} may be given only once", name)
    return values[0] if values else None


def _entry(e: LedgerEntry) -> dict[str, Any]:
    return {
        "entry_id": e.entry_id,
        "kind": e.kind,
        "order_id": e.order_id,
        "amount_jpy": e.amount_jpy,
        "points": e.points,
        "balance": e.balance,
        "created_at": e.created_at,
    }


@bp.get("/v1/users/<user_id>/points")
def user_points(user_id: str) -> Response:
    auth.require_owner(user_id)
    validate_id(user_id, "user_id")
    telemetry.annotate(user_id=user_id)
    limit = validate_limit(_query("limit"))
    cursor = _query("cursor") or None  # an empty cursor means the first page
    with _store_span("history"):
        page = current_state().storage.history(user_id, limit=limit, cursor=cursor)
    return jsonify(
        user_id=user_id,
        balance=page.balance,
        entries=[_entry(e) for e in page.entries],
        next_cursor=page.next_cursor,
    )
