"""WSGI entry point: ``gunicorn -c sample_api/gunicorn.conf.py sample_api.wsgi:app``."""

from __future__ import annotations

import sys

from sample_api.app import create_app
from sample_api.config import ConfigError

# gunicorn's "App failed to load" worker exit status: the master stops instead of respawning a
# worker that can never start.
_APP_LOAD_ERROR = 4

try:
    app = create_app()
except ConfigError as exc:
    print(f"points-service: configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(_APP_LOAD_ERROR) from None
