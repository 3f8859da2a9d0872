"""Non-blocking line output for stdout/stderr: a bounded buffer and one writer thread.

The request path only appends a line to a buffer; a background thread (started lazily, again
after ``fork``) writes the buffered lines to the stream's file descriptor. When nobody reads the
pipe (a stuck log driver), the writer thread blocks, never the application: the buffer fills up
to its byte limit (``TELEMETRY_OUTPUT_BUFFER_BYTES``) and further lines are dropped and counted
(``TelemetryErrors``, kind ``output_dropped``). When the reader resumes, writing resumes.

The thread writes with ``os.write`` on the descriptor, not through the stream object: a thread
stuck in ``TextIOWrapper.write`` would hold the stream's internal lock, and the interpreter
aborts at exit when it cannot take that lock to flush ``sys.stdout``. Lines are grouped into
writes of at most ``PIPE_BUF`` bytes (whole lines only), so lines of different processes sharing
one pipe (gunicorn workers) never interleave, a line longer than that is written alone.

Streams without a file descriptor (``io.StringIO``, test capture) cannot stall: they are written
at once, under a lock, by the calling thread.
"""

from __future__ import annotations

import io
import os
import select
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import TextIO

PIPE_BUF = getattr(select, "PIPE_BUF", 512)  # POSIX guarantees atomic pipe writes up to this
#: How long the writer thread lets lines gather after a wake-up before writing them: a busy
#: process writes in bursts instead of waking the thread for every line. Every wake-up of that
#: thread takes the GIL from the request threads (context switches, cache misses): under a real
#: gunicorn at saturation, 5 ms cost full telemetry about 4 % of throughput against 50 ms
#: (``benchmarks/gunicorn_bench.py``). ``flush()`` and exit cut the wait short.
COALESCE_S = 0.05
DEFAULT_MAX_BYTES = 4 * 1024 * 1024

_writers: weakref.WeakSet[LineWriter] = weakref.WeakSet()


#: A line the writer thread formats (``render(*args)``) just before writing it: the request
#: path only captures the values. ``size`` is its estimated length, for the buffer limit. A plain
#: tuple: made in C, no ``__init__`` call per line.
Deferred = tuple  # (render: Callable[..., str], args: tuple, size: int)


def _size(item: str | Deferred) -> int:
    return item[2] if type(item) is tuple else len(item) + 1  # type: ignore[arg-type,return-value]


_limit = [DEFAULT_MAX_BYTES]


