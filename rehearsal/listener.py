"""A local stand-in for an ALB listener with a weighted forward action to two target groups.

Each request (not each connection) goes to blue or green at random in proportion to the current
weights, as an ALB weighted forward does. Upstream connections are kept alive and pooled per target,
so the listener keeps up with the rehearsal's load on a small machine. Every response carries
``X-Served-By: blue|green``. ``GET /_rehearsal/status`` answers with the current weights and counts
(the listener's own path, never forwarded).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
MAX_BODY = 1 << 20  # ALB's own limit for a Lambda target is 1 MB; plenty for this API
UPSTREAM_TIMEOUT_S = 60.0  # the ALB's default idle timeout
STATUS_PATH = "/_rehearsal/status"
SERVED_BY = "X-Served-By"


#: Pooled upstream connections idle longer than this are dropped, not reused: gunicorn closes
#: idle keep-alive connections after its ``keepalive`` (5 s here), and a request sent on a
#: connection the server is closing fails.
POOL_IDLE_S = 2.0


@dataclass(slots=True)
class Target:
    """One target group: a name (``blue``/``green``), its address and a keep-alive pool."""

    name: str
    host: str
    port: int
    _pool: list[tuple[http.client.HTTPConnection, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """A pooled connection (``reused`` True) or a new, not yet connected one."""
        stale = []
        conn = None
        now = time.monotonic()
        with self._lock:
            while self._pool and not fresh:
                candidate, idle_since = self._pool.pop()
                if now - idle_since < POOL_IDLE_S:
                    conn = candidate
                    break
                stale.append(candidate)
        for old in stale:
            old.close()
        if conn is not None:
            return conn, True
        return http.client.HTTPConnection(self.host, self.port, timeout=UPSTREAM_TIMEOUT_S), False

    def give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._pool) < 64:
                self._pool.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for conn, _ in pool:
            conn.close()


@dataclass(frozen=True, slots=True)
class Record:
    """One proxied request as the listener saw it (time at completion, wall clock)."""

    time: float
    target: str
    method: str
    path: str
    status: int
    latency_ms: float
    #: The end user the request acted for (``user_of``), for counting the users a version harmed.
    user: str | None = None
    #: The X-Ray trace id the listener forwarded (``1-xxxxxxxx-<24 hex>``, as the logs print it):
    #: joins what the client waited with the version's spans (time queued included).
    trace_id: str | None = None


#: The end user a request acts for, from its path and body (``None`` when it names none).
UserOf = Callable[[str, bytes], str | None]
#: Called after each proxied request with the record and the response body (bytes).
Observer = Callable[[Record, bytes], None]


class WeightedListener:
    """Listen on ``127.0.0.1:port`` and split requests between ``targets`` by weight."""

    def __init__(
        self,
        targets: dict[str, tuple[str, int]],
        *,
        weights: dict[str, int] | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        seed: int | None = None,
        observer: Observer | None = None,
        user_of: UserOf | None = None,
    ) -> None:
        if not targets:
            raise ValueError("at least one target is required")
        self._targets = {name: Target(name, h, p) for name, (h, p) in targets.items()}
        self._weights = dict.fromkeys(self._targets, 0)
        self._weights.update(weights or {next(iter(self._targets)): 100})
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._observer = observer
        self._user_of = user_of
        self.counts: dict[str, int] = dict.fromkeys(self._targets, 0)
        self._in_flight: dict[str, int] = dict.fromkeys(self._targets, 0)
        self.errors = 0  # requests the listener itself could not forward (502/503)
        self.error_log: list[str] = []  # the first few reasons, for the run's record
        self._server = _Server((host, port), _Handler)
        self._server.listener = self
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_weights(self, weights: dict[str, int]) -> None:
        """Replace the weights (non-negative integers; a missing target gets 0)."""
        unknown = set(weights) - set(self._targets)
        if unknown:
            raise ValueError(f"unknown target {sorted(unknown)[0]!r}")
        if any(w < 0 for w in weights.values()):
            raise ValueError("weights must be >= 0")
        with self._lock:
            self._weights = {name: int(weights.get(name, 0)) for name in self._targets}

    def close_idle(self, name: str) -> None:
        """Close ``name``'s idle pooled connections (a target being stopped drains faster)."""
        self._targets[name].close()

    def in_flight(self, name: str) -> int:
        """Requests forwarded to ``name`` that have not been answered yet."""
        with self._lock:
            return self._in_flight[name]

    def drain(self, name: str, timeout_s: float) -> bool:
        """Wait (bounded) until ``name`` has no request in flight, as an ALB target group's
        deregistration delay lets in-flight requests finish; ``False`` on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.in_flight(name) == 0

    @property
    def weights(self) -> dict[str, int]:
        with self._lock:
            return dict(self._weights)

    def choose(self) -> str | None:
        """Pick a target for one request; ``None`` when every weight is 0."""
        with self._lock:
            total = sum(self._weights.values())
            if total <= 0:
                return None
            pick = self._rng.random() * total
            for name, weight in self._weights.items():
                if pick < weight:
                    return name
                pick -= weight
            return name  # rounding at the top edge

    def start(self) -> WeightedListener:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, drop idle client connections and close upstream pools."""
        if self._thread is not None:  # shutdown() waits for serve_forever, which must be running
            self._server.shutdown()
        self._server.close_clients()
        self._server.server_close()
        for target in self._targets.values():
            target.close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> WeightedListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- forwarding ------------------------------------------------------------------------------
    def forward(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        trace_id: str | None = None,
    ) -> tuple[int, list[tuple[str, str]], bytes, str | None]:
        name = self.choose()
        if name is None:
            return _problem(503, "No target has any weight")
        with self._lock:
            self._in_flight[name] += 1
        user = None
        if self._user_of is not None:
            with contextlib.suppress(Exception):  # a parsing bug must not fail the request
                user = self._user_of(path, body)
        try:
            return self._forward(name, method, path, headers, body, user, trace_id)
        finally:
            with self._lock:
                self._in_flight[name] -= 1

    def _forward(
        self,
        name: str,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes,
        user: str | None = None,
        trace_id: str | None = None,
    ) -> tuple[int, list[tuple[str, str]], bytes, str | None]:
        target = self._targets[name]
        started = time.perf_counter()
        for attempt in (1, 2):
            conn, reused = target.take(fresh=attempt == 2)
            try:
                if conn.sock is None:
                    conn.connect()
                    # Small requests on a kept-alive connection: Nagle + delayed ACK add 40 ms.
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.request(method, path, body=body or None, headers=dict(headers))
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                # A pooled keep-alive connection the server closed meanwhile: retry once on a new
                # one, as proxies do; a fresh connection that fails is a real 502.
                if reused and attempt == 1:
                    continue
                with self._lock:
                    self.errors += 1
                    if len(self.error_log) < 20:
                        self.error_log.append(f"{name} {method} {path}: {exc!r}")
                status, out_headers, payload, _ = _problem(502, f"Target {name} did not answer")
                self._observe(name, method, path, status, started, payload, user, trace_id)
                return status, out_headers, payload, name
            out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
            if resp.will_close:
                conn.close()
            else:
                target.give_back(conn)
            self._observe(name, method, path, resp.status, started, data, user, trace_id)
            return resp.status, out_headers, data, name
        raise AssertionError("unreachable")  # pragma: no cover

    def _observe(
        self,
        name: str,
        method: str,
        path: str,
        status: int,
        started: float,
        body: bytes,
        user: str | None = None,
        trace_id: str | None = None,
    ) -> None:
        with self._lock:
            self.counts[name] += 1
        if self._observer is not None:
            record = Record(
                time.time(),
                name,
                method,
                path,
                status,
                (time.perf_counter() - started) * 1000,
                user,
                trace_id,
            )
            # An observer bug must not turn into a failed request.
            with contextlib.suppress(Exception):
                self._observer(record, body)

    def status(self) -> dict[str, object]:
        with self._lock:
            return {"weights": dict(self._weights), "served": dict(self.counts)}


