"""The format contract, for every backend: three versions (``v1``, ``v2`` prepare, ``v3``
activate) share one store; none misreads, skips or downgrades what another wrote.

The store's format marker is store-wide, so each test gets a store of its own (a fresh DynamoDB
table; SQLite's file is per test already).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from points.formats import PRESETS
from points.storage import FormatUnsupported, Storage, open_storage


@pytest.fixture
def own_env(storage_env: dict[str, str]) -> dict[str, str]:
    if storage_env["POINTS_STORE"] != "dynamodb":
        return storage_env
    from points.storage.dynamodb import create_table

    table = f"points-formats-{uuid.uuid4().hex[:8]}"
    create_table(
        table, region=storage_env["AWS_REGION"], endpoint_url=storage_env["AWS_ENDPOINT_URL"]
    )
    return {**storage_env, "POINTS_TABLE": table}


@pytest.fixture
def versions(own_env: dict[str, str]) -> Iterator[dict[str, Storage]]:
    stores = {name: open_storage({**own_env, **f.to_env()}) for name, f in PRESETS.items()}
    try:
        yield stores
    finally:
        for store in stores.values():
            store.close()


def grant(store: Storage, user: str, order: str, points: int = 10):
    return store.grant(user_id=user, order_id=order, amount_jpy=points * 100, points=points)


def test_each_version_reads_and_writes_its_declared_format(versions) -> None:
    v1, v2, v3 = versions["v1"], versions["v2"], versions["v3"]
    assert grant(v1, "a", "o1").entry.format == 1
    assert grant(v2, "b", "o2").entry.format == 1
    assert v1.stored_formats() == {1}
    out = grant(v3, "c", "o3", points=7)
    assert (out.entry.format, out.entry.points, out.entry.balance) == (2, 7, 7)
    assert v3.stored_formats() == {1, 2}
    for store in (v2, v3):
        assert store.balance("c") == 7
        page = store.history("c", limit=10)
        assert [(e.format, e.points, e.balance) for e in page.entries] == [(2, 7, 7)]


def test_v1_refuses_a_store_with_format_2_and_changes_nothing(versions) -> None:
    v1, v2, v3 = versions["v1"], versions["v2"], versions["v3"]
    grant(v1, "old", "o1", points=5)
    v1.ping()
    first = grant(v3, "new", "o2", points=7)
    # Readiness: the store holds a format v1 does not read.
    with pytest.raises(FormatUnsupported) as info:
        v1.ping()
    assert (info.value.readable, info.value.found) == ((1,), (2,))
    assert "format 2" in str(info.value) and "reads 1, writes 1" in str(info.value)
    # Writes are refused, for every user, and store nothing (the order id stays unused).
    for user, order in (("new", "o3"), ("old", "o4"), ("nobody", "o5")):
        with pytest.raises(FormatUnsupported):
            grant(v1, user, order)
    with pytest.raises(FormatUnsupported):
        v1.redeem(user_id="new", order_id="r1", points=1)
    # A user with format-2 records is never served a balance that skips them ...
    for read in (lambda: v1.balance("new"), lambda: v1.history("new", limit=10)):
        with pytest.raises(FormatUnsupported) as info:
            read()
        assert info.value.user_id == "new"
        assert info.value.records == (first.entry.entry_id,)
    # ... while a user whose records it reads still is.
    assert v1.balance("old") == 5
    assert [e.points for e in v1.history("old", limit=10).entries] == [5]
    # Nothing was rewritten or downgraded: the newer versions see the same ledger.
    assert v3.stored_formats() == {1, 2}
    assert v2.balance("new") == v3.balance("new") == 7
    assert grant(v3, "new", "o3").created  # the order v1 was refused is still free


def test_prepare_version_serves_activated_writes_and_writes_the_old_format(versions) -> None:
    v2, v3 = versions["v2"], versions["v3"]
    grant(v2, "u", "o1", points=3)  # format 1
    grant(v3, "u", "o2", points=4)  # format 2 (the balance item too)
    # The rollback target after activation: reads everything, adds format 1.
    out = v2.redeem(user_id="u", order_id="r1", points=5)
    assert (out.entry.format, out.entry.balance) == (1, 2)
    assert grant(v3, "u", "o3", points=10).entry.balance == 12
    for store in (v2, v3):
        page = store.history("u", limit=10)
        assert page.balance == store.balance("u") == 12
        assert [(e.kind, e.format, e.points, e.balance) for e in page.entries] == [
            ("grant", 2, 10, 12),
            ("redemption", 1, 5, 2),
            ("grant", 2, 4, 7),
            ("grant", 1, 3, 3),
        ]


def test_replays_are_recognised_across_formats(versions) -> None:
    v1, v2, v3 = versions["v1"], versions["v2"], versions["v3"]
    first = grant(v1, "u", "o1", points=10)
    again = grant(v3, "u", "o1", points=10)
    assert again.created is False and again.entry == first.entry
    second = grant(v3, "u", "o2", points=10)
    assert grant(v2, "u", "o2", points=10).entry == second.entry
    assert v2.balance("u") == 20


def test_rollback_from_prepare_to_v1_is_safe(versions) -> None:
    v1, v2 = versions["v1"], versions["v2"]
    grant(v1, "u", "o1")
    grant(v2, "u", "o2")
    v2.redeem(user_id="u", order_id="r1", points=5)
    v1.ping()
    assert v1.balance("u") == 15
    assert len(v1.history("u", limit=10).entries) == 3
    assert grant(v1, "u", "o3").entry.balance == 25
