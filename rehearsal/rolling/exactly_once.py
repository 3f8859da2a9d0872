"""Exactly-once credit across the rolling update and its rollback: every distinct order event the
producer got accepted is credited exactly once, with the points it is due, to its user; nothing
else is credited; every balance is the sum of its user's entries.

The store is read directly (its SQLite file, read-only), independent of any worker version, as the
API rehearsal's safety check reads balances from the store besides the surviving version's API.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

#: Problems listed in full in the report; the rest are counted.
MAX_LISTED = 50


class Order(Protocol):
    """What the check needs of a produced order (:class:`rehearsal.rolling.producer.Produced`)."""

    order_id: str
    user_id: str
    points: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger row: ``kind`` grant or redemption; ``points`` positive for both;
    ``created_at`` as the store wrote it (ISO 8601 UTC, milliseconds: ``2024-05-01T12:00:00.123Z``)."""

    kind: str
    order_id: str
    user_id: str
    points: int
    created_at: str = ""


def read_ledger(db_path: Path) -> tuple[list[Entry], dict[str, int]]:
    """Every ledger entry and every stored balance of the SQLite store at ``db_path``
    (read-only; ``sqlite3.Error`` if it cannot be read)."""
    uri = f"{db_path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        entries = [
            Entry(str(k), str(o), str(u), int(p), str(c))
            for k, o, u, p, c in conn.execute(
                "SELECT kind, order_id, user_id, points, created_at FROM ledger ORDER BY seq"
            )
        ]
        balances = {
            str(u): int(b) for u, b in conn.execute("SELECT user_id, balance FROM balances")
        }
    finally:
        conn.close()
    return entries, balances


def epoch_of(created_at: str) -> float | None:
    """Epoch seconds of a ledger ``created_at`` (ISO 8601; without an offset it is UTC, as the
    store writes it); ``None`` when it is not a date and time."""
    try:
        when = datetime.fromisoformat(created_at)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def grant_times(entries: Iterable[Entry]) -> dict[str, float | None]:
    """``order_id -> epoch s`` of each order's first grant in the ledger (``entries`` in ledger
    order); ``None`` for a grant whose ``created_at`` is unreadable: credited, time unknown."""
    times: dict[str, float | None] = {}
    for e in entries:
        if e.kind == "grant" and e.order_id not in times:
            times[e.order_id] = epoch_of(e.created_at)
    return times


@dataclass
class ExactlyOnceReport:
    """The check's findings; ``ok`` only when every list is empty and something was produced."""

    produced: int = 0
    credited_once: int = 0
    missing: list[str] = field(default_factory=list)  # produced, never credited
    credited_twice: dict[str, int] = field(default_factory=dict)  # order -> grant entries (> 1)
    wrong: list[str] = field(default_factory=list)  # credited with other points or to another user
    unexpected: list[str] = field(default_factory=list)  # credited, never produced
    balances: list[str] = field(default_factory=list)  # balance != sum of the user's entries

    @property
    def ok(self) -> bool:
        return self.produced > 0 and not (
            self.missing or self.credited_twice or self.wrong or self.unexpected or self.balances
        )

    @property
    def problems(self) -> list[str]:
        out = [f"{o}: produced but never credited" for o in self.missing]
        out += [f"{o}: credited {n} times" for o, n in sorted(self.credited_twice.items())]
        out += self.wrong + self.unexpected + self.balances
        return out

    def describe(self) -> str:
        """One sentence: the verdict and what was checked."""
        if not self.produced:
            return "Exactly-once FAILED: no order event was produced, so nothing could be checked."
        if self.ok:
            return (
                f"Exactly-once OK: each of the {self.produced} order events produced is credited"
                " exactly once in the store, with its points, to its user; nothing else is"
                " credited, and every balance adds up."
            )
        return (
            f"Exactly-once FAILED: of {self.produced} order events, {self.credited_once} credited"
            f" once; {len(self.missing)} never credited, {len(self.credited_twice)} credited more"
            f" than once, {len(self.wrong)} with the wrong points or user,"
            f" {len(self.unexpected)} credited without being produced,"
            f" {len(self.balances)} balances that do not add up."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "produced": self.produced,
            "credited_once": self.credited_once,
            "missing": len(self.missing),
            "credited_twice": len(self.credited_twice),
            "wrong": len(self.wrong),
            "unexpected": len(self.unexpected),
            "balance_mismatches": len(self.balances),
            "problems": self.problems[:MAX_LISTED],
        }


def check(
    produced: Iterable[Order],
    entries: Iterable[Entry],
    balances: Mapping[str, int] | None = None,
) -> ExactlyOnceReport:
    """Compare the produced orders with the store's entries (and balances, when given)."""
    report = ExactlyOnceReport()
    wanted: dict[str, Order] = {}
    for order in produced:
        wanted.setdefault(order.order_id, order)  # distinct events: a re-send is the same order
    report.produced = len(wanted)
    grants: dict[str, list[Entry]] = defaultdict(list)
    net: Counter[str] = Counter()
    for e in entries:
        net[e.user_id] += e.points if e.kind == "grant" else -e.points
        if e.kind == "grant":
            grants[e.order_id].append(e)
    for order_id, order in wanted.items():
        got = grants.get(order_id, [])
        if not got:
            report.missing.append(order_id)
            continue
        if len(got) > 1:
            report.credited_twice[order_id] = len(got)
        elif (got[0].user_id, got[0].points) != (order.user_id, order.points):
            report.wrong.append(
                f"{order_id}: credited {got[0].points} points to {got[0].user_id}, due "
                f"{order.points} to {order.user_id}"
            )
        else:
            report.credited_once += 1
    report.unexpected = [
        f"{o}: credited {len(g)} time(s) but never produced"
        for o, g in grants.items()
        if o not in wanted
    ]
    if balances is not None:
        for user in sorted(set(balances) | set(net)):
            if balances.get(user, 0) != net.get(user, 0):
                report.balances.append(
                    f"{user}: balance {balances.get(user, 0)}, entries add up to {net.get(user, 0)}"
                )
    return report


@dataclass(frozen=True)
class StoreCheck:
    """The store read at the end of a run: the exactly-once ``report`` and ``credits`` (order_id
    -> epoch s of its first grant, :func:`grant_times`); both ``None`` when the store could not
    be read, and ``unreadable`` says why (``"points.db: file is not a database"``)."""

    report: ExactlyOnceReport | None
    credits: dict[str, float | None] | None
    unreadable: str | None = None


def check_store(db_path: Path, produced: Iterable[Order]) -> StoreCheck:
    """Read the SQLite store at ``db_path`` and check it against ``produced``; a store that
    cannot be read (missing, not a database, no ledger) gives no verdict rather than raising."""
    try:
        entries, balances = read_ledger(db_path)
    except sqlite3.Error as exc:
        return StoreCheck(None, None, f"{db_path.name}: {exc}")
    return StoreCheck(check(produced, entries, balances), grant_times(entries))
