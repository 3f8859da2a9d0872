"""The gunicorn worker of the points service: threads, every wait for a client bounded, and
gunicorn's own error answers as ``application/problem+json``.

Why not gunicorn's ``sync`` worker: one slow peer holds one process, so two connections that
declare a body and never send it stopped a two-worker task (health checks included) until the
worker timeout killed them. This worker is gunicorn's ``gthread`` worker with these bounds:

* a connection that has sent nothing is parked in the worker's poller after
  :data:`FIRST_BYTE_WAIT_S`, not on a thread (an idle kept-alive connection never holds one);
* a request's headers and body must arrive within ``client_timeout_s`` of the moment a thread
  picks the request up: later, the client gets ``408`` (problem+json) and the connection closes;
* each write of the response must be taken by the client within ``client_timeout_s``: a peer that
  stops reading is dropped like one that went away.

A worker accepts a new connection only when one of its threads is free (gunicorn's ``gthread``
accepts while it has room for connections, queueing them behind busy threads), so a health check
waits in the kernel for the first free thread of any worker. Slow peers hold at most ``threads``
slots per worker, each for at most ``client_timeout_s``; ``worker_connections`` bounds the
connections (kept-alive ones included) a worker keeps open.
"""

from __future__ import annotations

import atexit
import errno
import json
import logging
import select
import socket
import sys
import time
from typing import Any

from gunicorn import glogging, util
from gunicorn.workers import gthread
from werkzeug.exceptions import RequestTimeout

from telemetry import _output

PROBLEM_JSON = "application/problem+json"

#: How long a thread waits for the first byte of a new connection before parking it in the
#: poller (gunicorn's own wait is 5 s). Load balancers send the request right after connecting.
FIRST_BYTE_WAIT_S = 0.5


