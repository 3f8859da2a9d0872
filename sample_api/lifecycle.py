"""Process life-cycle of the points service under gunicorn: worker start and the stop on SIGTERM.

Stopping (gunicorn's master gets SIGTERM, as ECS sends it to the container's main process):

1. ``/readyz`` answers 503 ``shutting-down`` at once, in every worker, so a load balancer that
   checks readiness stops routing here;
2. the server keeps accepting and serving for ``drain_s`` seconds, so requests already on their way
   (queued in the kernel's accept queue, or sent by a balancer that has not noticed yet) are
   answered instead of reset;
3. then gunicorn's graceful stop: the listening socket closes, workers finish their in-flight
   requests within ``graceful_timeout``, and exit.

A second SIGTERM while draining changes nothing; SIGINT or SIGQUIT stop at once as usual.
"""

from __future__ import annotations

import mmap
import os
import signal
import threading
from typing import Any

from flask import Flask, Response, request

import telemetry

# One byte shared by the master and every worker it forks (an anonymous shared mapping created
# at import, i.e. in the master, before any fork): 1 while the server drains.
_DRAINING = mmap.mmap(-1, 1)

READY_PATH = "/readyz"


def draining() -> bool:
    """Whether this server has been asked to stop (readiness then answers 503)."""
    return _DRAINING[0] == 1


def start_draining() -> None:
    _DRAINING[0] = 1


def post_fork() -> None:
    """Run in every gunicorn worker right after ``fork()``, before the app is loaded.

    The service's own per-process resources need nothing here: SQLite connections and the rate
    limiter's bucket are created lazily and keyed by process id, so nothing opened in the master
    is ever reused by a worker. Process-wide clients that are not lazy (telemetry's exporters
    and flush thread) are (re)started here.
    """
    telemetry.configure()  # the same settings as before the fork, with fresh threads and buffers


def drain_on_sigterm(arbiter: Any, drain_s: float) -> None:
    """Make gunicorn's master drain on SIGTERM as the module docstring describes.

    Called from gunicorn's ``when_ready`` hook with the arbiter. gunicorn handles SIGTERM in its
    main loop by calling ``arbiter.handle_term()`` (which stops); this wraps it: the first SIGTERM
    starts the drain and a timer, which signals the master again after ``drain_s`` seconds."""
    stop = arbiter.handle_term
    drained = threading.Event()

    def handle_term() -> None:
        if drain_s <= 0 or drained.is_set():
            start_draining()
            stop()  # raises StopIteration: gunicorn's graceful stop
            return
        if draining():
            return  # already draining: a repeated SIGTERM does not cut it short
        start_draining()
        arbiter.log.info(
            "SIGTERM: readiness now answers 503; serving %g s more before stopping", drain_s
        )

        def finish() -> None:
            drained.set()
            os.kill(os.getpid(), signal.SIGTERM)  # back through gunicorn's signal queue

        timer = threading.Timer(drain_s, finish)
        timer.daemon = True
        timer.start()

    arbiter.handle_term = handle_term


def install(app: Flask) -> None:
    """Answer readiness with 503 while the server drains (see the module docstring)."""
    from sample_api.problems import problem

    @app.before_request
    def _not_ready_while_draining() -> Response | None:
        if request.path == READY_PATH and draining():
            return problem(
                503,
                "Shutting down",
                "this instance is stopping; send new requests elsewhere",
                slug="shutting-down",
                headers={"Retry-After": "1"},
            )
        return None
