"""Telemetry under a real gunicorn at saturation: throughput of bare Flask, RED only and full
telemetry, side by side in one run.

Three gunicorn servers (``benchmarks.gunicorn_app``, one gthread worker with 4 threads each, on
127.0.0.1) run at once; only one is driven at a time, the others sleep in ``accept``. A client
process keeps ``CONNECTIONS`` keep-alive connections busy in a closed loop (each sends its next
request as soon as the previous answer arrived), so the server's worker is saturated: its
requests per second is its capacity. The worker's CPU time per request (``/proc``) is printed too:
on a busy 2-core machine, where the client needs most of the other core, it is the steadier
estimate of the same ratio. Rounds interleave the variants (the order rotates) and each
variant's figure is its median round; the ratio is to bare Flask's.

Bounded: ``ROUNDS`` x 3 variants x ``SECONDS`` of load plus start-up, every socket with a
timeout, 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("bare", "red", "full")
LABELS = {"bare": "bare Flask", "red": "telemetry RED only", "full": "telemetry full"}
TARGETS = {"red": 0.97, "full": 0.90}
CONNECTIONS = 32
SECONDS = 3.0
ROUNDS = 7
REQUEST = b"GET /v1/users/u-42/points HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(variant: str) -> Iterator[tuple[int, subprocess.Popen]]:
    port = _free_port()
    env = {
        **os.environ,
        "BENCH_VARIANT": variant,
        "PYTHONPATH": str(ROOT),
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_SDK_DISABLED": "false",
    }
    for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_TRACES_EXPORTER", "TELEMETRY_TRACES_FILE", "TELEMETRY_EXCLUDE_PATHS"):  # fmt: skip
        env.pop(key, None)
    cmd = [
        sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", "1",
        "-k", "gthread", "--threads", "4", "--keep-alive", "30", "--backlog", "256",
        "-c", "python:benchmarks.gunicorn_app", "--log-level", "warning",
        "benchmarks.gunicorn_app:app",
    ]  # fmt: skip
    with open(os.devnull, "w") as devnull:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=devnull, stderr=devnull)
    try:
        _wait_ready(port, proc)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_ready(port: int, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode} before it was ready")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1) as s,
        ):
            s.sendall(REQUEST.replace(b"keep-alive", b"close"))
            if s.recv(16).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.1)
    raise TimeoutError(f"gunicorn on port {port} was not ready within {timeout_s:.0f} s")


def _worker_pids(proc: subprocess.Popen) -> list[int]:
    try:
        out = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [int(p) for p in out.split()]


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux ``/proc``), or 0."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _drive(port: int, seconds: float, connections: int, result: multiprocessing.Queue) -> None:
    """Client process: puts requests/s, or the error's text, on ``result``."""
    try:
        result.put(_closed_loop(port, seconds, connections))
    except Exception as exc:
        result.put(f"client failed: {exc!r}")


def _closed_loop(port: int, seconds: float, connections: int) -> float:
    """``connections`` keep-alive connections in a closed loop, driven by one thread with
    ``select`` (no GIL contention between client threads); requests per second."""
    import selectors

    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
        socks.append(s)
    done = 0
    end = time.perf_counter() + seconds
    for s in socks:
        s.sendall(REQUEST)
    while time.perf_counter() < end:
        events = sel.select(timeout=5)
        if not events:
            raise TimeoutError("no answer within 5 s")
        for key, _ in events:
            s, buf = key.fileobj, key.data
            chunk = s.recv(65536)  # type: ignore[union-attr]
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    break
                head = bytes(buf[:head_end]).lower()
                start = head.find(b"content-length:")
                length = 0
                if start >= 0:
                    stop = head.find(b"\r\n", start)
                    length = int(head[start + 15 : stop if stop >= 0 else len(head)])
                total = head_end + 4 + length
                if len(buf) < total:
                    break
                if not buf.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"unexpected answer {bytes(buf[:40])!r}")
                del buf[:total]
                done += 1
                s.sendall(REQUEST)  # type: ignore[union-attr]
    elapsed = seconds + (time.perf_counter() - end)
    for s in socks:
        s.close()
    return done / elapsed


def _measure(port: int, seconds: float) -> float:
    ctx = multiprocessing.get_context("spawn")
    result: multiprocessing.Queue = ctx.Queue()
    client = ctx.Process(target=_drive, args=(port, seconds, CONNECTIONS, result))
    client.start()
    try:
        rate = result.get(timeout=seconds + 60)
        if isinstance(rate, str):
            raise RuntimeError(rate)
    finally:
        client.join(30)
        if client.is_alive():
            client.kill()
    return rate


def run(rounds: int = ROUNDS, seconds: float = SECONDS) -> dict[str, tuple[float, float, float]]:
    """variant -> (median requests/s, its ratio to bare Flask's, median worker CPU microseconds
    per request)."""
    per: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with contextlib.ExitStack() as stack:
        servers = {v: stack.enter_context(_server(v)) for v in VARIANTS}
        for v in VARIANTS:  # warm-up
            _measure(servers[v][0], 1.0)
        for r in range(rounds):
            order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
            for v in order:
                port, proc = servers[v]
                pids = _worker_pids(proc)
                before = sum(_cpu_s(p) for p in pids)
                rate = _measure(port, seconds)
                used = sum(_cpu_s(p) for p in pids) - before
                per[v].append(rate)
                cpu[v].append(used / (rate * seconds) * 1e6)
    bare = statistics.median(per["bare"])
    return {
        v: (statistics.median(x), statistics.median(x) / bare, statistics.median(cpu[v]))
        for v, x in per.items()
    }


def main() -> None:
    quick = "--quick" in sys.argv
    rounds, seconds = (3, 1.5) if quick else (ROUNDS, SECONDS)
    res = run(rounds, seconds)
    print(
        f"gunicorn (1 gthread worker, 4 threads) at saturation: {CONNECTIONS} keep-alive "
        f"connections in a closed loop, median of {rounds} interleaved rounds x {seconds:g} s"
    )
    print(f"  {'variant':24s} {'throughput':>12s} {'ratio':>7s} {'worker CPU/request':>20s}")
    cpu_bare = res["bare"][2]
    for v in VARIANTS:
        rate, ratio, cpu_us = res[v]
        target = TARGETS.get(v)
        verdict = f">= {target:.2f}x: {'met' if ratio >= target else 'MISSED'}" if target else ""
        print(
            f"  {LABELS[v]:24s} {rate:8.0f} req/s {ratio:6.3f}x {cpu_us:10.1f} us"
            f" ({cpu_bare / cpu_us:5.3f}x capacity)   {verdict}"
        )
    print(
        "  (capacity: bare's worker CPU per request / the variant's, i.e. the throughput ratio"
        " of a worker held at 100 % CPU)"
    )


if __name__ == "__main__":
    main()
