"""gunicorn settings for the fork-safety test: 2 workers, telemetry re-configured after fork."""

import os

import telemetry

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WORKERS", "2"))
graceful_timeout = 15
preload_app = os.environ.get("PRELOAD") == "1"


def post_fork(server, worker):
    telemetry.configure()
