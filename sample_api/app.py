"""The Flask app factory."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from flask import Flask

from points import PointsService, Storage, open_storage
from sample_api import problems
from sample_api.config import Config
from sample_api.ratelimit import RateLimiter
from sample_api.state import AppState, init_app
from sample_api.tokens import Verifier
from sample_api.views import health, meta
from sample_api.views import points as points_api
from telemetry.flask import instrument


def load_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document shipped in the package (``sample_api/openapi.json``)."""
    return json.loads(resources.files("sample_api").joinpath("openapi.json").read_text("utf-8"))


def check_config(env: Mapping[str, str] | None = None) -> Config:
    """Everything ``create_app()`` would refuse, checked up front (gunicorn's master calls this):
    the settings, the storage backend's own variables and the JWKS file. Raises
    :class:`ConfigError`."""
    config = Config.from_env(env)
    open_storage(config.storage_env()).close()  # opening a backend does no I/O
    _verifier(config)
    return config


def _verifier(config: Config) -> Verifier | None:
    # A JWKS URL is not fetched here: start-up must not depend on the issuer being reachable.
    return None if config.auth.mode == "off" else Verifier(config.auth)


def create_app(config: Config | None = None, *, storage: Storage | None = None) -> Flask:
    """Build the points service. ``config`` defaults to ``Config.from_env()`` (which raises
    ``ConfigError`` on a bad variable); ``storage`` defaults to ``open_storage()`` of the config
    (a backend that cannot be configured raises ``ConfigError`` too, and so do authentication
    settings without an issuer, an audience and its keys, unless ``AUTH_MODE=off``)."""
    config = config or Config.from_env()
    verifier = _verifier(config)  # before the store is opened: nothing to close on failure
    app = Flask("sample_api")
    # "/v1/users//alice/points" (or "alice%2F") is an unknown route (404 problem), not a 308
    # text/html redirect that werkzeug would send before any check ran.
    app.url_map.merge_slashes = False
    # werkzeug enforces this while reading the body and raises 413, rendered as a problem.
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    store = storage if storage is not None else open_storage(config.storage_env())
    init_app(
        app,
        AppState(
            config=config,
            storage=store,
            service=PointsService(store, rate=config.points_rate),
            limiter=RateLimiter(config.rate_limit),
            openapi=load_openapi(),
            verifier=verifier,
        ),
    )
    problems.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(meta.bp)
    app.register_blueprint(points_api.bp)
    # RED metrics, the JSON access line and a server span per request; health checks excluded.
    instrument(app)
    return app
