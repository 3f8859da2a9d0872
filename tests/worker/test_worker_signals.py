"""SIGTERM/SIGINT handling must take no lock.

A Python signal handler runs in the main thread between two bytecodes of whatever it
interrupted. If the handler takes a lock (``threading.Event.set`` takes its condition's lock)
and it interrupted code holding that same lock (the main thread's own ``Event.wait`` re-acquires
it every poll; or a first handler still inside ``set`` when a second signal lands, as when
``timeout``, a container runtime or a terminal signals both the process and its group), the main
thread waits for itself forever: the worker ignores every later SIGTERM and never exits.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import worker.__main__ as cli
from points import open_storage
from worker._config import WorkerConfig
from worker._runner import Worker

_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def _locks_taken(call: Callable[[], object]) -> list[str]:
    """The lock operations ``call`` performs (C calls on a lock object), in order."""
    taken: list[str] = []

    def profile(_frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and isinstance(getattr(arg, "__self__", None), _LOCK_TYPES):
            taken.append(arg.__name__)

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return taken


def _installed_handlers(monkeypatch: pytest.MonkeyPatch) -> dict[int, Any]:
    """Run ``python -m worker`` in-process up to its first configuration error (no QUEUE_URL)
    and return the signal handlers it installed (not installed for real)."""
    handlers: dict[int, Any] = {}
    monkeypatch.setattr(cli.signal, "signal", lambda signum, h: handlers.__setitem__(signum, h))
    monkeypatch.delenv("QUEUE_URL", raising=False)
    assert cli.main(["run"]) == 2
    return handlers


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_cli_signal_handler_takes_no_lock(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], signum: int
) -> None:
    handler = _installed_handlers(monkeypatch)[signum]
    assert _locks_taken(lambda: handler(signum, None)) == []
    assert _locks_taken(lambda: handler(signum, None)) == []  # a second signal too
    assert "QUEUE_URL is required" in capsys.readouterr().err


def test_request_stop_takes_no_lock_and_ends_wait(tmp_path: Path) -> None:
    config = WorkerConfig(
        queue_url="http://127.0.0.1:9/123456789012/q", endpoint_url="http://127.0.0.1:9"
    )
    storage = open_storage({"POINTS_DB_PATH": str(tmp_path / "p.db")})
    worker = Worker(config, storage)
    try:
        # as a signal would: while the main thread holds the lock of the stop event (inside its
        # own Event.wait), the handler must neither take it nor any other
        with worker._stop._cond:
            assert _locks_taken(worker.request_stop) == []
        assert worker.stopping
        # the main thread's wait() turns the request into a stop (no receiver was started, so
        # there is nothing to hand back)
        worker._shutdown = lambda: True  # type: ignore[method-assign]
        assert worker.wait() is True
        assert worker._stop.is_set()
    finally:
        storage.close()
