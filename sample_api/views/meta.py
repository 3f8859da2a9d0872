"""Service metadata: the running version, the limiter settings and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from sample_api.app import state

bp = Blueprint("meta", __name__)


@bp.get("/version")
def version() -> Response:
    cfg = state().config
    return jsonify(version=cfg.version, rate_limiter=cfg.rate_limit.to_dict())


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(state().openapi)
