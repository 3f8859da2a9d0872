"""SQLite specifics: WAL, busy timeout, the UNIQUE backstop, shared files, open_storage(), schema
versions (an older file upgraded in place, a newer one refused untouched) and format storage."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from points.formats import PRESETS
from points.storage import (
    DEFAULT_DB_PATH,
    FormatUnsupported,
    IdempotencyConflict,
    StorageUnavailable,
    open_storage,
)
from points.storage.sqlite import (
    _FIND_ORDER,
    _FORMAT_COLUMNS,
    _SCHEMA_1,
    SCHEMA_VERSION,
    SQLiteStorage,
)


def test_file_is_in_wal_mode_with_the_schema(tmp_path: Path) -> None:
    store = SQLiteStorage(str(tmp_path / "p.db"))
    store.ping()
    with contextlib.closing(sqlite3.connect(tmp_path / "p.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    store.close()


def test_unique_kind_order_is_enforced_by_the_schema(tmp_path: Path) -> None:
    store = SQLiteStorage(str(tmp_path / "p.db"))
    store.grant(user_id="u", order_id="o", amount_jpy=100, points=1)
    with (
        contextlib.closing(sqlite3.connect(tmp_path / "p.db")) as conn,
        pytest.raises(sqlite3.IntegrityError),
    ):
        conn.execute(
            "INSERT INTO ledger (entry_id, kind, user_id, order_id, amount_jpy, points, balance,"
            " created_at) VALUES ('x', 'grant', 'u', 'o', 100, 1, 2, 'now')"
        )
    store.close()


def test_redemption_keys_are_per_user_in_the_schema(tmp_path: Path) -> None:
    store = SQLiteStorage(str(tmp_path / "p.db"))
    store.ping()
    insert = (
        "INSERT INTO ledger (entry_id, kind, user_id, order_id, amount_jpy, points, balance,"
        " created_at) VALUES (?, 'redemption', ?, 'r', NULL, 1, 0, 'now')"
    )
    with contextlib.closing(sqlite3.connect(tmp_path / "p.db")) as conn:
        conn.execute(insert, ("a", "alice"))
        conn.execute(insert, ("b", "bob"))  # another user's id: allowed
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(insert, ("c", "alice"))
    store.close()


@pytest.mark.parametrize("kind", sorted(_FIND_ORDER))
def test_order_lookups_use_the_order_indexes(tmp_path: Path, kind: str) -> None:
    SQLiteStorage(str(tmp_path / "p.db")).ping()
    with contextlib.closing(sqlite3.connect(tmp_path / "p.db")) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN " + _FIND_ORDER[kind], ("u", "o")[-_FIND_ORDER[kind].count("?") :]
        )
        detail = " ".join(str(row[-1]) for row in plan)
    # a search (not a scan) by its own key, or by the (kind, order_id) index kept for earlier
    # versions: both are equality lookups on the order id
    assert detail.startswith("SEARCH") and (
        f"ledger_{kind}_order" in detail or "ledger_kind_order (kind=? AND order_id=?)" in detail
    ), detail


def test_the_previous_versions_order_lookup_uses_an_index(tmp_path: Path) -> None:
    """A rollback to a version before per-user redemption ids: its lookup by (kind, order_id),
    kind bound as a parameter, must search an index, not scan the ledger under the write lock."""
    path = tmp_path / "p.db"
    _previous_version_file(path)
    SQLiteStorage(str(path)).ping()  # rebuilt per user
    with contextlib.closing(sqlite3.connect(path)) as conn:
        plan = " ".join(
            str(row[-1])
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM ledger WHERE kind = ? AND order_id = ?",
                ("redemption", "r-1"),
            )
        )
    assert plan.startswith("SEARCH") and "(kind=? AND order_id=?)" in plan, plan


def _previous_version_file(path: Path) -> None:
    """A file as versions before per-user redemption ids left it: schema 2 with the table-level
    ``UNIQUE (kind, order_id)``, alice's grant and redemption ``r-1``, the sequence past them."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for statement in _SCHEMA_1:
            conn.execute(statement)
        for alter in _FORMAT_COLUMNS.values():
            conn.execute(alter)
        conn.execute("CREATE TABLE ledger_formats (format INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO ledger_formats VALUES (1)")
        conn.executemany(
            "INSERT INTO ledger (seq, entry_id, kind, user_id, order_id, amount_jpy, points,"
            " balance, created_at) VALUES (?, ?, ?, 'alice', ?, ?, ?, ?, 'then')",
            [
                (1, "grt_1", "grant", "g-1", 10_000, 100, 100),
                (2, "rdm_1", "redemption", "r-1", None, 30, 70),
            ],
        )
        conn.execute("INSERT INTO balances (user_id, balance) VALUES ('alice', 70)")
        conn.execute(
            "UPDATE sqlite_sequence SET seq = 9 WHERE name = 'ledger'"
        )  # a rolled-back write
        conn.execute("PRAGMA user_version = 2")
        conn.commit()


