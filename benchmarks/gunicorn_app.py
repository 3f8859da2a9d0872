"""The telemetry benchmark's trivial endpoint as a real gunicorn app, for ``gunicorn_bench``.

``BENCH_VARIANT`` picks it: ``bare`` (plain Flask), ``red`` (RED metrics only) or ``full`` (RED,
access line and server span at 100 % sampling). EMF and access lines go to the process's stdout
(the benchmark points it at /dev/null: real writes by telemetry's writer thread), spans through a
``BatchSpanProcessor`` to a no-op exporter, as in ``telemetry_bench``.
"""

from __future__ import annotations

import os

import flask

import telemetry
from benchmarks.environment_variables import BENCH_VARIANT
from telemetry.flask import instrument

VARIANT = os.environ.get(BENCH_VARIANT, "bare")


def _exporter():  # the same no-op exporter as the in-process benchmark
    from benchmarks.telemetry_bench import NoopExporter

    return NoopExporter()


def configure() -> None:
    """Telemetry for this process (gunicorn's post_fork calls it in each worker)."""
    if VARIANT != "bare":
        telemetry.configure("bench", "v1", span_exporter=_exporter(), access_log_sample=1.0)


app = flask.Flask("bench")


@app.get("/v1/users/<user_id>/points")
def points(user_id: str) -> dict[str, object]:
    return {"user_id": user_id, "points": 42}


if VARIANT == "red":
    instrument(app, access_log=False, tracing=False)
elif VARIANT == "full":
    instrument(app)
elif VARIANT == "access":  # for a breakdown: the access line without the span
    instrument(app, tracing=False)
elif VARIANT == "span":  # the span without the access line
    instrument(app, access_log=False)


def post_fork(server: object, worker: object) -> None:
    configure()
