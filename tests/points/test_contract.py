"""The storage contract: every backend must pass this suite (backends come from conftest.py)."""

from __future__ import annotations

import base64
import multiprocessing
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from points.storage import (
    IdempotencyConflict,
    InsufficientPoints,
    InvalidCursor,
    Outcome,
    Storage,
    open_storage,
)

PROCESSES = 4


def uid(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def grant(store: Storage, user: str, order: str, amount: int = 1000, points: int | None = None):
    return store.grant(
        user_id=user,
        order_id=order,
        amount_jpy=amount,
        points=amount // 100 if points is None else points,
    )


# -- grants --------------------------------------------------------------------------------------


def test_grant_credits_and_returns_the_entry(storage: Storage) -> None:
    user, order = uid(), uid("o")
    out = grant(storage, user, order, amount=12_345)
    assert out.created is True
    e = out.entry
    assert (e.kind, e.user_id, e.order_id, e.amount_jpy, e.points, e.balance) == (
        "grant",
        user,
        order,
        12_345,
        123,
        123,
    )
    assert e.entry_id and e.created_at
    assert storage.balance(user) == 123
    second = grant(storage, user, uid("o"), amount=500)
    assert second.entry.balance == 128
    assert second.entry.entry_id != e.entry_id
    assert storage.balance(user) == 128


def test_grant_of_zero_points_is_recorded(storage: Storage) -> None:
    user = uid()
    out = grant(storage, user, uid("o"), amount=1, points=0)
    assert out.created and out.entry.points == 0 and out.entry.balance == 0
    assert len(storage.history(user, limit=10).entries) == 1


def test_replayed_grant_returns_the_original_and_credits_nothing(storage: Storage) -> None:
    user, order = uid(), uid("o")
    first = grant(storage, user, order, amount=5000)
    grant(storage, user, uid("o"), amount=1000)  # the balance moves on in between
    again = grant(storage, user, order, amount=5000)
    assert again.created is False
    assert again.entry == first.entry
    assert storage.balance(user) == 60
    assert len(storage.history(user, limit=100).entries) == 2


def test_replay_is_judged_on_the_request_not_on_the_points(storage: Storage) -> None:
    # Blue and green may run with different POINTS_RATE: a retry is still the same grant.
    user, order = uid(), uid("o")
    first = grant(storage, user, order, amount=5000, points=50)
    again = grant(storage, user, order, amount=5000, points=100)
    assert again.created is False and again.entry == first.entry
    assert storage.balance(user) == 50


@pytest.mark.parametrize("change", ["amount", "user"])
def test_same_order_with_different_content_conflicts(storage: Storage, change: str) -> None:
    user, order = uid(), uid("o")
    grant(storage, user, order, amount=5000)
    other_user = uid() if change == "user" else user
    amount = 6000 if change == "amount" else 5000
    with pytest.raises(IdempotencyConflict):
        grant(storage, other_user, order, amount=amount)
    assert storage.balance(user) == 50
    assert storage.balance(other_user) == (50 if other_user == user else 0)


def test_grant_and_redemption_may_share_an_order_id(storage: Storage) -> None:
    user, order = uid(), uid("o")
    grant(storage, user, order, amount=10_000)
    out = storage.redeem(user_id=user, order_id=order, points=30)
    assert out.created and out.entry.kind == "redemption" and out.entry.balance == 70


# -- redemptions ---------------------------------------------------------------------------------


def test_redemption_debits(storage: Storage) -> None:
    user, order = uid(), uid("o")
    grant(storage, user, uid("o"), amount=10_000)
    out = storage.redeem(user_id=user, order_id=order, points=40)
    assert out.created is True
    e = out.entry
    assert (e.kind, e.user_id, e.order_id, e.amount_jpy, e.points, e.balance) == (
        "redemption",
        user,
        order,
        None,
        40,
        60,
    )
    assert storage.balance(user) == 60
    assert storage.redeem(user_id=user, order_id=uid("o"), points=60).entry.balance == 0
    assert storage.balance(user) == 0


def test_redemption_over_the_balance_is_refused_and_stores_nothing(storage: Storage) -> None:
    user, order = uid(), uid("o")
    grant(storage, user, uid("o"), amount=5000)
    with pytest.raises(InsufficientPoints) as info:
        storage.redeem(user_id=user, order_id=order, points=51)
    assert (info.value.balance, info.value.requested) == (50, 51)
    assert storage.balance(user) == 50
    assert len(storage.history(user, limit=10).entries) == 1
    # The refused order_id was not consumed: it can be used once the points are there.
    grant(storage, user, uid("o"), amount=100)
    assert storage.redeem(user_id=user, order_id=order, points=51).created is True


def test_redemption_by_unknown_user_is_refused(storage: Storage) -> None:
    with pytest.raises(InsufficientPoints) as info:
        storage.redeem(user_id=uid(), order_id=uid("o"), points=1)
    assert info.value.balance == 0


def test_replayed_redemption_returns_the_original(storage: Storage) -> None:
    user, order = uid(), uid("o")
    grant(storage, user, uid("o"), amount=10_000)
    first = storage.redeem(user_id=user, order_id=order, points=100)
    # Balance is now 0: a replay must still answer with the original, not "insufficient".
    again = storage.redeem(user_id=user, order_id=order, points=100)
    assert again.created is False and again.entry == first.entry
    assert storage.balance(user) == 0


def test_redemption_with_different_content_conflicts(storage: Storage) -> None:
    user, order = uid(), uid("o")
    grant(storage, user, uid("o"), amount=10_000)
    storage.redeem(user_id=user, order_id=order, points=10)
    with pytest.raises(IdempotencyConflict):
        storage.redeem(user_id=user, order_id=order, points=11)
    assert storage.balance(user) == 90


@pytest.mark.parametrize("points", [30, 70])  # the same content as the first user's, or not
def test_redemption_ids_are_per_user(storage: Storage, points: int) -> None:
    """Another user's redemption id neither blocks this user's redemption nor reveals itself."""
    alice, bob, order = uid(), uid(), uid("o")
    grant(storage, alice, uid("o"), amount=10_000)
    grant(storage, bob, uid("o"), amount=10_000)
    first = storage.redeem(user_id=alice, order_id=order, points=30)
    theirs = storage.redeem(user_id=bob, order_id=order, points=points)
    assert theirs.created is True and theirs.entry.user_id == bob
    assert (storage.balance(alice), storage.balance(bob)) == (70, 100 - points)
    # Each user's retry is a replay of their own redemption; a changed one conflicts.
    assert storage.redeem(user_id=alice, order_id=order, points=30).entry == first.entry
    assert storage.redeem(user_id=bob, order_id=order, points=points).entry == theirs.entry
    with pytest.raises(IdempotencyConflict):
        storage.redeem(user_id=bob, order_id=order, points=points + 1)
    assert (storage.balance(alice), storage.balance(bob)) == (70, 100 - points)
    assert [
        e.entry_id for e in storage.history(bob, limit=5).entries if e.kind == "redemption"
    ] == [theirs.entry.entry_id]


def test_grant_ids_stay_one_namespace(storage: Storage) -> None:
    # A grant id is the order system's purchase order: it grants once, whoever it names.
    alice, bob, order = uid(), uid(), uid("o")
    grant(storage, alice, order, amount=5000)
    with pytest.raises(IdempotencyConflict):
        grant(storage, bob, order, amount=5000)
    assert storage.balance(bob) == 0


def test_concurrent_redemptions_of_one_id_by_many_users_each_debit_once(storage: Storage) -> None:
    users, order = [uid() for _ in range(4)], uid("o")
    for user in users:
        grant(storage, user, uid("o"), amount=1000)
    barrier = threading.Barrier(8)

    def attempt(i: int) -> Outcome:
        barrier.wait(timeout=30)
        return storage.redeem(user_id=users[i % 4], order_id=order, points=4)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert Counter(o.entry.user_id for o in outcomes if o.created) == Counter(users)
    assert [storage.balance(user) for user in users] == [6] * 4


# -- history -------------------------------------------------------------------------------------


def test_unknown_user_has_an_empty_history(storage: Storage) -> None:
    user = uid()
    assert storage.balance(user) == 0
    page = storage.history(user, limit=10)
    assert (page.balance, page.entries, page.next_cursor) == (0, [], None)


def test_history_is_newest_first_and_pages_with_opaque_cursors(storage: Storage) -> None:
    user = uid()
    orders = [uid("o") for _ in range(7)]
    for i, order in enumerate(orders):
        grant(storage, user, order, amount=100 * (i + 1))
    storage.redeem(user_id=user, order_id=orders[0], points=5)
    grant(storage, uid(), uid("o"))  # another user's entries never show up
    seen, cursor, pages = [], None, 0
    while True:
        page = storage.history(user, limit=3, cursor=cursor)
        pages += 1
        assert page.balance == 28 - 5
        assert len(page.entries) <= 3
        seen.extend(page.entries)
        cursor = page.next_cursor
        if cursor is None:
            break
        assert user not in cursor and pages < 10
    assert pages == 3
    assert [(e.kind, e.order_id) for e in seen] == [("redemption", orders[0])] + [
        ("grant", o) for o in reversed(orders)
    ]
    assert [e.balance for e in seen] == [23, 28, 21, 15, 10, 6, 3, 1]
    assert len({e.entry_id for e in seen}) == 8


def test_history_exact_page_has_no_next_cursor(storage: Storage) -> None:
    user = uid()
    for _ in range(2):
        grant(storage, user, uid("o"))
    page = storage.history(user, limit=2)
    assert len(page.entries) == 2 and page.next_cursor is None


def test_a_cursor_is_only_valid_for_its_own_user(storage: Storage) -> None:
    user, other = uid(), uid()
    for _ in range(3):
        grant(storage, user, uid("o"))
    grant(storage, other, uid("o"))
    cursor = storage.history(user, limit=1).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidCursor):
        storage.history(other, limit=1, cursor=cursor)


