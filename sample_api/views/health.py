"""Liveness and readiness probes. Never rate limited."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from points import FormatUnsupported
from sample_api.problems import format_problem, problem
from sample_api.state import current_state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process serves requests. No I/O, so a slow store never kills the task."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: the store answers, in ledger formats this version reads (a 503
    ``ledger-format-unsupported`` problem names the formats otherwise)."""
    try:
        current_state().storage.ping()
    except FormatUnsupported as exc:
        current_app.logger.warning("not ready: %s", exc)
        return format_problem(exc)
    except Exception as exc:  # any backend failure means "not ready", never a 500
        current_app.logger.warning("not ready: %s", exc)
        return problem(
            503,
            "Not ready",
            "the points store cannot be reached",
            slug="storage-unavailable",
            headers={"Retry-After": "1"},
        )
    return jsonify(status="ready")
