"""Telemetry under a real gunicorn at saturation: throughput of bare Flask, RED only and full
telemetry, side by side in one run; and the same servers' CPU work per request, counted.

Throughput: four gunicorn servers (``benchmarks.gunicorn_app``, one gthread worker with 4
threads each, on 127.0.0.1: bare Flask twice, RED only, full) run at once; only one is driven at a
time, the others sleep in ``accept``. A client process keeps ``CONNECTIONS`` keep-alive
connections busy in a closed loop (each sends its next request as soon as the previous answer
arrived), so the server's worker is saturated: its requests per second is its capacity. Each
round measures every variant once, back to back (the order rotates); a variant's ratio is the
median over rounds of its throughput divided by bare Flask's *in the same round* (paired, so a
machine that slows down between rounds slows every variant of that round alike). The second
bare server is the control: its ratio shows the noise of the measurement itself, and a run
whose control is off 1.000x by more than ``CONTROL_TOLERANCE`` gives no throughput verdict
("inconclusive"). The worker's CPU time per request (``/proc``) is printed too.

Instructions: on a shared machine a few per cent of throughput is within the noise, so each
variant's worker also runs under ``valgrind --tool=callgrind`` (when valgrind is installed) and
the instructions it executes per request (all its threads: request threads, output writer,
span export, metric flush) are counted: two runs of ``INSTRUCTION_REQUESTS`` and 200 requests,
the difference divided by the difference in requests, so start-up and exit cancel out. The
count does not depend on what else the machine does (to about +-0.3 %); it leaves out the
kernel's work and cache effects, and it tracked the throughput ratios measured on a quiet
machine to within 0.01 (docs/telemetry.md).

Bounded: ``ROUNDS`` x 4 variants x ``SECONDS`` of load plus start-up; six valgrind runs of at
most ``VALGRIND_TIMEOUT_S`` each; every socket with a timeout, 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.environment_variables import BENCH_VARIANT

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("bare", "bare-again", "red", "full")
LABELS = {
    "bare": "bare Flask",
    "bare-again": "bare Flask (control)",
    "red": "telemetry RED only",
    "full": "telemetry full",
}
TARGETS = {"red": 0.97, "full": 0.90}
#: a throughput verdict counts only when the control (bare Flask's second server, the same
#: code) reads within this of 1.000x
CONTROL_TOLERANCE = 0.02
CONNECTIONS = 32
SECONDS = 3.0
ROUNDS = 9
INSTRUCTION_REQUESTS = 2200
VALGRIND_TIMEOUT_S = 600.0
REQUEST = b"GET /v1/users/u-42/points HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(
    variant: str, wrapper: tuple[str, ...] = (), ready_s: float = 30.0
) -> Iterator[tuple[int, subprocess.Popen]]:
    """A gunicorn server of ``variant`` (run under ``wrapper``, e.g. valgrind)."""
    # here, not at the top: the load client's spawned process imports this module and should
    # not load telemetry (and OpenTelemetry) for nothing
    from telemetry import environment_variables as ev

    port = _free_port()
    env = {
        **os.environ,
        BENCH_VARIANT: variant.removesuffix("-again"),
        "PYTHONPATH": str(ROOT),
        ev.OTEL_TRACES_SAMPLER: "parentbased_always_on",
        ev.OTEL_SDK_DISABLED: "false",
    }
    for key in (ev.OTEL_EXPORTER_OTLP_ENDPOINT, ev.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                ev.OTEL_TRACES_EXPORTER, ev.TELEMETRY_TRACES_FILE, ev.TELEMETRY_EXCLUDE_PATHS):  # fmt: skip
        env.pop(key, None)
    cmd = [
        *wrapper, sys.executable, "-m", "gunicorn", "--timeout", str(int(VALGRIND_TIMEOUT_S)), "-b", f"127.0.0.1:{port}", "-w", "1",
        "-k", "gthread", "--threads", "4", "--keep-alive", "30", "--backlog", "256",
        "-c", "python:benchmarks.gunicorn_app", "--log-level", "warning",
        "benchmarks.gunicorn_app:app",
    ]  # fmt: skip
    with open(os.devnull, "w") as devnull:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=devnull, stderr=devnull)
    try:
        _wait_ready(port, proc, ready_s)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(ready_s)
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
    """``connections`` keep-alive connections in a closed loop for ``seconds``; requests per
    second."""
    started = time.perf_counter()
    done = _exchange(port, connections, seconds=seconds)
    return done / (time.perf_counter() - started)


def _exchange(
    port: int, connections: int, *, seconds: float = 0.0, requests: int = 0, timeout_s: float = 5
) -> int:
    """Keep ``connections`` keep-alive connections in a closed loop (each sends its next
    request as soon as the previous answer arrived), driven by one thread with ``select`` (no
    GIL contention between client threads), for ``seconds`` or until ``requests`` answers
    arrived; the number of answers (each a 200, else RuntimeError)."""
    sel = selectors.DefaultSelector()
    socks = []
    sent = done = 0
    end = time.perf_counter() + seconds
    try:
        for _ in range(connections):
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, bytearray())
        for s in socks:
            if requests and sent >= requests:
                break
            s.sendall(REQUEST)
            sent += 1
        while (done < requests) if requests else (time.perf_counter() < end):
            events = sel.select(timeout=timeout_s)
            if not events:
                raise TimeoutError(f"no answer within {timeout_s:g} s")
            for key, _ in events:
                s, buf = key.fileobj, key.data  # type: ignore[assignment]
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                buf += chunk
                while (n := _answer_length(buf)) and len(buf) >= n:
                    if not buf.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(f"unexpected answer {bytes(buf[:40])!r}")
                    del buf[:n]
                    done += 1
                    if not requests or sent < requests:
                        s.sendall(REQUEST)
                        sent += 1
    finally:
        for s in socks:
            s.close()
    return done


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
    """variant -> (median requests/s, median over rounds of its ratio to bare Flask's in the
    same round, median worker CPU microseconds per request)."""
    per: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with contextlib.ExitStack() as stack:
        servers = {v: stack.enter_context(_server(v)) for v in VARIANTS}
        for v in VARIANTS:  # warm-up
            _measure(servers[v][0], 1.0)
        for r in range(rounds):
            k = r % len(VARIANTS)
            for v in VARIANTS[k:] + VARIANTS[:k]:
                port, proc = servers[v]
                pids = _worker_pids(proc)
                before = sum(_cpu_s(p) for p in pids)
                rate = _measure(port, seconds)
                used = sum(_cpu_s(p) for p in pids) - before
                per[v].append(rate)
                cpu[v].append(used / (rate * seconds) * 1e6)
    return {
        v: (
            statistics.median(x),
            statistics.median(a / b for a, b in zip(x, per["bare"], strict=True)),
            statistics.median(cpu[v]),
        )
        for v, x in per.items()
    }


def _answer_length(buf: bytearray) -> int:
    """The length of the first complete answer's head + body in ``buf`` so far (0: head not
    complete)."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return 0
    head = bytes(buf[:head_end]).lower()
    start = head.find(b"content-length:")
    length = 0
    if start >= 0:
        stop = head.find(b"\r\n", start)
        length = int(head[start + 15 : stop if stop >= 0 else len(head)])
    return head_end + 4 + length


