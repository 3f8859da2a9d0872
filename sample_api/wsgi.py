"""WSGI entry point: ``gunicorn -c sample_api/gunicorn.conf.py sample_api.wsgi:app``."""

from __future__ import annotations

import sys

import telemetry
from points.settings import ConfigError
from sample_api import lifecycle
from sample_api.app import create_app
from sample_api.config import Config

# gunicorn's "App failed to load" worker exit status: the master stops instead of respawning a
# worker that can never start.
_APP_LOAD_ERROR = 4

SERVICE_NAME = "points-service"

try:
    _config = Config.from_env()
    # The process entry point owns process-wide set-up; create_app() only instruments the app.
    telemetry.configure(version=_config.version, default_service=SERVICE_NAME)
    app = create_app(_config)
    lifecycle.install(app)  # readiness answers 503 while the server drains on SIGTERM
except ConfigError as exc:
    print(f"points-service: configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(_APP_LOAD_ERROR) from None
