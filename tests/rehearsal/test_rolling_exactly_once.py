"""The exactly-once check: a clean store passes; a doctored one fails, naming what is wrong."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from points import GrantRequest, PointsService, open_storage, points_for
from rehearsal.rolling.exactly_once import (
    Entry,
    ExactlyOnceReport,
    check,
    epoch_of,
    grant_times,
    read_ledger,
)
from rehearsal.rolling.producer import Produced
from rehearsal.rolling.report import harm

ORDERS = [
    Produced(f"ord-{i}", f"user-{i % 3}", 1000 + 250 * i, points_for(1000 + 250 * i), 100.0 + i)
    for i in range(8)
]


def credit(db: Path, orders: list[Produced]) -> None:
    """Credit ``orders`` in the SQLite store at ``db`` (created if need be) as a worker task
    does, each one delivered twice (a redelivery is no second credit)."""
    storage = open_storage({"POINTS_STORE": "sqlite", "POINTS_DB_PATH": str(db)})
    try:
        service = PointsService(storage)
        for o in orders:
            service.grant(GrantRequest(o.user_id, o.order_id, o.amount_jpy))
            service.grant(GrantRequest(o.user_id, o.order_id, o.amount_jpy))  # a redelivery
    finally:
        storage.close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "points.db"
    credit(db, ORDERS)
    return db


def _check(db: Path, produced: list[Produced] = ORDERS) -> ExactlyOnceReport:
    entries, balances = read_ledger(db)
    return check(produced, entries, balances)


def test_a_clean_store_passes(store: Path) -> None:
    report = _check(store)
    assert report.ok, report.problems
    assert report.produced == report.credited_once == len(ORDERS)
    assert "Exactly-once OK" in report.describe()


def _sql(db: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(statement, args)
    conn.close()


def test_a_lost_credit_fails(store: Path) -> None:
    _sql(store, "DELETE FROM ledger WHERE order_id = ?", "ord-3")
    report = _check(store)
    assert not report.ok
    assert report.missing == ["ord-3"]
    assert "ord-3: produced but never credited" in report.problems
    assert report.balances  # the user's balance no longer adds up either


def test_wrong_points_fail(store: Path) -> None:
    _sql(store, "UPDATE ledger SET points = points + 1 WHERE order_id = ?", "ord-5")
    report = _check(store)
    assert not report.ok and len(report.wrong) == 1 and "ord-5" in report.wrong[0]


def test_a_credit_nobody_produced_fails(store: Path) -> None:
    _sql(
        store,
        "INSERT INTO ledger (entry_id, kind, user_id, order_id, amount_jpy, points, balance,"
        " created_at) VALUES ('x', 'grant', 'user-0', 'ord-phantom', 100, 1, 1, 'now')",
    )
    report = _check(store)
    assert not report.ok and "ord-phantom" in report.unexpected[0]


def test_a_doctored_balance_fails(store: Path) -> None:
    _sql(store, "UPDATE balances SET balance = balance + 7 WHERE user_id = ?", "user-1")
    report = _check(store)
    assert not report.ok and report.balances and "user-1" in report.balances[0]


def test_credited_twice_fails() -> None:
    """A store without the (kind, order_id) uniqueness (another backend, a bug) credits twice."""
    entries = [Entry("grant", o.order_id, o.user_id, o.points) for o in ORDERS]
    entries.append(Entry("grant", "ord-2", ORDERS[2].user_id, ORDERS[2].points))
    report = check(ORDERS, entries)
    assert not report.ok and report.credited_twice == {"ord-2": 2}
    assert "ord-2: credited 2 times" in report.problems
    assert harm(ORDERS, {}, 5.0, 0, len(report.credited_twice))["credited_twice"] == 1


def test_nothing_produced_is_not_ok() -> None:
    report = check([], [])
    assert not report.ok and "nothing could be checked" in report.describe()


def test_harm_counts_late_and_never_credited_orders() -> None:
    first = {o.order_id: o.sent_at + (12.0 if i < 2 else 0.5) for i, o in enumerate(ORDERS[:-1])}
    h = harm(ORDERS, first, 10.0, dead_lettered=3, credited_twice=0)
    assert h["never_credited"] == 1
    assert h["delayed_past_objective"] == 3  # two late, one never credited
    assert h["dead_lettered"] == 3 and h["credited_twice"] == 0
    assert h["delay_max_s"] == 12.0 and h["delay_p50_s"] == 0.5


def test_harm_takes_a_lost_credit_line_from_the_ledger() -> None:
    """A task SIGKILLed with its credit line still buffered: the ledger has the grant, the log
    lines do not; the order is credited at the ledger's time, not "never credited"."""
    lost = ORDERS[3]
    first = {o.order_id: o.sent_at + 0.5 for o in ORDERS if o is not lost}
    ledger: dict[str, float | None] = {o.order_id: o.sent_at + 0.4 for o in ORDERS}
    ledger[lost.order_id] = lost.sent_at + 11.0
    h = harm(ORDERS, first, 10.0, dead_lettered=0, credited_twice=0, ledger=ledger)
    assert h["never_credited"] == 0
    assert h["credit_log_lines_missing"] == 1 and h["credits_from"] == "ledger"
    # the lost line's order at the ledger's time (late); the others at their lines' times
    assert h["delay_max_s"] == 11.0 and h["delay_p50_s"] == 0.5
    assert h["delayed_past_objective"] == 1


def test_harm_with_the_ledger_counts_only_what_the_ledger_lacks() -> None:
    first = {o.order_id: o.sent_at + 0.5 for o in ORDERS}  # a line for every order
    ledger: dict[str, float | None] = {o.order_id: o.sent_at for o in ORDERS[1:]}
    ledger[ORDERS[2].order_id] = None  # unreadable time: still credited
    del first[ORDERS[2].order_id]
    h = harm(ORDERS, first, 10.0, dead_lettered=0, credited_twice=0, ledger=ledger)
    # ord-0 has a line but no grant: the store is the truth
    assert h["never_credited"] == 1 and h["delayed_past_objective"] == 1
    assert h["credit_log_lines_missing"] == 1  # ord-2: credited, delay unknown
    assert h["delay_max_s"] == 0.5


def test_harm_without_the_ledger_keeps_the_log_lines_and_says_so() -> None:
    first = {o.order_id: o.sent_at + 0.5 for o in ORDERS[1:]}
    h = harm(ORDERS, first, 10.0, dead_lettered=0, credited_twice=0)
    assert h["never_credited"] == 1 and h["credits_from"] == "log lines"
    assert h["credit_log_lines_missing"] is None


def test_grant_times_read_the_stores_created_at(store: Path) -> None:
    entries, _ = read_ledger(store)
    times = grant_times(entries)
    assert set(times) == {o.order_id for o in ORDERS}
    conn = sqlite3.connect(store)
    stored = dict(conn.execute("SELECT order_id, created_at FROM ledger WHERE kind = 'grant'"))
    conn.close()
    for order_id, created_at in stored.items():
        expected = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert times[order_id] == expected.timestamp()


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("1970-01-01T00:00:01.500Z", 1.5),
        ("1970-01-01T00:00:01.500+00:00", 1.5),
        ("1970-01-01T01:00:00+01:00", 0.0),
        ("1970-01-01T00:00:02", 2.0),  # no offset: UTC, as the store writes it
        ("now", None),
        ("", None),
    ],
)
def test_epoch_of_a_created_at(text: str, epoch: float | None) -> None:
    assert epoch_of(text) == epoch