def test_a_file_with_global_redemption_ids_is_rebuilt_per_user(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    _previous_version_file(path)
    store = SQLiteStorage(str(path))
    page = store.history("alice", limit=1)
    # alice's retry is still a replay (no second debit), and bob may now use her id
    again = store.redeem(user_id="alice", order_id="r-1", points=30)
    assert (again.created, again.entry.entry_id, store.balance("alice")) == (False, "rdm_1", 70)
    store.grant(user_id="bob", order_id="g-2", amount_jpy=5000, points=50)
    assert store.redeem(user_id="bob", order_id="r-1", points=20).created
    assert store.balance("bob") == 30
    with pytest.raises(IdempotencyConflict):  # grant ids stay global
        store.grant(user_id="bob", order_id="g-1", amount_jpy=10_000, points=100)
    assert [
        e.entry_id for e in store.history("alice", limit=5, cursor=page.next_cursor).entries
    ] == ["grt_1"]
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        # sequence numbers kept and never reused; every row and column copied
        rows = conn.execute("SELECT seq, entry_id, format FROM ledger ORDER BY seq").fetchall()
        assert [(seq, fmt) for seq, _, fmt in rows] == [(1, 1), (2, 1), (10, 1), (11, 1)]
        assert [entry_id for _, entry_id, _ in rows[:2]] == ["grt_1", "rdm_1"]
        unique = [
            [c[2] for c in conn.execute(f"PRAGMA index_info('{i[1]}')")]
            for i in conn.execute("PRAGMA index_list(ledger)")
            if i[2]
        ]
        assert sorted(unique) == [["entry_id"], ["order_id"], ["user_id", "order_id"]]
        # What an earlier version looks up, (kind, order_id), still finds a row for every
        # redemption: it answers 409 or a replay, and never stores one twice.
        assert (
            conn.execute(
                "SELECT count(*) FROM ledger WHERE kind = 'redemption' AND order_id = 'r-1'"
            ).fetchone()[0]
            == 2
        )


def test_many_processes_opening_a_previous_version_file_rebuild_it_once(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    _previous_version_file(path)
    stores = [SQLiteStorage(str(path)) for _ in range(6)]
    barrier = threading.Barrier(len(stores))

    def open_and_redeem(store: SQLiteStorage) -> int:
        barrier.wait(timeout=30)
        return store.balance("alice")

    try:
        results: list[int] = []
        threads = [
            threading.Thread(target=lambda s=s: results.append(open_and_redeem(s))) for s in stores
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert results == [70] * len(stores)
    finally:
        for store in stores:
            store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM ledger").fetchone()[0] == 2
        assert {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        } >= {"ledger", "balances"}
        assert not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'ledger_rebuilt'"
        ).fetchone()


def test_unreachable_file_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    store = SQLiteStorage(str(tmp_path / "no-such-dir" / "p.db"))
    with pytest.raises(StorageUnavailable) as info:
        store.ping()
    assert not info.value.transient  # a file that cannot be opened is not "busy"
    with pytest.raises(StorageUnavailable):
        store.grant(user_id="u", order_id="o", amount_jpy=100, points=1)
    with pytest.raises(StorageUnavailable):
        store.history("u", limit=5)
    (tmp_path / "no-such-dir").mkdir()
    store.ping()  # recovers without a restart
    assert store.grant(user_id="u", order_id="o", amount_jpy=100, points=1).created


def test_writer_lock_held_too_long_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = SQLiteStorage(str(path), busy_timeout_ms=100)
    store.ping()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailable) as info:
            store.grant(user_id="u", order_id="o", amount_jpy=100, points=1)
        assert info.value.transient  # busy, not broken: the worker starts and retries
        assert store.balance("u") == 0  # WAL: readers are not blocked by the writer
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.grant(user_id="u", order_id="o", amount_jpy=100, points=1).created
    store.close()


def test_two_versions_sharing_one_file_see_one_ledger(tmp_path: Path) -> None:
    blue = SQLiteStorage(str(tmp_path / "p.db"))
    green = SQLiteStorage(str(tmp_path / "p.db"))
    first = blue.grant(user_id="u", order_id="o", amount_jpy=100, points=1)
    again = green.grant(user_id="u", order_id="o", amount_jpy=100, points=2)  # other rate
    assert again.created is False and again.entry == first.entry
    assert green.balance("u") == 1 and blue.balance("u") == 1
    blue.close()
    green.close()


def test_each_thread_gets_its_own_connection(tmp_path: Path) -> None:
    store = SQLiteStorage(str(tmp_path / "p.db"))
    conns = []

    def use() -> None:
        conns.append(store._connect())

    threads = [threading.Thread(target=use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    use()
    assert len({id(c) for c in conns}) == 4
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    store = SQLiteStorage(str(tmp_path / "p.db"))
    parent_conn = store._connect()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ok = store._connect() is not parent_conn
            store.grant(user_id="child", order_id="o", amount_jpy=100, points=1)
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)
    assert store.balance("child") == 1
    store.close()


def test_open_storage_picks_sqlite_with_the_documented_default(monkeypatch, tmp_path) -> None:
    store = open_storage({})
    assert isinstance(store, SQLiteStorage) and store.path == DEFAULT_DB_PATH
    store = open_storage({"POINTS_STORE": "SQLite", "POINTS_DB_PATH": str(tmp_path / "x.db")})
    assert isinstance(store, SQLiteStorage) and store.path == str(tmp_path / "x.db")
    monkeypatch.setenv("POINTS_DB_PATH", str(tmp_path / "env.db"))
    assert open_storage().path == str(tmp_path / "env.db")


@pytest.mark.parametrize("blank", ["", " ", "\t\n "])
def test_a_blank_db_path_is_the_default(blank: str) -> None:
    # " " used to create a file named " " in the working directory
    assert open_storage({"POINTS_DB_PATH": blank}).path == DEFAULT_DB_PATH


def test_a_db_path_with_a_nul_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="POINTS_DB_PATH must not contain a NUL character"):
        open_storage({"POINTS_DB_PATH": "a\0b.db"})
    with pytest.raises(ValueError, match="SQLite path must not contain a NUL"):
        SQLiteStorage("a\0b.db")  # the library API: at once, not a bare error at first use


def test_open_storage_rejects_unknown_backends() -> None:
    with pytest.raises(ValueError, match=r"POINTS_STORE must be one of dynamodb, sqlite; got 'x'"):
        open_storage({"POINTS_STORE": "x"})


def test_dynamodb_without_its_module_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "points.storage.dynamodb", None)
    with pytest.raises(ValueError, match="POINTS_STORE=dynamodb"):
        open_storage({"POINTS_STORE": "dynamodb"})