class ClientTimeout(RequestTimeout):
    """The client did not send its request within the time allowed (HTTP 408).

    A werkzeug HTTP error, so when it is raised while the app reads the body the app's problem
    handler answers it; not an ``OSError``, so werkzeug does not turn it into a 400."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the request (headers and body) must arrive within {timeout_s:g} s")


class ClientSocket:
    """A connected socket whose waits for the client end at a deadline.

    gunicorn's parser and response read and write through it (``recv``, ``sendall``); every other
    attribute is the socket's own. Reads wait until the request's deadline
    (:meth:`start_request`) and raise :class:`ClientTimeout` after it; each ``sendall`` gets
    ``timeout_s`` and raises ``BrokenPipeError`` after it, which gunicorn treats as a peer that left.
    A caller that sets its own socket timeout (gunicorn's body drain and graceful close) is left
    to it.
    """

    __slots__ = ("_closing", "_deadline", "_sock", "timeout_s")

    def __init__(self, sock: socket.socket, timeout_s: float) -> None:
        self._sock = sock
        self.timeout_s = timeout_s
        self._deadline: float | None = None
        self._closing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def fileno(self) -> int:
        return self._sock.fileno()

    def start_request(self) -> None:
        """Start the clock for one request's headers and body."""
        self._deadline = time.monotonic() + self.timeout_s

    def _ready(self, event: int, deadline: float) -> bool:
        poller = select.poll()
        poller.register(self._sock.fileno(), event)
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            try:
                return bool(poller.poll(remaining_ms))
            except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
                continue

    def shutdown(self, how: int) -> None:
        self._closing = how in (socket.SHUT_WR, socket.SHUT_RDWR)
        self._sock.shutdown(how)

    def recv(self, size: int, flags: int = 0) -> bytes:
        if self._closing:
            # gunicorn's graceful close (on the worker's main thread) lingers up to 2 s per
            # connection for the peer to close: a peer that never does would stall every other
            # connection of the worker. Take what is already there, wait for nothing.
            self._sock.setblocking(False)  # a socket timeout would make recv() poll first
            try:
                return self._sock.recv(size, flags)
            except BlockingIOError:
                return b""
        waits = self._deadline is not None and self._sock.gettimeout() is None
        if waits and not self._ready(select.POLLIN, self._deadline):
            raise ClientTimeout(self.timeout_s)
        return self._sock.recv(size, flags)

    def sendall(self, data: bytes, flags: int = 0) -> None:
        deadline = time.monotonic() + self.timeout_s
        view = memoryview(data).cast("B")
        while view:
            if not self._ready(select.POLLOUT, deadline):
                raise BrokenPipeError(errno.EPIPE, "the client did not take the response in time")
            try:
                sent = self._sock.send(view, flags | socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            view = view[sent:]


def write_problem(sock: Any, status: int, reason: str, message: str) -> None:
    """gunicorn's error answer (bad request line or headers, 414, 431, ...) as problem+json.

    Replaces ``gunicorn.util.write_error``, which writes ``text/html``; same arguments."""
    body = json.dumps(
        {"type": "about:blank", "title": reason, "status": status, "detail": message or reason}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: {PROBLEM_JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


# gunicorn's worker base class looks ``util.write_error`` up at each error: answering problem+json
# needs no copy of its classification of parser errors into 400, 414, 431, ...
util.write_error = write_problem


class BoundedThreadWorker(gthread.ThreadWorker):
    """gunicorn's ``gthread`` worker with the client waits bounded (see the module docstring).

    ``client_timeout_s`` is set by :func:`worker_class`."""

    client_timeout_s: float = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._busy = 0  # requests submitted to the thread pool and not finished yet

    # gunicorn's gthread worker accepts while it has connection room, even with every thread
    # busy: a new connection then waits in this worker's queue behind slow peers although another
    # worker may be idle. Accepting only with a free thread leaves it in the kernel's accept
    # queue, for whichever worker frees a thread first. All three run on the main thread.
    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self._busy < self.cfg.threads)

    def enqueue_req(self, conn: gthread.TConn) -> None:
        self._busy += 1
        super().enqueue_req(conn)
        if self._busy >= self.cfg.threads:
            self.set_accept_enabled(False)

    def finish_request(self, conn: gthread.TConn, fs: Any) -> None:
        self._busy -= 1
        super().finish_request(conn, fs)
        if self.alive:
            self.set_accept_enabled(self.nr_conns < self.worker_connections)

    def handle(self, conn: gthread.TConn) -> Any:
        fresh = not conn.initialized and not conn.data_ready
        if fresh and not conn.wait_for_data(FIRST_BYTE_WAIT_S):
            return gthread._DEFER  # back to the poller: no thread for a silent peer
        if not self.cfg.is_ssl and not isinstance(conn.sock, ClientSocket):
            conn.sock = ClientSocket(conn.sock, self.client_timeout_s)
        if isinstance(conn.sock, ClientSocket):
            conn.sock.start_request()
        return super().handle(conn)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if isinstance(exc, ClientTimeout):  # the headers did not arrive in time
            self.log.warning("Request timeout from ip=%s: %s", (addr or ("",))[0], exc.description)
            try:
                write_problem(client, 408, "Request Timeout", str(exc.description))
            except Exception:
                self.log.debug("Failed to send error message.")
            return
        super().handle_error(req, client, addr, exc)


class _BufferedStream:
    """A write-only text stream whose records go through telemetry's non-blocking line buffer
    for stdout or stderr (:mod:`telemetry._output`): never blocks, drops and counts when full."""

    def __init__(self, writer: _output.LineWriter) -> None:
        self._writer = writer

    def write(self, text: str) -> int:
        line = text.rstrip("\n")
        if line:
            self._writer.write(line)
        return len(text)

    def flush(self) -> None:
        pass


class NonBlockingLogger(glogging.Logger):
    """gunicorn's logger with its ``-`` outputs (stderr, stdout) written through telemetry's
    non-blocking buffer instead of blocking writes.

    gunicorn logs a warning for every malformed request: with a stderr nobody reads (a stuck log
    driver) the first 64 KiB filled the pipe and every later warning blocked the thread writing
    it, until health checks timed out and even SIGTERM went unanswered. Now such lines are
    dropped and counted (``output_dropped``) like telemetry's own lines."""

    _flush_at_exit = False

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        writers = {id(sys.stderr): _output.STDERR, id(sys.stdout): _output.STDOUT}
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                writer = writers.get(id(getattr(handler, "stream", None)))
                if type(handler) is logging.StreamHandler and writer is not None:
                    handler.setStream(_BufferedStream(writer))  # type: ignore[arg-type]
        if not NonBlockingLogger._flush_at_exit:  # the master: telemetry is not set up there
            NonBlockingLogger._flush_at_exit = True
            atexit.register(_output.flush, 2.0, True)


def worker_class(*, client_timeout_s: float) -> type[BoundedThreadWorker]:
    """The worker class for gunicorn's ``worker_class`` setting, with its client timeout."""
    return type(
        "BoundedThreadWorker", (BoundedThreadWorker,), {"client_timeout_s": client_timeout_s}
    )


__all__ = [
    "BoundedThreadWorker",
    "ClientSocket",
    "ClientTimeout",
    "NonBlockingLogger",
    "worker_class",
    "write_problem",
]