def _fd_of(stream: object) -> int:
    """The stream's file descriptor, or -1 (in-memory streams, test capture, no ``fileno``)."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return -1
    return fd if isinstance(fd, int) and fd >= 0 else -1


class LineWriter:
    """Lines (without their newline) for one destination: ``stream``, or ``sys.<std>`` looked
    up at every write (so redirections such as pytest's capture are followed)."""

    def __init__(self, stream: TextIO | None = None, std: str = "stdout") -> None:
        self._stream = stream
        self._std = std
        self._reset()
        _writers.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[str | Deferred] = deque()
        self._bytes = 0  # queued + being written
        self._queued = 0  # of which queued (not yet taken by the writer thread)
        self._inflight = 0  # lines taken by the writer thread, not yet written
        self._wake = threading.Event()
        #: set with ``_wake``, cleared (under the lock) when the queue is found empty: producers
        #: test a plain attribute, not ``Event.is_set()`` (a Python call per line)
        self._awake = False
        self._hurry = threading.Event()  # flush() / exit: stop letting lines gather
        self._thread: threading.Thread | None = None
        self._target: object = None  # the stream the cached fd belongs to
        self._fd = -1
        self._closed_check: object = None
        self.dropped = 0  # lines dropped in this process
        self._unreported = 0  # dropped (buffer full), not yet taken by take_dropped()
        #: lines a write failed for (EPIPE, closed stream) or that could not be rendered (an
        #: error line was written instead), not yet taken
        self._failed = 0
        self.errors: list[str] = []  # write failures not yet reported (bounded)

    # -- producers (any thread, the request path included) -------------------------------------

    def write(self, line: str) -> None:
        """Queue ``line``; never blocks on the destination. In-memory streams are written at
        once (exceptions propagate to the caller, which counts them)."""
        stream = self._stream if self._stream is not None else getattr(sys, self._std)
        if stream is not self._target:
            self._retarget(stream)
        if self._fd < 0:
            if stream is None:  # started with it closed (``>&-``): say so, not AttributeError
                raise OSError(f"sys.{self._std} is None: the process has no {self._std}")
            with self._lock:
                stream.write(line + "\n")
                stream.flush()
            return
        n = len(line) + 1
        with self._lock:
            if self._bytes + n > _limit[0]:
                self.dropped += 1
                self._unreported += 1
                return
            self._queue.append(line)
            self._bytes += n
            self._queued += n
        if not self._awake:
            self._awake = True
            self._wake.set()
        if self._thread is None:
            self._start()

    def write_deferred(self, render: Callable[..., str], args: tuple, size: int) -> None:
        """Queue a line that the writer thread formats as ``render(*args)`` (``args`` must not
        change afterwards); never blocks. In-memory streams get it formatted at once."""
        stream = self._stream if self._stream is not None else getattr(sys, self._std)
        if stream is not self._target:
            self._retarget(stream)
        if self._fd < 0:
            self.write(render(*args))
            return
        with self._lock:
            if self._bytes + size > _limit[0]:
                self.dropped += 1
                self._unreported += 1
                return
            self._queue.append((render, args, size))
            self._bytes += size
            self._queued += size
        if not self._awake:
            self._awake = True
            self._wake.set()
        if self._thread is None:
            self._start()

    def write_many(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def _retarget(self, stream: object) -> None:
        self._target = stream
        self._fd = _fd_of(stream)
        self._closed_check = stream

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            t = threading.Thread(target=self._run, name="telemetry-output", daemon=True)
            self._thread = t
        t.start()

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait()
            # Let lines gather for a moment: one write (and one wake-up of this thread, which
            # must take the GIL from the request threads) per burst rather than per line;
            # producers skip set() while the event is still set.
            self._hurry.wait(COALESCE_S)
            with self._lock:
                if not self._queue:
                    self._awake = False
                    self._wake.clear()
                    continue
                items = list(self._queue)
                self._queue.clear()
                size, self._queued = self._queued, 0
                self._hurry.clear()  # a waiting flush() sets it again
                self._inflight = len(items)
                fd, stream = self._fd, self._closed_check
            lines = []
            for item in items:
                if type(item) is tuple:
                    try:
                        item = item[0](*item[1])
                    except Exception as exc:  # the formatters do not raise; never lose a line
                        item = self._unformatted(exc)
                lines.append(item)
            written = self._write_fd(fd, stream, lines)
            with self._lock:
                self._bytes -= size
                self._inflight = 0
                if written < len(lines):
                    self.dropped += len(lines) - written
                    self._failed += len(lines) - written

    def _unformatted(self, exc: Exception) -> str:
        with self._lock:  # its content is lost: counted as a failed line (``sink``)
            self._failed += 1
            if len(self.errors) < 10:
                self.errors.append(f"a line could not be formatted: {exc!r}")
        return f'{{"level": "ERROR", "message": "telemetry: line not formatted: {type(exc).__name__}"}}'

    def _write_fd(self, fd: int, stream: object, lines: list[str]) -> int:
        """Write ``lines`` in chunks of whole lines of at most PIPE_BUF bytes (a longer line
        alone); the number of lines written."""
        data = b""
        pos = 0
        try:
            if getattr(stream, "closed", False):  # its fd may already belong to another file
                raise ValueError("I/O operation on closed file")
            data = ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")
            view = memoryview(data)
            total = len(data)
            while pos < total:
                end = pos + PIPE_BUF
                if end >= total:
                    end = total
                else:
                    cut = data.rfind(b"\n", pos, end)
                    if cut < 0:  # one line longer than PIPE_BUF: written alone, whole
                        cut = data.find(b"\n", end)
                    end = cut + 1
                _write_all(fd, view[pos:end])
                pos = end
        except Exception as exc:
            # (a line holding newlines of its own counts as several here: an estimate)
            done = min(len(lines), data.count(b"\n", 0, pos))
            if len(self.errors) < 10:
                self.errors.append(f"{len(lines) - done} line(s) not written: {exc!r}")
            return done
        return len(lines)

    # -- flushing and accounting ---------------------------------------------------------------

    def pending_bytes(self) -> int:
        return self._bytes

    def wait_empty(self, deadline: float) -> bool:
        """Wait (bounded by ``deadline``, a ``time.monotonic()`` value) until every queued line
        was written; True if it was."""
        while self._bytes > 0:
            if self._thread is None or time.monotonic() >= deadline:
                return self._bytes <= 0
            self._hurry.set()
            time.sleep(0.005)
        return True

    def abandon(self) -> int:
        """Count every line not yet written as dropped (at exit, when the flush timed out)."""
        with self._lock:
            n = len(self._queue) + self._inflight
            self._bytes -= sum(_size(item) for item in self._queue)
            self._queue.clear()
            self._queued = 0
            self._inflight = 0  # if the blocked write completes after all, it is not counted
            self.dropped += n
            self._unreported += n
        return n


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


STDOUT = LineWriter(None, "stdout")
STDERR = LineWriter(None, "stderr")


def writer_for(stream: TextIO | None) -> LineWriter:
    """The process's stdout writer (``None``) or a writer of its own for ``stream``."""
    return STDOUT if stream is None else LineWriter(stream)


def set_limit(max_bytes: int) -> None:
    """Bytes each writer may hold before it drops new lines."""
    _limit[0] = max(1, int(max_bytes))


def max_bytes() -> int:
    """Bytes each writer may hold (:func:`set_limit`)."""
    return _limit[0]


def take_dropped() -> tuple[int, int, list[str]]:
    """Since the last call, over all writers: lines dropped because the buffer was full, lines
    lost because a write failed or they could not be rendered, and the failures seen."""
    dropped = failed = 0
    errors: list[str] = []
    for w in list(_writers):
        if w._unreported or w._failed or w.errors:
            with w._lock:
                dropped += w._unreported
                failed += w._failed
                w._unreported = w._failed = 0
                errors.extend(w.errors)
                w.errors = []
    return dropped, failed, errors


def dropped_total() -> int:
    """Lines dropped in this process so far (all writers)."""
    return sum(w.dropped for w in list(_writers))


def hurry() -> None:
    """Have every writer write what it holds now, without letting lines gather for
    :data:`COALESCE_S`; does not wait for the write (a stalled stdout blocks nobody)."""
    for w in list(_writers):
        if w._queued:
            w._hurry.set()


def flush(timeout_s: float, abandon: bool = False) -> bool:
    """Wait at most ``timeout_s`` for every writer to empty its buffer; True if all did. With
    ``abandon`` (at exit), what is still unwritten then is counted as dropped."""
    deadline = time.monotonic() + max(0.0, timeout_s)
    ok = True
    for w in list(_writers):
        if not w.wait_empty(deadline):
            ok = False
            if abandon:
                w.abandon()
    return ok


def _after_fork_in_child() -> None:
    # The parent's queued lines are the parent's to write; the child starts empty, its thread
    # starts with its first line.
    for w in list(_writers):
        w._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
