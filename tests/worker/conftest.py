"""Fixtures for the worker tests: fresh queues on the session's moto server, a ledger, helpers."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import telemetry
from points.storage import open_storage
from telemetry.sinks import MemorySink
from tests.points.conftest import serial_moto_endpoint  # reused: DynamoDB needs a serial moto
from worker import Worker, WorkerConfig, make_client, make_event, setup_queues

__all__ = ["serial_moto_endpoint"]


def wait_for(
    predicate: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


@pytest.fixture
def sqs(aws_env: dict[str, str]) -> Any:
    return make_client("us-east-1", aws_env["AWS_ENDPOINT_URL"])


@pytest.fixture
def queues(sqs: Any) -> dict[str, str]:
    """A queue + DLQ (maxReceiveCount 3, visibility 2 s) unique to the test."""
    return setup_queues(
        sqs, f"t-{uuid.uuid4().hex[:12]}", max_receive_count=3, visibility_timeout_s=2
    )


def depth(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) approximate counts; moto's are exact."""
    a = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def drained(sqs: Any, url: str) -> bool:
    return depth(sqs, url) == (0, 0)


class Ledger:
    """Read-only view of the worker's SQLite file (independent of the worker's own connections)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self) -> list[tuple[str, str, int]]:
        if not self.path.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.path, timeout=5)) as conn:
            try:
                return conn.execute(
                    "SELECT user_id, order_id, points FROM ledger WHERE kind = 'grant'"
                ).fetchall()
            except sqlite3.OperationalError:  # schema not created yet
                return []

    def count(self) -> int:
        return len(self.rows())


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "points.db"


@pytest.fixture
def ledger(db_path: Path) -> Ledger:
    return Ledger(db_path)


def worker_env(
    aws_env: dict[str, str], queue_url: str, db_path: Path, **extra: Any
) -> dict[str, str]:
    """Environment for a worker subprocess: moto endpoint, queue, SQLite file, fast settings."""
    env = {
        **aws_env,
        "QUEUE_URL": queue_url,
        "POINTS_DB_PATH": str(db_path),
        "POINTS_STORE": "sqlite",
        "WORKER_WAIT_TIME_S": "1",
        "WORKER_VISIBILITY_TIMEOUT_S": "2",
        "WORKER_QUEUE_POLL_S": "1",
        "TELEMETRY_FLUSH_INTERVAL_S": "1",
        "OTEL_SERVICE_NAME": "points-worker",
        "APP_VERSION": "test",
        "PYTHONUNBUFFERED": "1",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


WORKER_CMD = [sys.executable, "-m", "worker"]


@contextlib.contextmanager
def running_worker(
    queue_url: str, db_path: Path, endpoint: str, **settings: Any
) -> Iterator[Worker]:
    """An in-process :class:`Worker` over HTTP to moto, stopped (gracefully) on exit."""
    config = WorkerConfig(
        queue_url=queue_url,
        endpoint_url=endpoint,
        **{"wait_time_s": 1, "visibility_timeout_s": 2, "queue_poll_s": 0, **settings},
    )
    storage = open_storage({"POINTS_DB_PATH": str(db_path)})
    # Telemetry into memory: otherwise it configures itself on first use and its flush thread
    # and atexit hook print EMF lines to stdout after pytest's report.
    telemetry.configure(
        "points-worker",
        "test",
        sink=MemorySink(),
        log_stream=io.StringIO(),
        span_exporter=InMemorySpanExporter(),
        worker_slots=config.concurrency,
    )
    worker = Worker(config, storage)
    worker.start()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(worker.wait()), daemon=True)
    waiter.start()
    try:
        yield worker
    finally:
        worker.stop()
        waiter.join(config.stop_timeout_s + 5)
        storage.close()
        telemetry.shutdown()
    assert result == [True], "the worker did not stop cleanly"


def emf_docs(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The EMF documents among output lines (JSON log lines are skipped)."""
    return [json.loads(line) for line in lines if line.startswith("{") and '"_aws"' in line]


def emf_values(doc: dict[str, Any], name: str) -> list[float]:
    """A metric's samples in any of the three EMF value forms."""
    v = doc[name]
    if isinstance(v, dict):
        return [x for x, c in zip(v["Values"], v["Counts"], strict=True) for _ in range(int(c))]
    return list(v) if isinstance(v, list) else [v]


def emf_sums(lines: Iterable[str]) -> Counter[str]:
    """Sum of every metric's samples over all EMF documents."""
    sums: Counter[str] = Counter()
    for doc in emf_docs(lines):
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                sums[metric["Name"]] += sum(emf_values(doc, metric["Name"]))
    return sums


def _event(amount: str = "100", version: str = "1", user: str = '"user-h"') -> str:
    body = make_event("user-h", "order-h", 100)
    return (
        body.replace(":100}", f":{amount}}}")
        .replace('"version":1', f'"version":{version}')
        .replace('"user-h"', user)
    )


#: Bodies SQS accepts that once escaped the poison handling or could (issue #11): huge numbers
#: anywhere, deep nesting, non-finite numbers, wrong types, broken Unicode escapes, duplicate
#: keys. Each one is poison.
HOSTILE_BODIES = [
    _event(amount="9" * 5000),
    _event(version="1" * 5000),
    _event().replace('"order.completed"', "7" * 4400),
    "9" * 5000,
    "[" * 50_000 + "]" * 50_000,
    '{"type":' + "[" * 5_000 + "]" * 5_000 + ',"version":1,"data":{}}',
    _event(amount="1e999"),
    _event(amount="-0"),
    _event(amount="NaN"),
    _event(amount="-Infinity"),
    _event(amount='"100"'),
    _event(version="1.0"),
    _event(user="5"),
    _event(user='"\\ud800"'),
    "\ufeff" + _event(),
    '{"type":"order.completed","type":"order.completed","version":1,"data":{}}',
    '{"type":"order.completed","version":1,"data":[]}',
    "{" + ",".join(f'"k{i}":1' for i in range(5_000)) + ',"k7":2}',
]
