"""A stdout nobody reads (a slow or stuck log driver) never stops the service (issue #11.4).

Real processes with their stdout on a pipe that the test does not read: requests keep being
answered (health checks included), the lines that do not fit are dropped and counted, nothing
crashes, output resumes when the reader does, and exit is not held by the full pipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.processes import ROOT, gunicorn

pytestmark = pytest.mark.slow


def _get(url: str) -> tuple[int, bytes]:
    # the timeout bounds a failure (a blocked worker); it is not a speed assertion
    with urllib.request.urlopen(url, timeout=15) as r:
        return r.status, r.read()


class Reader:
    """Reads a pipe in a thread once started (until then nobody reads it)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = bytearray()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def text(self) -> str:
        with self.lock:
            return self.data.decode("utf-8", "replace")


def test_gunicorn_keeps_answering_while_nobody_reads_stdout(tmp_path: Path) -> None:
    r, w = os.pipe()
    err = tmp_path / "stderr.log"
    env = {
        "WORKERS": "1",  # /stats then speaks for the only worker
        "OTEL_SERVICE_NAME": "stall-test",
        "TELEMETRY_FLUSH_INTERVAL_S": "1",
        "TELEMETRY_OUTPUT_BUFFER_BYTES": "65536",  # fills after ~64 lines of 1 KB
        "OTEL_TRACES_EXPORTER": "none",
    }
    reader = Reader(r)
    try:
        with (
            err.open("w") as stderr,
            gunicorn(
                app="tests.telemetry.gunicorn_app:app",
                config="tests/telemetry/gunicorn_conf.py",
                env=env,
                stdout=w,
                stderr=stderr,
            ) as (base, proc),
        ):
            os.close(w)
            w = -1
            # ~400 KB of log lines: the 64 KiB pipe and the 64 KiB buffer are both full
            assert _get(f"{base}/noise/400")[0] == 200
            for i in range(30):
                assert _get(f"{base}/items/{i}")[0] == 200
                assert _get(f"{base}/healthz")[0] == 200
            status, body = _get(f"{base}/stats")
            stats = json.loads(body)
            assert status == 200
            assert stats["counts"].get("output_dropped", 0) > 0, stats
            assert stats["errors"] >= stats["counts"]["output_dropped"]
            # the reader resumes: what the service writes from now on arrives
            reader.thread.start()
            marker = "marker-after-resume"
            deadline = time.monotonic() + 30
            while marker not in reader.text() and time.monotonic() < deadline:
                assert _get(f"{base}/items/{marker}")[0] == 200
                time.sleep(0.2)
            assert marker in reader.text()
            # the drops reach TelemetryErrors (an EMF line) once stdout is read again
            while '"TelemetryErrors"' not in reader.text() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert '"TelemetryErrors"' in reader.text()
        assert proc.returncode == 0  # a graceful stop: nothing crashed
    finally:
        if w >= 0:
            os.close(w)
        if reader.thread.ident is not None:
            reader.thread.join(10)  # every writer is gone: the reader sees the end of the pipe
        os.close(r)
    log = err.read_text()
    assert "Traceback" not in log and "Fatal Python error" not in log, log[-2000:]
    for line in reader.text().splitlines()[:-1]:  # every complete line is one JSON object
        json.loads(line)


SCRIPT = """
import telemetry
telemetry.configure(service="stall-script", json_logs=True)
log = telemetry.get_logger("script")
for i in range(2000):
    log.info("line %d %s", i, "y" * 500)
print("counts", telemetry.counts(), file=__import__("sys").stderr, flush=True)
"""


def test_a_process_exits_even_if_its_stdout_is_never_read() -> None:
    """1 MB of log lines into a pipe nobody ever reads: the program runs to its end and exits
    normally (shutdown's flush is bounded; no abort at exit while the writer thread is
    blocked on the pipe)."""
    r, w = os.pipe()
    env = {
        **os.environ,
        "TELEMETRY_SHUTDOWN_TIMEOUT_S": "0.5",
        "OTEL_TRACES_EXPORTER": "none",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=w, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )
    os.close(w)
    try:
        _, err = proc.communicate(timeout=60)  # bounds a hang; not a speed assertion
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(r)
    text = err.decode("utf-8", "replace")
    assert proc.returncode == 0, text[-2000:]
    assert "Fatal Python error" not in text and "Traceback" not in text
    assert "output_dropped" in text  # the drops were counted and reported on stderr
