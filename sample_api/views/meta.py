"""Service metadata: the running version, the limiter settings, the ledger formats it reads and
writes, and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from sample_api.state import current_state

bp = Blueprint("meta", __name__)


@bp.get("/version")
def version() -> Response:
    cfg = current_state().config
    return jsonify(
        version=cfg.version,
        rate_limiter=cfg.rate_limit.to_dict(),
        ledger_formats=cfg.formats.to_dict(),
    )


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(current_state().openapi)