# -- schema versions and formats -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (7, r"has schema 7, newer than this version's \(2"),
        (-1, "has schema -1, which no version of this service writes"),  # was "upgraded" to 2
    ],
)
def test_a_newer_or_unknown_schema_is_refused_and_left_untouched(
    tmp_path: Path, version: int, message: str
) -> None:
    # The reproduction: user_version 7 used to be opened and rewritten to 1.
    path = tmp_path / "p.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE future (x)")
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()
    before = path.read_bytes()
    store = SQLiteStorage(str(path))
    for attempt in (
        store.ping,
        lambda: store.grant(user_id="u", order_id="o", amount_jpy=100, points=1),
        lambda: store.balance("u"),
        lambda: store.history("u", limit=5),
    ):
        with pytest.raises(FormatUnsupported, match=message):
            attempt()
    store.close()
    assert path.read_bytes() == before
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_store_without_its_format_marker_is_refused_untouched(tmp_path: Path) -> None:
    # Was a 503 "storage unavailable" (the driver's "no such table"), which named no format.
    path = tmp_path / "p.db"
    store = SQLiteStorage(str(path))
    store.grant(user_id="u", order_id="o", amount_jpy=1000, points=10)
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP TABLE ledger_formats")
        conn.commit()
    store = SQLiteStorage(str(path), formats=PRESETS["v2"])
    for attempt in (
        store.ping,
        lambda: store.grant(user_id="v", order_id="o2", amount_jpy=100, points=1),
        lambda: store.history("u", limit=5),
    ):
        with pytest.raises(FormatUnsupported, match="no ledger format marker") as info:
            attempt()
        assert info.value.readable == (1, 2)
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT order_id FROM ledger").fetchall() == [("o",)]
        assert not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'ledger_formats'"
        ).fetchone()


