"""SQLite backend: one file shared by every gunicorn worker and by two app versions (blue/green).

Correctness across processes comes from SQLite itself, not from Python locks:

* every write runs in a ``BEGIN IMMEDIATE`` transaction, which takes the database's single write
  lock up front, so "is this order_id known? -> insert ledger row -> update balance" is one atomic
  step for all processes sharing the file;
* ``UNIQUE (kind, order_id)`` is the backstop should anything bypass that path;
* WAL mode lets readers (history, readiness) proceed while a writer holds the lock, and the busy
  timeout makes writers queue for the lock instead of failing at once.

Connections are opened lazily, one per (process, thread): SQLite connections must not cross a
``fork()`` (gunicorn forks workers after the app may have been imported) and are not meant to be
shared between threads.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator

from points.storage.base import (
    EntryKind,
    HistoryPage,
    LedgerEntry,
    Outcome,
    StorageUnavailable,
    decode_cursor,
    encode_cursor,
    new_entry,
    resolve_repeat,
)

DEFAULT_BUSY_TIMEOUT_MS = 5_000
SCHEMA_VERSION = 1

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS ledger (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        entry_id   TEXT    NOT NULL UNIQUE,
        kind       TEXT    NOT NULL CHECK (kind IN ('grant', 'redemption')),
        user_id    TEXT    NOT NULL,
        order_id   TEXT    NOT NULL,
        amount_jpy INTEGER,
        points     INTEGER NOT NULL CHECK (points >= 0),
        balance    INTEGER NOT NULL CHECK (balance >= 0),
        created_at TEXT    NOT NULL,
        UNIQUE (kind, order_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS ledger_user_seq ON ledger (user_id, seq)",
    """
    CREATE TABLE IF NOT EXISTS balances (
        user_id TEXT    PRIMARY KEY,
        balance INTEGER NOT NULL CHECK (balance >= 0)
    )
    """,
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# SQLite INTEGER is a signed 64-bit value; ledger sequence numbers never exceed it.
_MAX_SEQ = 2**63 - 1

_COLUMNS = "entry_id, kind, user_id, order_id, amount_jpy, points, balance, created_at"


def _entry(row: tuple) -> LedgerEntry:
    return LedgerEntry(
        entry_id=row[0],
        kind=row[1],
        user_id=row[2],
        order_id=row[3],
        amount_jpy=row[4],
        points=row[5],
        balance=row[6],
        created_at=row[7],
    )


class SQLiteStorage:
    """The points ledger in one SQLite file (see the module docstring for the concurrency model)."""

    def __init__(self, path: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._lock = threading.Lock()
        self._schema_ready_pid: int | None = None
        self._opened: list[tuple[int, sqlite3.Connection]] = []

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        pid = os.getpid()
        held: tuple[int, sqlite3.Connection] | None = getattr(self._local, "conn", None)
        if held is not None and held[0] == pid:
            return held[1]
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,  # only so close() may run from another thread
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            self._enable_wal(conn)
            conn.execute("PRAGMA foreign_keys = ON")
            self._ensure_schema(conn, pid)
        except BaseException:
            conn.close()
            raise
        self._local.conn = (pid, conn)
        with self._lock:
            self._opened.append((pid, conn))
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL needs an exclusive lock, and SQLite answers "database is locked" at
        # once (without its busy handler) while other connections are opening the same new file.
        # Once the file is in WAL mode the setting is persistent, so most connections only read it.
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        # ":memory:" databases keep journal mode "memory"; WAL does not apply to them.
        while conn.execute("PRAGMA journal_mode").fetchone()[0].lower() not in ("wal", "memory"):
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError:
                mode = None
            if mode is not None and mode.lower() == "wal":
                return
            if time.monotonic() >= deadline:
                raise sqlite3.OperationalError(f"could not switch {self.path!r} to WAL mode")
            time.sleep(0.01)

    def _ensure_schema(self, conn: sqlite3.Connection, pid: int) -> None:
        if self._schema_ready_pid == pid:
            return
        # IF NOT EXISTS + the write lock make this safe when many processes start at once.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._schema_ready_pid = pid

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn driver errors (locked for too long, unreadable file, ...) into StorageUnavailable."""
        try:
            yield
        except sqlite3.Error as exc:
            self._drop_connection()
            raise StorageUnavailable(f"SQLite at {self.path!r}: {exc}") from exc

    def _drop_connection(self) -> None:
        held = getattr(self._local, "conn", None)
        self._local.conn = None
        if held is not None and held[0] == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                held[1].close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- Storage protocol ------------------------------------------------------------------------

    def grant(self, *, user_id: str, order_id: str, amount_jpy: int, points: int) -> Outcome:
        with self._errors():
            return self._append(
                kind="grant",
                user_id=user_id,
                order_id=order_id,
                amount_jpy=amount_jpy,
                points=points,
            )

    def redeem(self, *, user_id: str, order_id: str, points: int) -> Outcome:
        with self._errors():
            return self._append(
                kind="redemption",
                user_id=user_id,
                order_id=order_id,
                amount_jpy=None,
                points=points,
            )

    def _append(
        self,
        *,
        kind: EntryKind,
        user_id: str,
        order_id: str,
        amount_jpy: int | None,
        points: int,
    ) -> Outcome:
        if points < 0:
            raise ValueError("points must not be negative")
        with self._write() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM ledger WHERE kind = ? AND order_id = ?", (kind, order_id)
            ).fetchone()
            if row is not None:
                return resolve_repeat(
                    _entry(row), user_id=user_id, amount_jpy=amount_jpy, points=points
                )
            found = conn.execute(
                "SELECT balance FROM balances WHERE user_id = ?", (user_id,)
            ).fetchone()
            entry = new_entry(
                kind=kind,
                user_id=user_id,
                order_id=order_id,
                amount_jpy=amount_jpy,
                points=points,
                balance=found[0] if found else 0,
            )
            conn.execute(
                f"INSERT INTO ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.entry_id,
                    entry.kind,
                    entry.user_id,
                    entry.order_id,
                    entry.amount_jpy,
                    entry.points,
                    entry.balance,
                    entry.created_at,
                ),
            )
            conn.execute(
                "INSERT INTO balances (user_id, balance) VALUES (?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET balance = excluded.balance",
                (user_id, entry.balance),
            )
            return Outcome(entry=entry, created=True)

    def balance(self, user_id: str) -> int:
        with self._errors():
            row = (
                self._connect()
                .execute("SELECT balance FROM balances WHERE user_id = ?", (user_id,))
                .fetchone()
            )
            return row[0] if row else 0

    def history(self, user_id: str, *, limit: int, cursor: str | None = None) -> HistoryPage:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        below = decode_cursor(user_id, cursor, max_seq=_MAX_SEQ) if cursor is not None else None
        with self._errors():
            conn = self._connect()
            # One read transaction, so the balance and the page come from the same snapshot.
            conn.execute("BEGIN")
            try:
                found = conn.execute(
                    "SELECT balance FROM balances WHERE user_id = ?", (user_id,)
                ).fetchone()
                query = f"SELECT {_COLUMNS}, seq FROM ledger WHERE user_id = ?"
                params: tuple = (user_id,)
                if below is not None:
                    query += " AND seq < ?"
                    params += (below,)
                rows = conn.execute(query + " ORDER BY seq DESC LIMIT ?", (*params, limit + 1))
                rows = rows.fetchall()
            finally:
                conn.execute("COMMIT")
        more = len(rows) > limit
        rows = rows[:limit]
        return HistoryPage(
            balance=found[0] if found else 0,
            entries=[_entry(r[:8]) for r in rows],
            next_cursor=encode_cursor(user_id, rows[-1][8]) if more else None,
        )

    def ping(self) -> None:
        with self._errors():
            self._connect().execute("SELECT count(*) FROM sqlite_master").fetchone()

    def close(self) -> None:
        """Close every connection this process opened (any thread's)."""
        pid = os.getpid()
        with self._lock:
            mine = [conn for owner, conn in self._opened if owner == pid]
            self._opened = [item for item in self._opened if item[0] != pid]
        for conn in mine:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()