@pytest.mark.parametrize("cursor", ["", "x", "not a cursor!", "%%%", "A" * 500, "djE6"])
def test_garbage_cursor_is_rejected(storage: Storage, cursor: str) -> None:
    user = uid()
    grant(storage, user, uid("o"))
    with pytest.raises(InvalidCursor):
        storage.history(user, limit=1, cursor=cursor)


@pytest.mark.parametrize("seq", ["0", "-1", str(2**63), "9" * 140, "\u0661\u0662"])
def test_forged_cursor_with_a_bad_position_is_rejected(storage: Storage, seq: str) -> None:
    # Forged in the shape the built-in backends issue ("v1:<user>:<seq>", base64url): a client
    # can decode and edit it. A position the store cannot hold must be refused (the API's 400)
    # or read as "nothing there", never reach the driver as an error (the API's 500).
    user = uid()
    grant(storage, user, uid("o"))
    raw = f"v1:{user}:{seq}".encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    try:
        page = storage.history(user, limit=1, cursor=cursor)
    except InvalidCursor:
        return
    assert len(page.entries) <= 1
    if seq in ("0", "-1"):
        assert page.entries == [] and page.next_cursor is None


def test_ping_answers(storage: Storage) -> None:
    storage.ping()


# -- concurrency ---------------------------------------------------------------------------------


