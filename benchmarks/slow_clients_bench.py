"""Points service: health-check latency while N slow clients hold connections, before and after.

"Before" is gunicorn's ``sync`` worker (what the service ran until the slow-peer fix; forced with
``--worker-class sync --threads 1`` on the command line, which overrides the config file), "after"
is the service's own configuration. Each slow client declares ``Content-Length: 100`` and sends 4
bytes. Two workers in both runs; the worker timeout is cut to 10 s so "before" ends in time
(it was 30 s). Prints one line per (server, N); nothing is asserted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from points.environment_variables import POINTS_DB_PATH
from sample_api import environment_variables as api_env
from telemetry.environment_variables import AWS_EMF_ENVIRONMENT

ROOT = Path(__file__).resolve().parents[1]
SLOW_CLIENTS = (2, 8, 24)
WAIT_LIMIT_S = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health_latency(port: int) -> str:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/healthz", timeout=WAIT_LIMIT_S
        ) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        return f"no answer within {WAIT_LIMIT_S:g} s"
    return f"{status} after {time.perf_counter() - started:6.3f} s"


def _run(label: str, extra: list[str], folder: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        api_env.BIND: f"127.0.0.1:{port}",
        POINTS_DB_PATH: str(folder / f"{label}.db"),
        api_env.GUNICORN_TIMEOUT: "10",
        api_env.GUNICORN_DRAIN_S: "0",
        api_env.AUTH_MODE: "off",  # only /healthz is measured: no tokens involved
        AWS_EMF_ENVIRONMENT: "",
    }
    args = [sys.executable, "-m", "gunicorn", "-c", "sample_api/gunicorn.conf.py", *extra]
    proc = subprocess.Popen(
        [*args, "sample_api.wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                break
            time.sleep(0.1)
        for n in SLOW_CLIENTS:
            slow = []
            for _ in range(n):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(
                    b"POST /v1/points/grants HTTP/1.1\r\nHost: b\r\n"
                    b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a"'
                )
                slow.append(sock)
            time.sleep(0.5)  # let the workers pick the slow requests up
            print(f"{label:<34}, {n:2d} slow clients: health check {_health_latency(port)}")
            for sock in slow:
                sock.close()
            time.sleep(1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="slow-bench-") as tmp:
        _run("before: sync workers", ["--worker-class", "sync", "--threads", "1"], Path(tmp))
        _run("after: bounded threads (defaults)", [], Path(tmp))


if __name__ == "__main__":
    main()
