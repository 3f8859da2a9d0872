"""Worker helpers (USE metrics), the agent sink over real sockets, and fork in-process."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time

import pytest

import telemetry
from telemetry import _config, _errors
from telemetry._metrics import Aggregator
from telemetry.sinks import AgentSink, MemorySink

from .conftest import Tel, samples, total


def test_job_context_manager_and_decorator(tel: Tel) -> None:
    with telemetry.job(message_id="m-1", order_id="o-1") as j:
        telemetry.get_logger("worker").info("processing")
    assert j.duration_ms is not None and j.duration_ms >= 0
    with pytest.raises(ValueError), telemetry.job(message_id="m-2"):
        raise ValueError("poison")
    with telemetry.job(message_id="m-3") as j3:
        j3.failed = True  # caught by the worker, left for SQS to retry

    @telemetry.job("handle")
    def handle(x: int) -> int:
        return x + 1

    assert handle(1) == 2 and handle(2) == 3
    telemetry.report_queue(backlog=12, in_flight=2, dead_letter=1)
    telemetry.record_message_age(4.5)
    telemetry.put_metric("DeadLettered", 1)
    lines = tel.emf()
    assert total(lines, "Jobs") == 5
    assert total(lines, "JobErrors") == 2
    assert len(samples(lines, "JobDuration")) == 5
    assert total(lines, "QueueBacklog") == 12 and total(lines, "DeadLetterBacklog") == 1
    assert samples(lines, "MessageAge") == [4.5]
    assert total(lines, "DeadLettered") == 1
    assert all(0 <= v <= 100 for v in samples(lines, "WorkerUtilization"))
    logs = tel.logs()
    inside = next(x for x in logs if x["message"] == "processing")
    assert inside["message_id"] == "m-1" and inside["order_id"] == "o-1"
    assert inside["request_id"] == "m-1" and inside["trace_id"].startswith("1-")
    failed = [x for x in logs if x["logger"] == "telemetry.jobs" and x["level"] == "ERROR"]
    assert len(failed) == 2 and "ValueError: poison" in failed[0]["exception"]
    spans = [s for s in tel.spans() if s.name in ("job", "handle")]
    assert len(spans) == 5


def test_a_field_named_like_a_parameter_is_a_field_not_a_type_error(tel: Tel) -> None:
    """``name`` (the job's name is positional-only in job()) and ``self`` are ordinary fields."""
    with telemetry.job("order.completed", name="alice", self="s-1"):
        telemetry.get_logger("worker").info("inside")

    @telemetry.job("handle", name="bob")
    def handle() -> int:
        return 7

    assert handle() == 7
    logs = tel.logs()
    inside = next(x for x in logs if x["message"] == "inside")
    assert (inside["job"], inside["name"], inside["self"]) == ("order.completed", "alice", "s-1")
    done = [x for x in logs if x["logger"] == "telemetry.jobs"]
    assert [(x["job"], x["name"]) for x in done] == [
        ("order.completed", "alice"),
        ("handle", "bob"),
    ]
    assert {s.name for s in tel.spans()} >= {"order.completed", "handle"}
    assert total(tel.emf(), "Jobs") == 2


def test_worker_utilization_is_the_busy_share_of_each_window() -> None:
    now = [1_700_000_000.0]
    sink = MemorySink()
    settings = _config.load({}, service="w", flush_interval_s=10, worker_slots=2)
    agg = Aggregator(settings, sink, clock=lambda: now[0])
    _errors.take_pending()
    a = agg.job_started()  # slot 1 busy from t=0 to t=15
    now[0] += 5
    b = agg.job_started()  # slot 2 busy from t=5 to t=10
    now[0] += 5
    agg.job_finished(b)
    agg.flush()  # window [0, 10): 10 + 5 busy seconds over 2 slots x 10 s = 75 %
    now[0] += 5
    agg.job_finished(a)
    now[0] += 15  # window [10, 20): 5 s busy of 20 = 25 %; window [20, 30): idle, 0 %
    agg.flush()
    lines = [json.loads(x) for x in sink.lines]
    by_window = {x["_aws"]["Timestamp"]: x["WorkerUtilization"] for x in lines}
    assert by_window == {1_700_000_000_000: 75, 1_700_000_010_000: 25, 1_700_000_020_000: 0}


@pytest.mark.parametrize("scheme", ["tcp", "udp"])
def test_agent_sink_over_real_sockets(scheme: str) -> None:
    kind = socket.SOCK_STREAM if scheme == "tcp" else socket.SOCK_DGRAM
    server = socket.socket(socket.AF_INET, kind)
    server.bind(("127.0.0.1", 0))
    server.settimeout(10)
    port = server.getsockname()[1]
    if scheme == "tcp":
        server.listen(1)
    received: list[bytes] = []

    def serve() -> None:
        if scheme == "tcp":
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)
                while len(b"".join(received).splitlines()) < 2:
                    data = conn.recv(65536)
                    if not data:
                        break
                    received.append(data)
        else:
            for _ in range(2):
                received.append(server.recvfrom(65536)[0])

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    sink = AgentSink(f"{scheme}://127.0.0.1:{port}")
    sink.write(['{"a":1}', '{"b":2}'])
    t.join(10)
    sink.close()
    server.close()
    assert b"".join(received).splitlines() == [b'{"a":1}', b'{"b":2}']


