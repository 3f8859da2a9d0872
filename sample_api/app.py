"""The Flask app factory."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from flask import Flask, current_app

from sample_api import problems
from sample_api.config import Config, ConfigError
from sample_api.domain import PointsService
from sample_api.ratelimit import RateLimiter
from sample_api.storage import Storage, open_storage
from telemetry.flask import instrument

EXTENSION = "sample_api"


@dataclass(slots=True)
class AppState:
    """What the views need, kept in ``app.extensions["sample_api"]``."""

    config: Config
    storage: Storage
    service: PointsService
    limiter: RateLimiter
    openapi: dict[str, Any]


def state() -> AppState:
    """The state of the current app (inside a request or app context)."""
    return current_app.extensions[EXTENSION]


def load_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document shipped in the package (``sample_api/openapi.json``)."""
    return json.loads(resources.files("sample_api").joinpath("openapi.json").read_text("utf-8"))


def _open_storage(config: Config) -> Storage:
    try:
        return open_storage(config.storage_env())
    except ValueError as exc:  # e.g. POINTS_TABLE missing for POINTS_STORE=dynamodb
        raise ConfigError(str(exc)) from None


def check_config(env: Mapping[str, str] | None = None) -> Config:
    """Everything ``create_app()`` would refuse, checked up front (gunicorn's master calls this):
    the settings and the storage backend's own variables. Raises :class:`ConfigError`."""
    config = Config.from_env(env)
    _open_storage(config).close()  # opening a backend does no I/O
    return config


def create_app(config: Config | None = None, *, storage: Storage | None = None) -> Flask:
    """Build the points service. ``config`` defaults to ``Config.from_env()`` (which raises
    ``ConfigError`` on a bad variable); ``storage`` defaults to ``open_storage()`` of the config
    (a backend that cannot be configured raises ``ConfigError`` too)."""
    from sample_api.views import health, meta, points

    config = config or Config.from_env()
    app = Flask("sample_api")
    # werkzeug enforces this while reading the body and raises 413, rendered as a problem.
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    store = storage if storage is not None else _open_storage(config)
    app.extensions[EXTENSION] = AppState(
        config=config,
        storage=store,
        service=PointsService(store, rate=config.points_rate),
        limiter=RateLimiter(config.rate_limit),
        openapi=load_openapi(),
    )
    problems.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(meta.bp)
    app.register_blueprint(points.bp)
    # RED metrics, the JSON access line and a server span per request; health checks excluded.
    instrument(app)
    return app
