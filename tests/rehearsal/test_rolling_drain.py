"""The worker rehearsal's drain after the deployment: once the queue, the messages in flight and
the dead-letter queue are empty, the orders without a credit log line (a SIGKILLed task loses its
last lines) are looked up in the store's ledger instead of waiting out ``DRAIN_S``; a store that
cannot be read keeps the drain waiting. The real SQLite store from ``points``; SQS's queue depths
and the drain's wait between looks are in-process fakes (the drain's decisions are the subject)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rehearsal.rolling.model import WorkerOptions
from rehearsal.rolling.runner import _Rehearsal
from tests.rehearsal.test_rolling_exactly_once import ORDERS, credit

LOST = ORDERS[3]  # the order whose credit line a SIGKILLed task lost


class _Queues:
    """``get_queue_attributes`` of the queue and its DLQ, with depths the test sets."""

    def __init__(self) -> None:
        self.depth = {"queue": (0, 0), "dlq": (0, 0)}  # url -> (visible, in flight)

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        visible, in_flight = self.depth[QueueUrl]
        return {
            "Attributes": {
                "ApproximateNumberOfMessages": str(visible),
                "ApproximateNumberOfMessagesNotVisible": str(in_flight),
            }
        }


class _KeptWaiting(Exception):
    """The drain waited once more than the test allowed."""


class _Waits:
    """Stands for ``_Rehearsal.wait``: each call runs the next of ``then`` (the world moving on
    while the drain waits); a call beyond them raises, so a drain that never ends fails at once."""

    def __init__(self, *then: Callable[[], None]) -> None:
        self.then = list(then)
        self.calls = 0

    def __call__(self, seconds: float, phase: str, *, decide: bool = True) -> list[str]:
        if self.calls == len(self.then):
            raise _KeptWaiting(f"the drain waited a {self.calls + 1}th time")
        self.then[self.calls]()
        self.calls += 1
        return []


@pytest.fixture
def rehearsal(tmp_path: Path) -> Iterator[_Rehearsal]:
    """A rehearsal after its deployment, the producer stopped: every order sent, every credit
    line seen except ``LOST``'s."""
    r = _Rehearsal(WorkerOptions(scenario="healthy", out=tmp_path / "out", progress=False))
    r.producer = type("Stopped", (), {"produced": ORDERS})()  # type: ignore[assignment]
    r.sqs, r.queue_url, r.dlq_url = _Queues(), "queue", "dlq"
    r.credits.first.update({o.order_id: o.sent_at + 0.5 for o in ORDERS if o is not LOST})
    try:
        yield r
    finally:
        r.collector.close()


def _drain(r: _Rehearsal, waits: _Waits) -> dict[str, Any]:
    r.wait = waits  # type: ignore[method-assign]
    return r.drain()


def test_an_empty_queue_and_a_ledger_with_every_order_end_the_drain_at_once(
    rehearsal: _Rehearsal,
) -> None:
    credit(rehearsal.db_path, ORDERS)
    waits = _Waits()
    assert _drain(rehearsal, waits) == {"dead_letter_queue_seen": 0, "redriven": 0}
    assert waits.calls == 0


def test_an_order_the_ledger_lacks_too_keeps_the_drain_waiting(rehearsal: _Rehearsal) -> None:
    credit(rehearsal.db_path, [o for o in ORDERS if o is not LOST])
    waits = _Waits(lambda: credit(rehearsal.db_path, [LOST]))
    _drain(rehearsal, waits)
    assert waits.calls == 1  # it looked at the ledger again after waiting


def test_the_credit_line_arriving_ends_the_drain_without_the_ledger(
    rehearsal: _Rehearsal,
) -> None:
    """No store at all, then the line: the log lines alone are enough."""

    def line_arrives() -> None:
        rehearsal.credits.first[LOST.order_id] = LOST.sent_at + 1.0

    waits = _Waits(line_arrives)
    _drain(rehearsal, waits)
    assert waits.calls == 1


@pytest.mark.parametrize("depth", [(1, 0), (0, 1)], ids=["visible", "in flight"])
def test_a_message_left_in_the_queue_keeps_the_drain_waiting_whatever_the_ledger_says(
    rehearsal: _Rehearsal, depth: tuple[int, int]
) -> None:
    credit(rehearsal.db_path, ORDERS)
    queues: _Queues = rehearsal.sqs
    queues.depth["queue"] = depth
    waits = _Waits(lambda: queues.depth.update(queue=(0, 0)))
    _drain(rehearsal, waits)
    assert waits.calls == 1


def _missing(db: Path) -> None:
    pass


def _not_a_database(db: Path) -> None:
    db.write_bytes(b"this is not an SQLite database, it only has the name of one\n" * 20)


def _no_ledger_yet(db: Path) -> None:
    sqlite3.connect(db).close()  # an empty database file: no tables


@pytest.mark.parametrize("unreadable", [_missing, _not_a_database, _no_ledger_yet])
def test_a_store_that_cannot_be_read_keeps_the_drain_waiting_until_it_can(
    rehearsal: _Rehearsal, unreadable: Callable[[Path], None]
) -> None:
    db = rehearsal.db_path
    unreadable(db)

    def readable() -> None:
        db.unlink(missing_ok=True)
        credit(db, ORDERS)

    waits = _Waits(lambda: None, readable)
    _drain(rehearsal, waits)
    assert waits.calls == 2  # asked again after each wait, done once the ledger could be read
