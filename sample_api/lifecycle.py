"""Process life-cycle hooks (gunicorn calls them from ``sample_api/gunicorn.conf.py``)."""

from __future__ import annotations

import telemetry


def post_fork() -> None:
    """Run in every gunicorn worker right after ``fork()``, before the app is loaded.

    The service's own per-process resources need nothing here: SQLite connections and the rate
    limiter's bucket are created lazily and keyed by process id, so nothing opened in the master
    is ever reused by a worker. Process-wide clients that are not lazy (telemetry's exporters
    and flush thread) are (re)started here.
    """
    telemetry.configure()  # the same settings as before the fork, with fresh threads and buffers
