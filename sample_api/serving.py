"""The gunicorn worker of the points service: threads, every wait for a client bounded, and
gunicorn's own error answers as ``application/problem+json``.

Why not gunicorn's ``sync`` worker: one slow peer holds one process, so two connections that
declare a body and never send it stopped a two-worker task (health checks included) until the
worker timeout killed them. This worker is gunicorn's ``gthread`` worker with these bounds:

* the worker's main thread reads each request without blocking (:meth:`BoundedThreadWorker.gather`)
  and hands it to a thread only once its head and body are whole (:func:`request_complete`): a
  peer slow to send (slowloris, a body that never comes) holds no thread, whatever their number;
* a request's head and body must arrive within ``client_timeout_s`` of the first read (and, for
  what a thread reads itself, of the moment it picks the request up): later, the client gets
  ``408`` (problem+json) and the connection closes;
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
import contextlib
import errno
import json
import logging
import re
import select
import selectors
import socket
import sys
import time
from collections import deque
from functools import partial
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

    __slots__ = ("_closing", "_deadline", "_sock", "continued", "pre", "timeout_s")

    def __init__(self, sock: socket.socket, timeout_s: float) -> None:
        self._sock = sock
        self.timeout_s = timeout_s
        self._deadline: float | None = None
        self._closing = False
        #: bytes the worker's main thread read before a thread took the request (see
        #: :meth:`BoundedThreadWorker.gather`); ``recv`` returns them first
        self.pre = bytearray()
        #: the worker's main thread has answered this request's ``Expect: 100-continue``
        self.continued = False

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
        if self.pre:
            out = bytes(self.pre[:size])
            del self.pre[:size]
            return out
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

    def send(self, data: bytes, flags: int = 0) -> int:
        if self.continued and data == CONTINUE:
            # the main thread sent it while it gathered the body (gunicorn sends it again)
            self.continued = False
            return len(data)
        return self._sock.send(data, flags)

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


#: Bytes of a request's head the main thread gathers before a thread takes it anyway (the ALB
#: refuses heads over 64 KB; gunicorn then answers 431 or waits with the client deadline).
MAX_GATHERED_HEAD = 64 * 1024
#: Bytes of a body gathered before a thread takes the request (the app refuses bodies over 16 KiB).
MAX_GATHERED_BODY = 64 * 1024
_EXPECT_CONTINUE = re.compile(rb"\nexpect:[ \t]*100-continue[ \t]*\r?(?:\n|$)")
#: gunicorn's interim answer to ``Expect: 100-continue``
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\ncontent-length:[ \t]*([0-9]{1,15})[ \t]*\r?(?:\n|$)")


_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def _chunked_complete(body: bytes) -> bool:
    """True when ``body`` holds a whole chunked body (RFC 9112 section 7.1: chunks, the last
    chunk, trailers, the empty line) or framing gunicorn refuses at once; False while more is due.

    Walks the chunks as gunicorn's parser does (``gunicorn.http.body.ChunkedReader``): a check
    for a "0" line and a final CRLF CRLF took chunk data that merely looked like the end (or a
    chunk size of a terabyte) for a whole body, and a thread then waited for the rest."""
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return False
        size_text = body[pos:eol].split(b";", 1)[0].rstrip(b" \t")
        if not size_text or not set(size_text) <= _HEX_DIGITS:
            return True  # gunicorn answers 400 at once
        size = int(size_text, 16)
        if size == 0:  # the last chunk: trailer lines, then an empty line
            return b"\r\n\r\n" in body[eol:]
        end = eol + 2 + size
        if len(body) < end + 2:
            return False
        if body[end : end + 2] != b"\r\n":
            return True  # chunk data longer than its size: gunicorn answers 400 at once
        pos = end + 2


def request_complete(data: bytes | bytearray) -> bool:
    """True when ``data`` holds a whole request head and its body (as far as a thread should not
    wait for it: an ``Expect`` other than ``100-continue``, a body over :data:`MAX_GATHERED_BODY`, a head over
    :data:`MAX_GATHERED_HEAD`, or a head gunicorn will refuse anyway)."""
    ends = [i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0]
    if not ends:
        return len(data) > MAX_GATHERED_HEAD
    end = min(ends)
    head = bytes(data[:end]).lower()
    body = len(data) - end - (4 if data[end : end + 2] == b"\r\n" else 2)
    if b"\nexpect:" in head and not _EXPECT_CONTINUE.search(head):
        return True  # gunicorn answers 417 at once
    if b"\ntransfer-encoding:" in head:
        if b"chunked" not in head:  # gunicorn refuses other codings at once
            return True
        rest = bytes(data[len(data) - body :]) if body else b""
        return _chunked_complete(rest) or body > MAX_GATHERED_BODY
    if b"\ncontent-length:" not in head:
        return True
    match = _CONTENT_LENGTH.search(head)
    if match is None:  # malformed: gunicorn answers 400 at once
        return True
    return body >= min(int(match.group(1)), MAX_GATHERED_BODY)


def expects_continue(data: bytes | bytearray) -> bool:
    """True when ``data`` holds the whole head of an HTTP/1.1 request with ``Expect:
    100-continue``: the client waits for ``100 Continue`` before it sends its body."""
    ends = [i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0]
    if not ends:
        return False
    head = bytes(data[: min(ends)]).lower()
    request_line = head.split(b"\n", 1)[0].rstrip(b"\r")
    return request_line.endswith(b" http/1.1") and bool(_EXPECT_CONTINUE.search(head))


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
        #: connections whose request the main thread is gathering, oldest deadline first
        self._gathering: deque[gthread.TConn] = deque()

    # A thread takes a request only once its head and body have arrived: the main thread reads
    # them without blocking (``gather``), with a deadline of ``client_timeout_s``. Threads
    # were taken by the connection, and with more slow peers than threads (50 slowloris
    # connections), a health check waited behind them in the accept queue for 14 s.
    def accept(self, listener: Any) -> None:
        if self.cfg.is_ssl:
            return super().accept(listener)
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = gthread.TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        conn.sock = ClientSocket(conn.sock, self.client_timeout_s)
        self.gather(conn)

    def gather(self, conn: gthread.TConn) -> None:
        """Read ``conn``'s request on the main thread until it is whole, then hand it over."""
        sock = conn.sock
        assert isinstance(sock, ClientSocket)
        if request_complete(sock.pre):
            conn.data_ready = True
            self.enqueue_req(conn)
            return
        sock.setblocking(False)
        self._continue(sock)
        conn.timeout = time.monotonic() + self.client_timeout_s
        self._gathering.append(conn)
        self.poller.register(sock, selectors.EVENT_READ, partial(self._on_gather_readable, conn))

    def _on_gather_readable(self, conn: gthread.TConn, _fileobj: Any) -> None:
        sock = conn.sock
        try:
            data = sock._sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            sock.pre += data
            if not request_complete(sock.pre):
                self._continue(sock)
                return
        self.poller.unregister(sock)
        self._gathering.remove(conn)
        if not data:  # the peer left (or failed) before its request was whole
            self.nr_conns -= 1
            conn.close()
            return
        conn.data_ready = True
        self.enqueue_req(conn)

    @staticmethod
    def _continue(sock: ClientSocket) -> None:
        """Send ``100 Continue`` once when the client waits for it: the body is then gathered
        here like any other (a thread used to take the request at the end of its head and wait
        for a body that might never come)."""
        if sock.continued or not expects_continue(sock.pre):
            return
        with contextlib.suppress(OSError):  # 25 bytes into an idle socket's empty send buffer
            sock._sock.send(CONTINUE, socket.MSG_DONTWAIT)
            sock.continued = True

    def on_client_socket_readable(self, conn: gthread.TConn, client: Any) -> None:
        if not isinstance(conn.sock, ClientSocket):
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.gather(conn)

    def on_pending_socket_readable(self, conn: gthread.TConn, client: Any) -> None:
        if not isinstance(conn.sock, ClientSocket):
            return super().on_pending_socket_readable(conn, client)
        self.poller.unregister(client)
        self.pending_conns.remove(conn)
        self.gather(conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self._gathering and self._gathering[0].timeout <= now:
            conn = self._gathering.popleft()
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.poller.unregister(conn.sock)
            self.nr_conns -= 1
            self.log.warning(
                "Request timeout from ip=%s: the request did not arrive within %g s",
                (conn.client or ("",))[0],
                self.client_timeout_s,
            )
            with contextlib.suppress(Exception):
                write_problem(
                    conn.sock,
                    408,
                    "Request Timeout",
                    str(ClientTimeout(self.client_timeout_s).description),
                )
            conn.close()

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
        sock = conn.sock
        if isinstance(sock, ClientSocket) and sock.pre and conn in self.keepalived_conns:
            # the next request was read with this one: the socket may never be readable again
            self.on_client_socket_readable(conn, sock)
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
