"""Fork safety under a real gunicorn with 2 workers: no lost or duplicated windows at shutdown."""

from __future__ import annotations

import contextlib
import http.client
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import gunicorn

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def _served(env: dict[str, str], out: Path, err: Path) -> Iterator[str]:
    """The test service under a real gunicorn (tests/telemetry/gunicorn_conf.py), its stdout and
    stderr written to ``out`` and ``err``; its base URL. Leaving SIGTERMs it."""
    with (
        out.open("w") as stdout,
        err.open("w") as stderr,
        gunicorn(
            app="tests.telemetry.gunicorn_app:app",
            config="tests/telemetry/gunicorn_conf.py",
            env=env,
            stdout=stdout,
            stderr=stderr,
        ) as (base, _proc),
    ):
        yield base


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as r:
        r.read()
        return r.status


def _requests_in(text: str) -> int:
    """Requests in the complete EMF lines written so far (the last line may be half-written)."""
    total = 0
    for line in text.split("\n")[:-1]:
        if line.startswith('{"_aws"'):
            total += json.loads(line).get("Requests", 0)
    return total


@pytest.mark.parametrize(
    ("preload", "post_fork"),
    [(False, True), (True, True), (True, False)],
    ids=["post-fork-only", "preload", "preload-without-post-fork"],
)
def test_requests_counted_exactly_once_across_workers(
    tmp_path: Path, preload: bool, post_fork: bool
) -> None:
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    env = {
        # preload: the app's explicit configure(service=..., version=...) must win in workers
        "OTEL_SERVICE_NAME": "env-name" if preload else "fork-test",
        "APP_VERSION": "env-version" if preload else "vT",
        "TELEMETRY_FLUSH_INTERVAL_S": "1",
        "OTEL_TRACES_EXPORTER": "console",  # spans on stderr, exported by each worker's BSP
        "PRELOAD": "1" if preload else "0",
        "CONFIGURE_AT_IMPORT": "1" if preload else "0",
        # without it, each worker's spans go through the provider it inherited: the SDK gave
        # its batch processor a new thread and an empty queue; the last ones leave at exit
        "POST_FORK_CONFIGURE": "1" if post_fork else "0",
    }
    n_first, n_second = 40, 35
    with _served(env, out, err) as base:
        for i in range(n_first):
            assert _get(f"{base}/items/{i}") == 200
        # The workers' flush threads (re-created after fork) write the first batch's windows
        # once they end (1 s windows), long before shutdown: wait for them, boundedly.
        flushed = 0
        for _ in range(100):
            time.sleep(0.1)
            flushed = _requests_in(out.read_text())
            if flushed >= n_first:
                break
        assert flushed == n_first
        for i in range(n_second):
            assert _get(f"{base}/items/b{i}") == 200
    # leaving the block SIGTERMs gunicorn: workers flush the rest at exit
    lines = [json.loads(x) for x in out.read_text().splitlines() if x.startswith("{")]
    emf = [x for x in lines if "_aws" in x]
    logs = [x for x in lines if "_aws" not in x]
    requests = [x for x in emf if "Requests" in x]
    assert sum(x["Requests"] for x in requests) == n_first + n_second
    assert {x["Route"] for x in requests} == {"/items/<item_id>"}
    assert {x["Service"] for x in emf} == {"fork-test"} and {x["Version"] for x in requests} == {
        "vT"
    }
    assert all(x["_aws"]["Timestamp"] % 1000 == 0 for x in emf)
    assert len({x["_aws"]["Timestamp"] for x in requests}) >= 2  # more than one window
    assert sum(x["Latency"]["Count"] for x in requests) == n_first + n_second
    access = [x for x in logs if x.get("logger") == "telemetry.access"]
    assert len(access) == n_first + n_second
    assert len({x["request_id"] for x in access}) == len(access)  # unique across workers
    stderr_text = err.read_text()
    assert stderr_text.count("Booting worker") >= 2
    # each worker exported its own spans after fork: every request's span, once
    assert stderr_text.count('"name": "GET /items/<item_id>"') == n_first + n_second
    assert "TelemetryErrors" not in out.read_text()


def test_a_streamed_response_is_measured_until_its_last_chunk(tmp_path: Path) -> None:
    # a real server closes the body after its last chunk (or after a failure): the request's
    # latency, access line and span end then, and a body that fails midway is a server error
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    env = {"WORKERS": "1", "OTEL_TRACES_EXPORTER": "console", "TELEMETRY_FLUSH_INTERVAL_S": "1"}
    with _served(env, out, err) as base:
        with urllib.request.urlopen(f"{base}/stream/5", timeout=10) as r:
            assert r.read() == b"start;0;1;2;3;4;"
        with urllib.request.urlopen(f"{base}/stream/0", timeout=10) as r:
            assert r.status == 200  # sent before the body failed
            with contextlib.suppress(http.client.IncompleteRead):
                r.read()
    lines = [json.loads(x) for x in out.read_text().splitlines() if x.startswith("{")]
    access = {x["path"]: x for x in lines if x.get("logger") == "telemetry.access"}
    assert access["/stream/5"]["status"] == 200
    assert access["/stream/5"]["duration_ms"] >= 500  # five chunks, 100 ms apart (sleeps)
    assert (access["/stream/0"]["status"], access["/stream/0"]["level"]) == (500, "ERROR")
    emf = [x for x in lines if "_aws" in x and "Requests" in x]
    assert sum(x.get("ServerErrors", 0) for x in emf) == 1
    assert max(v for x in emf for v in x["Latency"]["Values"]) >= 500
    spans = err.read_text()
    assert '"name": "GET /stream/<int:n>"' in spans and '"status_code": "ERROR"' in spans