def test_concurrent_duplicate_grants_from_threads_credit_once(storage: Storage) -> None:
    user, order = uid(), uid("o")
    barrier = threading.Barrier(8)

    def attempt(_: int) -> Outcome:
        barrier.wait(timeout=30)
        return grant(storage, user, order, amount=7000)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert sum(o.created for o in outcomes) == 1
    assert len({o.entry.entry_id for o in outcomes}) == 1
    assert storage.balance(user) == 70


def _grant_worker(env: dict[str, str], user: str, orders: list[str], barrier, results) -> None:
    store = open_storage(env)
    try:
        barrier.wait(timeout=60)
        created = []
        for order in orders:
            out = store.grant(user_id=user, order_id=order, amount_jpy=1000, points=10)
            created.append((order, out.created, out.entry.entry_id))
        results.put(created)
    finally:
        store.close()


def _redeem_worker(env: dict[str, str], user: str, orders: list[str], barrier, results) -> None:
    store = open_storage(env)
    try:
        barrier.wait(timeout=60)
        done = []
        for order in orders:
            try:
                store.redeem(user_id=user, order_id=order, points=40)
                done.append(order)
            except InsufficientPoints:
                pass
        results.put(done)
    finally:
        store.close()


def _run_processes(target, env: dict[str, str], args_per_process: list[tuple]) -> list:
    # spawn, not fork: children must open their own connections/clients like separate servers do.
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args_per_process))
    results = ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(env, *args, barrier, results)) for args in args_per_process
    ]
    for p in procs:
        p.start()
    try:
        collected = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
    return collected


@pytest.mark.slow
def test_concurrent_duplicate_grants_from_processes_credit_once(
    storage: Storage, storage_env: dict[str, str]
) -> None:
    user = uid()
    orders = [uid("o") for _ in range(6)]
    # Every process sends every order, each in a different order, at the same moment.
    plan = [(user, orders[i:] + orders[:i]) for i in range(PROCESSES)]
    results = _run_processes(_grant_worker, storage_env, plan)
    created = Counter(order for batch in results for order, was_created, _ in batch if was_created)
    assert created == Counter({order: 1 for order in orders})
    ids = {(order, entry_id) for batch in results for order, _, entry_id in batch}
    assert len(ids) == len(orders)  # everybody saw the same entry for each order
    assert storage.balance(user) == 10 * len(orders)
    assert len(storage.history(user, limit=100).entries) == len(orders)


@pytest.mark.slow
def test_concurrent_redemptions_from_processes_never_overdraw(
    storage: Storage, storage_env: dict[str, str]
) -> None:
    user = uid()
    grant(storage, user, uid("o"), amount=10_000)  # 100 points: room for two redemptions of 40
    plan = [(user, [uid("o")]) for _ in range(PROCESSES)]
    results = _run_processes(_redeem_worker, storage_env, plan)
    assert sum(len(done) for done in results) == 2
    assert storage.balance(user) == 20
    page = storage.history(user, limit=100)
    assert [e.balance for e in page.entries] == [20, 60, 100]
