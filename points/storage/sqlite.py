"""SQLite backend: one file shared by every gunicorn worker and by two app versions (blue/green).

Correctness across processes comes from SQLite itself, not from Python locks:

* every write runs in a ``BEGIN IMMEDIATE`` transaction, which takes the database's single write
  lock up front, so "is this order_id known? -> insert ledger row -> update balance" is one atomic
  step for all processes sharing the file;
* unique indexes on the order keys are the backstop should anything bypass that path: a grant's
  ``order_id`` (``ledger_grant_order``), a redemption's ``(user_id, order_id)``
  (``ledger_redemption_order``, see :data:`points.storage.base.PER_USER_ORDER_KINDS`);
* WAL mode lets readers (history, readiness) proceed while a writer holds the lock, and the busy
  timeout makes writers queue for the lock instead of failing at once.

Connections are opened lazily, one per (process, thread): SQLite connections must not cross a
``fork()`` (gunicorn forks workers after the app may have been imported) and are not meant to be
shared between threads.

Formats (see :mod:`points.formats`): every ledger row and balance row carries the ledger format
its amounts are stored in, and ``ledger_formats`` is the store's marker, every format ever
written (a format enters it in the same transaction as its first row). ``PRAGMA user_version``
is the schema version: an older schema is upgraded in place (additive: columns with defaults);
a newer one is refused untouched. A version that does not read every format in the marker
refuses to write (checked inside the write transaction, so no race with a newer writer) and to
serve any user whose rows it cannot read; ``ping`` fails so readiness does.

Redemption ids per user: versions before it kept ``UNIQUE (kind, order_id)`` in the ledger table,
so a redemption id was one namespace for all users. Such a file is rebuilt once, on open, in one
write transaction (rows, sequence numbers and cursors kept) with the per-kind indexes above. The
schema version stays 2 because those versions still read and write the rebuilt file safely: they
look an order up by ``(kind, order_id)`` and insert only when no user's row has it, so they can
answer 409 to a user whose id another user also holds, but never store a redemption twice.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator

from points.formats import DEFAULT_FORMATS, Formats, encode_points
from points.storage.base import (
    MAX_NAMED_RECORDS,
    PER_USER_ORDER_KINDS,
    EntryKind,
    FormatUnsupported,
    HistoryPage,
    LedgerEntry,
    Outcome,
    StorageUnavailable,
    check_store_formats,
    decode_cursor,
    decode_stored,
    encode_cursor,
    new_entry,
    resolve_repeat,
    unreadable_user,
)

DEFAULT_BUSY_TIMEOUT_MS = 5_000
#: SQLITE_BUSY, SQLITE_LOCKED: another connection holds the lock (a transient unavailability)
_BUSY_CODES = frozenset((sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))
#: Schema 1: ledger + balances. Schema 2: a ``format`` column on both, the ``ledger_formats``
#: marker table.
SCHEMA_VERSION = 2

_LEDGER_USER_SEQ = "CREATE INDEX IF NOT EXISTS ledger_user_seq ON ledger (user_id, seq)"
_BALANCES = """
    CREATE TABLE IF NOT EXISTS balances (
        user_id TEXT    PRIMARY KEY,
        balance INTEGER NOT NULL CHECK (balance >= 0)
    )
    """
_LEDGER_COLUMNS = """
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        entry_id   TEXT    NOT NULL UNIQUE,
        kind       TEXT    NOT NULL CHECK (kind IN ('grant', 'redemption')),
        user_id    TEXT    NOT NULL,
        order_id   TEXT    NOT NULL,
        amount_jpy INTEGER,
        points     INTEGER NOT NULL CHECK (points >= 0),
        balance    INTEGER NOT NULL CHECK (balance >= 0),
        created_at TEXT    NOT NULL"""
#: The tables as versions before formats (and before per-user redemption ids) created them.
_SCHEMA_1 = (
    f"CREATE TABLE IF NOT EXISTS ledger ({_LEDGER_COLUMNS},\n        UNIQUE (kind, order_id)\n)",
    _LEDGER_USER_SEQ,
    _BALANCES,
)
#: Today's ledger table: the order keys are the partial unique indexes of ``_ORDER_KEYS``.
_LEDGER = (
    f"CREATE TABLE {{table}} ({_LEDGER_COLUMNS},\n        format INTEGER NOT NULL DEFAULT 1\n)"
)
_ORDER_KEYS = (
    "CREATE UNIQUE INDEX IF NOT EXISTS ledger_grant_order ON ledger (order_id) "
    "WHERE kind = 'grant'",
    "CREATE UNIQUE INDEX IF NOT EXISTS ledger_redemption_order ON ledger (user_id, order_id) "
    "WHERE kind = 'redemption'",
    # Not a key: versions before per-user redemption ids look an order up by (kind, order_id)
    # with the kind as a parameter, which no partial index serves. Without this index each of
    # their writes (a rollback to them) scans the whole ledger under the write lock.
    "CREATE INDEX IF NOT EXISTS ledger_kind_order ON ledger (kind, order_id)",
)
# Schema 1 -> 2 is additive: rows written before formats existed are format 1 (the default).
_FORMAT_COLUMNS = {
    "ledger": "ALTER TABLE ledger ADD COLUMN format INTEGER NOT NULL DEFAULT 1",
    "balances": "ALTER TABLE balances ADD COLUMN format INTEGER NOT NULL DEFAULT 1",
}
_MARKER = "CREATE TABLE IF NOT EXISTS ledger_formats (format INTEGER PRIMARY KEY)"

# SQLite INTEGER is a signed 64-bit value; ledger sequence numbers never exceed it.
_MAX_SEQ = 2**63 - 1

_COLUMNS = "entry_id, kind, user_id, order_id, amount_jpy, points, balance, created_at, format"
# The kind is written out (not a parameter) so that SQLite can use the partial index.
_FIND_ORDER = {
    "grant": f"SELECT {_COLUMNS} FROM ledger WHERE kind = 'grant' AND order_id = ?",
    "redemption": f"SELECT {_COLUMNS} FROM ledger "
    "WHERE kind = 'redemption' AND user_id = ? AND order_id = ?",
}


def _newer_schema(path: str, version: int, formats: Formats) -> FormatUnsupported:
    return FormatUnsupported(
        f"SQLite store {path!r} has schema {version}, newer than this version's "
        f"({SCHEMA_VERSION}; it {formats.describe()}): refusing to open it, nothing was changed",
        readable=tuple(sorted(formats.read)),
    )


def _entry(row: tuple, formats: Formats) -> LedgerEntry:
    """A ``_COLUMNS`` row as a whole-points entry; FormatUnsupported if ``formats`` cannot read it."""
    fmt = row[8]
    decode = {"user_id": row[2], "record": row[0]}
    return LedgerEntry(
        entry_id=row[0],
        kind=row[1],
        user_id=row[2],
        order_id=row[3],
        amount_jpy=row[4],
        points=decode_stored(formats, row[5], fmt, **decode),
        balance=decode_stored(formats, row[6], fmt, **decode),
        created_at=row[7],
        format=fmt,
    )


def _scope_order_keys(conn: sqlite3.Connection) -> None:
    """Give the ledger today's order keys (:data:`_ORDER_KEYS`), rebuilding a ledger table that
    still has ``UNIQUE (kind, order_id)`` (rows, ``seq`` values and the sequence kept). Runs under
    the write lock; see the module docstring for why versions before it can share the result."""
    for _, name, _unique, origin, *_ in conn.execute("PRAGMA index_list(ledger)").fetchall():
        columns = [row[2] for row in conn.execute(f"PRAGMA index_info({_quote(name)})")]
        if origin == "u" and columns == ["kind", "order_id"]:
            # SQLite cannot drop a table constraint: the documented way is a new table, the rows
            # copied, the old one dropped and the new one renamed (sqlite.org/lang_altertable.html).
            last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'ledger'").fetchone()
            conn.execute(_LEDGER.format(table="ledger_rebuilt"))
            conn.execute(
                f"INSERT INTO ledger_rebuilt (seq, {_COLUMNS}) SELECT seq, {_COLUMNS} FROM ledger"
            )
            conn.execute("DROP TABLE ledger")
            conn.execute("ALTER TABLE ledger_rebuilt RENAME TO ledger")
            if last is not None:  # AUTOINCREMENT never hands out a number twice
                conn.execute(
                    "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'ledger'", last
                )
            conn.execute(_LEDGER_USER_SEQ)
            break
    for statement in _ORDER_KEYS:
        conn.execute(statement)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SQLiteStorage:
    """The points ledger in one SQLite file (see the module docstring for the concurrency model)."""

    def __init__(
        self,
        path: str,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        formats: Formats = DEFAULT_FORMATS,
    ) -> None:
        if "\0" in path:  # sqlite3 would raise a bare ValueError on first use
            raise ValueError(f"SQLite path must not contain a NUL character; got {path!r:.80}")
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.formats = formats
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
            # Before anything that could change the file (even its journal mode).
            self._refuse_newer_schema(conn)
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

    def _refuse_newer_schema(self, conn: sqlite3.Connection) -> int:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise _newer_schema(self.path, version, self.formats)
        if version < 0:  # no version of ours writes one: not our file, or a damaged one
            raise FormatUnsupported(
                f"SQLite store {self.path!r} has schema {version}, which no version of this "
                "service writes: refusing to open it, nothing was changed",
                readable=tuple(sorted(self.formats.read)),
            )
        return version

    def _ensure_schema(self, conn: sqlite3.Connection, pid: int) -> None:
        if self._schema_ready_pid == pid:
            return
        # IF NOT EXISTS + the write lock make this safe when many processes start at once.
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Again under the lock: another process may have upgraded the file meanwhile.
            if self._refuse_newer_schema(conn) < SCHEMA_VERSION:
                self._upgrade(conn)
            _scope_order_keys(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._schema_ready_pid = pid

    @staticmethod
    def _upgrade(conn: sqlite3.Connection) -> None:
        """Create schema 2, or bring a schema-1 file (or an empty one) up to it."""
        had_ledger = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger'"
        ).fetchone()
        had_rows = had_ledger and conn.execute("SELECT 1 FROM ledger LIMIT 1").fetchone()
        if not had_ledger:
            conn.execute(_LEDGER.format(table="ledger"))
        conn.execute(_LEDGER_USER_SEQ)
        conn.execute(_BALANCES)
        for table, alter in _FORMAT_COLUMNS.items():
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if "format" not in columns:
                conn.execute(alter)
        conn.execute(_MARKER)
        if had_rows:  # rows written before the marker existed are format 1
            conn.execute("INSERT OR IGNORE INTO ledger_formats (format) VALUES (1)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _present(self, conn: sqlite3.Connection) -> set[int]:
        """The store's format marker: every format ever written. FormatUnsupported when a
        schema-2 file has lost it: which formats it holds is then unknown."""
        try:
            return {row[0] for row in conn.execute("SELECT format FROM ledger_formats")}
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
        raise FormatUnsupported(
            f"SQLite store {self.path!r} has schema {SCHEMA_VERSION} but no ledger format marker "
            f"(table ledger_formats), so which formats it holds is unknown; this version "
            f"{self.formats.describe()}: it refuses to serve or write the store (nothing was "
            "changed)",
            readable=tuple(sorted(self.formats.read)),
        )

    def _check_user(self, conn: sqlite3.Connection, user_id: str) -> None:
        """FormatUnsupported if ``user_id`` has rows (or a balance) this version cannot read.
        Looks at the user's rows only when the marker says unreadable formats exist."""
        if self._present(conn) <= self.formats.read:
            return
        marks = ",".join("?" * len(self.formats.read))
        read = tuple(sorted(self.formats.read))
        bad = conn.execute(
            f"SELECT entry_id, format FROM ledger WHERE user_id = ? AND format NOT IN ({marks}) "
            f"ORDER BY seq LIMIT {MAX_NAMED_RECORDS}",
            (user_id, *read),
        ).fetchall()
        balance = conn.execute(
            f"SELECT format FROM balances WHERE user_id = ? AND format NOT IN ({marks})",
            (user_id, *read),
        ).fetchone()
        if bad or balance:
            found = {fmt for _, fmt in bad} | ({balance[0]} if balance else set())
            raise unreadable_user(self.formats, user_id, found, [entry_id for entry_id, _ in bad])

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn driver errors (locked for too long, unreadable file, ...) into StorageUnavailable."""
        try:
            yield
        except sqlite3.Error as exc:
            self._drop_connection()
            code = getattr(exc, "sqlite_errorcode", None)  # primary code in the low byte
            busy = isinstance(code, int) and code & 0xFF in _BUSY_CODES
            raise StorageUnavailable(f"SQLite at {self.path!r}: {exc}", transient=busy) from exc

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
        write = self.formats.write
        with self._write() as conn:
            # Under the write lock: a newer version cannot add a format between check and write.
            check_store_formats(self.formats, self._present(conn), f"SQLite store {self.path!r}")
            key = (user_id, order_id) if kind in PER_USER_ORDER_KINDS else (order_id,)
            row = conn.execute(_FIND_ORDER[kind], key).fetchone()
            if row is not None:
                return resolve_repeat(
                    _entry(row, self.formats), user_id=user_id, amount_jpy=amount_jpy, points=points
                )
            found = conn.execute(
                "SELECT balance, format FROM balances WHERE user_id = ?", (user_id,)
            ).fetchone()
            balance = (
                decode_stored(self.formats, found[0], found[1], user_id=user_id, record="balance")
                if found
                else 0
            )
            entry = new_entry(
                kind=kind,
                user_id=user_id,
                order_id=order_id,
                amount_jpy=amount_jpy,
                points=points,
                balance=balance,
                format=write,
            )
            conn.execute(
                f"INSERT INTO ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.entry_id,
                    entry.kind,
                    entry.user_id,
                    entry.order_id,
                    entry.amount_jpy,
                    encode_points(entry.points, write),
                    encode_points(entry.balance, write),
                    entry.created_at,
                    write,
                ),
            )
            # The balance row takes the writer's format (exact: values are whole points).
            conn.execute(
                "INSERT INTO balances (user_id, balance, format) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET balance = excluded.balance, "
                "format = excluded.format",
                (user_id, encode_points(entry.balance, write), write),
            )
            conn.execute("INSERT OR IGNORE INTO ledger_formats (format) VALUES (?)", (write,))
            return Outcome(entry=entry, created=True)

    def balance(self, user_id: str) -> int:
        with self._errors():
            conn = self._connect()
            conn.execute("BEGIN")  # one snapshot for the format check and the balance
            try:
                self._check_user(conn, user_id)
                row = conn.execute(
                    "SELECT balance, format FROM balances WHERE user_id = ?", (user_id,)
                ).fetchone()
            finally:
                conn.execute("COMMIT")
        if row is None:
            return 0
        return decode_stored(self.formats, row[0], row[1], user_id=user_id, record="balance")

    def history(self, user_id: str, *, limit: int, cursor: str | None = None) -> HistoryPage:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        below = decode_cursor(user_id, cursor, max_seq=_MAX_SEQ) if cursor is not None else None
        with self._errors():
            conn = self._connect()
            # One read transaction, so the balance and the page come from the same snapshot.
            conn.execute("BEGIN")
            try:
                self._check_user(conn, user_id)
                found = conn.execute(
                    "SELECT balance, format FROM balances WHERE user_id = ?", (user_id,)
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
        balance = (
            decode_stored(self.formats, found[0], found[1], user_id=user_id, record="balance")
            if found
            else 0
        )
        return HistoryPage(
            balance=balance,
            entries=[_entry(r[:9], self.formats) for r in rows],
            next_cursor=encode_cursor(user_id, rows[-1][9]) if more else None,
        )

    def ping(self) -> None:
        """StorageUnavailable if the file cannot be used; FormatUnsupported if it holds a newer
        schema or formats this version does not read."""
        with self._errors():
            present = self._present(self._connect())
        check_store_formats(self.formats, present, f"SQLite store {self.path!r}")

    def stored_formats(self) -> set[int]:
        """The store's format marker (every format ever written to it)."""
        with self._errors():
            return self._present(self._connect())

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