def _worker_instructions(variant: str, requests: int, out_dir: Path) -> int:
    """Instructions the worker of a ``variant`` server under callgrind executed in all, having
    served 300 warm-up requests and ``requests`` more."""
    wrapper = (
        "valgrind", "--tool=callgrind", "--trace-children=yes",
        f"--callgrind-out-file={out_dir}/callgrind.%p",
    )  # fmt: skip
    with _server(variant, wrapper, ready_s=VALGRIND_TIMEOUT_S) as (port, proc):
        workers = _worker_pids(proc)
        if len(workers) != 1:
            raise RuntimeError(f"expected one gunicorn worker, found {workers}")
        _exchange(port, 4, requests=300, timeout_s=60)
        _exchange(port, 4, requests=requests, timeout_s=60)
    # the worker writes its counts when it exits (the server's exit waited for it)
    text = (out_dir / f"callgrind.{workers[0]}").read_text(errors="replace")
    for line in text.splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in callgrind.{workers[0]}")


def instructions(
    requests: int = INSTRUCTION_REQUESTS, variants: tuple[str, ...] = ("bare", "red", "full")
) -> dict[str, tuple[float, float]] | str:
    """variant -> (worker instructions per request, bare Flask's / the variant's), or why it
    was not measured."""
    if shutil.which("valgrind") is None:
        return "valgrind not installed (Debian package valgrind)"
    import concurrent.futures
    import tempfile

    per: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(2) as pool:
        for v in variants:  # the short and the long run of a variant side by side
            dirs = [Path(tmp) / f"{v}-{n}" for n in (200, requests)]
            for d in dirs:
                d.mkdir()
            short, long = (
                pool.submit(_worker_instructions, v, n, d)
                for n, d in zip((200, requests), dirs, strict=True)
            )
            per[v] = (long.result() - short.result()) / (requests - 200)
    return {v: (x, per["bare"] / x) for v, x in per.items()}


