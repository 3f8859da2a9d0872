"""A tiny service for the fork-safety and stalled-stdout tests, run by a real gunicorn
(tests/telemetry/gunicorn_conf.py)."""

from __future__ import annotations

import os
import time

import flask

import telemetry
from telemetry.flask import instrument

if os.environ.get("CONFIGURE_AT_IMPORT") == "1":
    # as a service does at start-up; with preload_app this runs in the master, before fork, and
    # the post_fork hook's bare configure() repeats these arguments in each worker
    telemetry.configure(service="fork-test", version="vT")

app = flask.Flask(__name__)


@app.get("/healthz")
def healthz() -> str:
    return "ok"


@app.get("/items/<item_id>")
def item(item_id: str) -> dict[str, str]:
    telemetry.get_logger(__name__).info("item %s", item_id)
    return {"item": item_id}


@app.get("/noise/<int:n>")
def noise(n: int) -> dict[str, int]:
    """``n`` log lines of ~1 KB: fills a pipe nobody reads quickly."""
    log = telemetry.get_logger(__name__)
    for i in range(min(n, 10_000)):
        log.info("noise %d %s", i, "x" * 1000)
    return {"lines": n}


@app.get("/stream/<int:n>")
def stream(n: int) -> flask.Response:
    """``n`` chunks, 100 ms apart; ``n`` of 0 fails after its first chunk."""

    def body():  # type: ignore[no-untyped-def]
        yield "start;"
        if n == 0:
            raise OSError("the upstream went away")
        for i in range(min(n, 50)):
            time.sleep(0.1)
            yield f"{i};"

    return flask.Response(body(), mimetype="text/plain")


@app.get("/stats")
def stats() -> dict[str, object]:
    """This worker's telemetry counters (the stalled-stdout test reads the drops here)."""
    return {"errors": telemetry.error_count(), "counts": telemetry.counts(), "pid": os.getpid()}


instrument(app)
