"""Lines formatted by the writer thread (access lines): written in order with the others, counted
against the buffer limit before they are formatted, a formatting failure reported, not lost."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time

import pytest

from telemetry import _output


def _read_lines(fd: int, n: int, timeout_s: float = 10.0) -> list[str]:
    data = b""
    deadline = time.monotonic() + timeout_s
    while data.count(b"\n") < n and time.monotonic() < deadline:
        data += os.read(fd, 65536)
    return data.decode().splitlines()


def test_deferred_lines_keep_their_order_and_failures_are_reported() -> None:
    r, w = os.pipe()
    with os.fdopen(w, "w") as stream:
        writer = _output.LineWriter(stream)
        writer.write("first")
        writer.write_deferred(lambda a, b: f"{a}-{b}", ("second", 2), 64)
        writer.write_deferred(lambda: 1 / 0, (), 64)
        writer.write("last")
        lines = _read_lines(r, 4)
        assert lines[:2] == ["first", "second-2"] and lines[3] == "last"
        assert "line not formatted: ZeroDivisionError" in lines[2]
        assert writer.wait_empty(time.monotonic() + 5) and writer.pending_bytes() == 0
        _, _failed, errors = _output.take_dropped()
        assert any("ZeroDivisionError" in e for e in errors)
    os.close(r)


def test_deferred_lines_count_against_the_limit_while_nobody_reads() -> None:
    saved = _output._limit[0]
    _output.set_limit(64 * 1024)
    try:
        _fill_and_drain()
    finally:
        _output.set_limit(saved)


def _fill_and_drain() -> None:
    r, w = os.pipe()
    with os.fdopen(w, "w") as stream:
        writer = _output.LineWriter(stream)
        for i in range(5000):  # ~1.3 MB estimated, the pipe holds 64 KiB: the rest is dropped
            writer.write_deferred(lambda i: f"line {i:06d}" + "x" * 240, (i,), 256)
        assert writer.dropped > 0
        assert writer.pending_bytes() <= 64 * 1024
        os.set_blocking(r, False)
        got = 0
        deadline = time.monotonic() + 10
        while writer.pending_bytes() > 0 and time.monotonic() < deadline:
            try:
                got += os.read(r, 1 << 20).count(b"\n")
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(0.05)
        with contextlib.suppress(BlockingIOError):
            got += os.read(r, 1 << 20).count(b"\n")
        assert got + writer.dropped >= 5000 - 1  # every line written or counted as dropped
    os.close(r)


def test_a_line_that_cannot_be_rendered_is_counted() -> None:
    """Written as an error line in its place and counted in TelemetryErrors (``sink``), as the
    docs say: a lost access line never goes unnoticed."""
    import telemetry
    from telemetry import _errors

    _errors.collect_output()
    before = telemetry.counts().get("sink", 0)
    r, w = os.pipe()
    with os.fdopen(w, "w") as stream:
        writer = _output.LineWriter(stream)
        writer.write_deferred(lambda: 1 / 0, (), 64)
        assert writer.wait_empty(time.monotonic() + 10)
        assert "line not formatted" in _read_lines(r, 1)[0]
    os.close(r)
    assert telemetry.counts().get("sink", 0) == before + 1


def test_telemetry_flush_has_the_writer_write_without_its_wait(monkeypatch) -> None:
    """``telemetry.flush()`` cuts the writer's gathering wait short (here made 60 s long, so
    only that can write the line in time); it does not wait for the write itself."""
    import telemetry

    monkeypatch.setattr(_output, "COALESCE_S", 60.0)
    r, w = os.pipe()
    with os.fdopen(w, "w") as stream:
        writer = _output.LineWriter(stream)
        writer.write("now")
        telemetry.flush()
        ready, _, _ = select.select([r], [], [], 20)  # not a blocking read: it would wait 60 s
        assert ready and os.read(r, 100) == b"now\n"
    os.close(r)


@pytest.mark.parametrize("std", ["stdout", "stderr"])
def test_a_process_without_the_stream_says_so(monkeypatch: pytest.MonkeyPatch, std: str) -> None:
    # started with it closed (`>&-`): Python sets sys.stdout to None (found by review r13:
    # counted as "AttributeError('NoneType' object has no attribute 'write')")
    monkeypatch.setattr(sys, std, None)
    writer = _output.LineWriter(None, std)
    with pytest.raises(OSError, match=f"sys.{std} is None: the process has no {std}"):
        writer.write("line")