def _verdict(variant: str, ratio: float, control: float | None = None) -> str:
    """``variant``'s target and whether ``ratio`` meets it; for a throughput ratio, given the
    control's (``control``), "inconclusive" when that is further than ``CONTROL_TOLERANCE``
    from 1.000x: that run measured its own noise (e.g. bare Flask's server slowed by the
    machine) as much as telemetry."""
    target = TARGETS.get(variant)
    if not target:
        return ""
    if control is not None and round(abs(control - 1.0), 3) > CONTROL_TOLERANCE:  # as printed
        return f">= {target:.2f}x: inconclusive (the control reads {control:.3f}x)"
    return f">= {target:.2f}x: {'met' if ratio >= target else 'MISSED'}"


def main() -> None:
    quick = "--quick" in sys.argv
    rounds, seconds = (3, 1.5) if quick else (ROUNDS, SECONDS)
    res = run(rounds, seconds)
    print(
        f"gunicorn (1 gthread worker, 4 threads) at saturation: {CONNECTIONS} keep-alive "
        f"connections in a closed loop, {rounds} rounds x {seconds:g} s per variant"
    )
    print(f"  {'variant':24s} {'throughput':>12s} {'ratio':>7s} {'worker CPU/request':>20s}")
    cpu_bare = res["bare"][2]
    control = res["bare-again"][1]
    for v in VARIANTS:
        rate, ratio, cpu_us = res[v]
        print(
            f"  {LABELS[v]:24s} {rate:8.0f} req/s {ratio:6.3f}x {cpu_us:10.1f} us"
            f" ({cpu_bare / cpu_us:5.3f}x capacity)   {_verdict(v, ratio, control)}"
        )
    print(
        "  (ratio: median over rounds of the variant's throughput / bare Flask's in that round;"
        " capacity: bare's worker CPU per request / the variant's)"
    )
    if "--no-instructions" in sys.argv:
        return
    requests = 700 if quick else INSTRUCTION_REQUESTS
    counted = instructions(requests)
    if isinstance(counted, str):
        print(f"\ninstructions per request: not measured: {counted}")
        return
    print(
        f"\nworker instructions per request under callgrind ({requests} - 200 requests,"
        " all threads; independent of the machine's load):"
    )
    for v, (count, ratio) in counted.items():
        print(f"  {LABELS[v]:24s} {count / 1000:10.1f} k {ratio:6.3f}x   {_verdict(v, ratio)}")


if __name__ == "__main__":
    main()