def test_a_schema_1_file_is_upgraded_in_place_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for statement in _SCHEMA_1:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO ledger (entry_id, kind, user_id, order_id, amount_jpy, points, balance,"
            " created_at) VALUES ('grt_1', 'grant', 'u', 'o', 1000, 10, 10, 'then')"
        )
        conn.execute("INSERT INTO balances VALUES ('u', 10)")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    store = SQLiteStorage(str(path), formats=PRESETS["v3"])
    assert store.balance("u") == 10
    assert store.stored_formats() == {1}  # the rows written before the marker are format 1
    assert store.grant(user_id="u", order_id="o2", amount_jpy=500, points=5).entry.balance == 15
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        rows = conn.execute("SELECT entry_id, points, balance, format FROM ledger ORDER BY seq")
        assert [r[1:] for r in rows] == [(10, 10, 1), (5000, 15000, 2)]
        assert conn.execute("SELECT balance, format FROM balances").fetchall() == [(15000, 2)]


def test_format_2_stores_milli_points(tmp_path: Path) -> None:
    # What makes format 2 a one-way door: read as format 1 it would be 1000 times the points.
    v3 = SQLiteStorage(str(tmp_path / "p.db"), formats=PRESETS["v3"])
    v3.grant(user_id="u", order_id="o", amount_jpy=1234, points=12)
    with contextlib.closing(sqlite3.connect(tmp_path / "p.db")) as conn:
        assert conn.execute("SELECT points, balance, format FROM ledger").fetchall() == [
            (12_000, 12_000, 2)
        ]
        assert conn.execute("SELECT format FROM ledger_formats ORDER BY 1").fetchall() == [(2,)]
    v3.close()


def test_a_row_of_an_unknown_format_is_refused_even_by_the_newest_version(tmp_path: Path) -> None:
    store = SQLiteStorage(str(tmp_path / "p.db"), formats=PRESETS["v3"])
    store.grant(user_id="u", order_id="o", amount_jpy=1000, points=10)
    with contextlib.closing(sqlite3.connect(tmp_path / "p.db")) as conn:
        conn.execute("UPDATE ledger SET format = 9")
        conn.execute("INSERT INTO ledger_formats VALUES (9)")
        conn.commit()
    with pytest.raises(FormatUnsupported) as info:
        store.history("u", limit=5)
    assert info.value.found == (9,) and info.value.user_id == "u"
    with pytest.raises(FormatUnsupported):
        store.ping()
    store.close()
