"""Start real child processes (gunicorn, moto's server) on 127.0.0.1 and always stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers (any HTTP status), the process dies, or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def stop(proc: subprocess.Popen, timeout_s: float = 15.0) -> int:
    """SIGTERM the process group, then SIGKILL whatever is left after ``timeout_s``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


@contextlib.contextmanager
def child(
    args: list[str],
    *,
    env: Mapping[str, str] | None = None,
    ready_url: str | None = None,
    stdout: int | object = subprocess.DEVNULL,
    stderr: int | object = subprocess.DEVNULL,
    cwd: Path = ROOT,
) -> Iterator[subprocess.Popen]:
    """Run ``args`` in its own process group; wait for ``ready_url``; stop it on exit."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        args, env=full_env, cwd=cwd, stdout=stdout, stderr=stderr, start_new_session=True
    )
    try:
        if ready_url:
            wait_http(ready_url, proc=proc)
        yield proc
    finally:
        stop(proc)


@contextlib.contextmanager
def gunicorn(
    app: str = "sample_api.wsgi:app",
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    config: str = "sample_api/gunicorn.conf.py",
    ready_path: str = "/healthz",
    stdout: int | object = subprocess.DEVNULL,
    stderr: int | object = subprocess.DEVNULL,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run a real gunicorn on 127.0.0.1; yields ``(base_url, process)``."""
    port = port or free_port()
    args = [sys.executable, "-m", "gunicorn", "-c", config, app]
    base = f"http://127.0.0.1:{port}"
    # No drain on SIGTERM unless a test asks for one: stopping is then as quick as it can be.
    run_env = {
        "PORT": str(port),
        "BIND": f"127.0.0.1:{port}",
        "GUNICORN_DRAIN_S": "0",
        **(env or {}),
    }
    with child(
        args, env=run_env, ready_url=base + ready_path, stdout=stdout, stderr=stderr
    ) as proc:
        yield base, proc


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server (SQS, DynamoDB, CloudWatch, CodeDeploy, ...) over HTTP; yields its endpoint URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with child(args, ready_url=url + "/moto-api/"):
        yield url
