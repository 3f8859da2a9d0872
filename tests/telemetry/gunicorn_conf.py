"""gunicorn settings for the fork-safety test: 2 workers, telemetry re-configured after fork."""

import os

import telemetry

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WORKERS", "2"))
graceful_timeout = 15
preload_app = os.environ.get("PRELOAD") == "1"


def post_fork(server, worker):
    # POST_FORK_CONFIGURE=0: an app that configures once, in the master (preload_app), and
    # leaves the workers with what fork gave them
    if os.environ.get("POST_FORK_CONFIGURE", "1") == "1":
        telemetry.configure()