def test_agent_sink_rejects_bad_endpoints() -> None:
    for bad in (
        "http://127.0.0.1:25888",
        "tcp://127.0.0.1",
        "nonsense",
        "tcp://[::1",
        "udp://h:99999",
    ):
        with pytest.raises(ValueError, match="AWS_EMF_AGENT_ENDPOINT"):
            AgentSink(bad)


def test_fork_child_starts_empty_and_parent_keeps_its_window() -> None:
    """os.fork() in-process: the child never re-emits the parent's data."""
    r, w = os.pipe()
    sink = MemorySink()
    settings = _config.load({}, service="f", flush_interval_s=60)
    agg = Aggregator(settings, sink, clock=lambda: 1_700_000_000.0)
    for _ in range(5):
        agg.record_request("/p", 200, 1.0)
    pid = os.fork()
    if pid == 0:  # child: record 2 of its own, write what it would emit, exit hard
        try:
            agg.record_request("/c", 200, 1.0)
            agg.record_request("/c", 200, 1.0)
            agg.flush(final=True)
            os.write(w, "\n".join(sink.lines[-10:] if sink.lines else []).encode())
        finally:
            os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    with os.fdopen(r) as f:
        child_lines = [json.loads(x) for x in f.read().splitlines()]
    agg.flush(final=True)
    parent_lines = [json.loads(x) for x in sink.lines]
    assert total(child_lines, "Requests") == 2 and total(child_lines, "Requests", Route="/p") == 0
    assert total(parent_lines, "Requests") == 5 and total(parent_lines, "Requests", Route="/c") == 0


def test_child_can_write_while_a_parent_thread_held_the_output_lock() -> None:
    """The parent's output writer is busy (its lock held, its thread running) while another
    thread forks: the child's writer starts unlocked, empty, and with a thread of its own."""
    from telemetry import _output, sinks

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with _output.STDOUT._lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert held.wait(10)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the holder thread does not exist here
        try:
            with os.fdopen(w, "w") as out:
                sys.stdout = out
                sinks.StdoutSink().write(['{"child":1}'])  # through the shared stdout writer
                os._exit(0 if _output.flush(5) else 3)
        finally:
            os._exit(1)
    os.close(w)
    try:
        for _ in range(100):  # bounded: a child stuck on the inherited lock is killed, not awaited
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child deadlocked on the output lock inherited from the parent")
    finally:
        release.set()
        t.join(10)
    with os.fdopen(r) as f:
        assert f.read() == '{"child":1}\n'
    assert status == 0
