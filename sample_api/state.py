"""The app's per-process state, kept in ``app.extensions["sample_api"]`` (Flask's place for it).

The app factory builds it; views read it through :func:`current_state` inside a request. This
module imports neither the factory nor the views, so the dependency runs one way:
``app -> views -> state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from points import PointsService, Storage
from sample_api.config import Config
from sample_api.ratelimit import RateLimiter
from sample_api.tokens import Verifier

EXTENSION = "sample_api"


@dataclass(slots=True)
class AppState:
    """What the views need: the settings, the store and the service over it, the rate limiter
    (one bucket per process), the OpenAPI document and the token verifier (None with
    ``AUTH_MODE=off``)."""

    config: Config
    storage: Storage
    service: PointsService
    limiter: RateLimiter
    openapi: dict[str, Any]
    verifier: Verifier | None


def init_app(app: Flask, state: AppState) -> None:
    """Attach ``state`` to ``app``."""
    app.extensions[EXTENSION] = state


def current_state() -> AppState:
    """The state of the current app (inside a request or app context)."""
    return current_app.extensions[EXTENSION]


def state_of(app: Flask) -> AppState:
    """The state of ``app`` (outside a request: tests, benchmarks, shutdown)."""
    return app.extensions[EXTENSION]
