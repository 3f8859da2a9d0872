"""A tiny service for the fork-safety test, run by a real gunicorn (tests/telemetry/gunicorn_conf.py)."""

from __future__ import annotations

import os

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


instrument(app)