def _problem(status: int, title: str) -> tuple[int, list[tuple[str, str]], bytes, None]:
    body = json.dumps({"type": "about:blank", "title": title, "status": status}).encode()
    return status, [("Content-Type", "application/problem+json")], body, None


def _trace_id() -> str:
    # ALB adds X-Amzn-Trace-Id; the services' telemetry continues it.
    return f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()}"


_ROOT = re.compile(r"(?:^|;)\s*Root=(1-[0-9a-f]{8}-[0-9a-f]{24})\s*(?:;|$)")


def root_of(header: str) -> str | None:
    """The ``Root`` trace id of an ``X-Amzn-Trace-Id`` header, or None."""
    found = _ROOT.search(header)
    return found.group(1) if found else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    listener: WeightedListener

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:
        with self._clients_lock:
            self._clients.add(request)
        try:
            super().process_request_thread(request, client_address)  # type: ignore[arg-type]
        finally:
            with self._clients_lock:
                self._clients.discard(request)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up mid-answer (Locust stopping) is routine, not worth a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    def close_clients(self) -> None:
        with self._clients_lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave in separate writes
    server: _Server
    timeout = 65  # idle keep-alive client connections, a little above the ALB's 60 s

    def log_message(self, format: str, *args: object) -> None:
        pass  # the services log every request; a second access log here is noise

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, name: str | None):
        self.send_response_only(status)
        for key, value in headers:
            self.send_header(key, value)
        if name is not None:
            self.send_header(SERVED_BY, name)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, size = [], 0
            while True:
                line = self.rfile.readline(1024)
                length = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += length
                if size > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(length))
                self.rfile.readline(8)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        listener = self.server.listener
        if self.path == STATUS_PATH and self.command == "GET":
            body = json.dumps(listener.status()).encode()
            self._send(200, [("Content-Type", "application/json")], body, None)
            return
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(*_problem(400, "Malformed request body framing"))
            return
        if body is None:
            self.close_connection = True
            self._send(*_problem(413, "Request body too large"))
            return
        # Expect: 100-continue was answered here already (http.server does it); not forwarded.
        headers = [
            (k, v)
            for k, v in self.headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() != "expect"
        ]
        trace = next((v for k, v in headers if k.lower() == "x-amzn-trace-id"), None)
        headers.append(("X-Forwarded-For", self.client_address[0]))
        headers.append(("X-Forwarded-Proto", "http"))
        headers.append(("X-Forwarded-Port", str(listener.port)))
        if trace is None:
            trace = _trace_id()
            headers.append(("X-Amzn-Trace-Id", trace))
        self._send(
            *listener.forward(self.command, self.path, headers, body, trace_id=root_of(trace))
        )

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle
