"""The storage contract every backend implements (SQLite here, DynamoDB for AWS)."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from points.formats import Formats, decode_points

EntryKind = Literal["grant", "redemption"]


class StorageError(Exception):
    """Base class of the errors a backend raises."""


class IdempotencyConflict(StorageError):
    """The ``order_id`` was already used for this kind of entry with different content."""


class InsufficientPoints(StorageError):
    """A redemption asks for more points than the user's balance."""

    def __init__(self, balance: int, requested: int) -> None:
        super().__init__(f"balance {balance} is below the {requested} points requested")
        self.balance = balance
        self.requested = requested


class StorageUnavailable(StorageError):
    """The backend cannot be reached (readiness fails, requests get 503).

    ``transient``: it is only busy (SQLite locked by another process's write past the busy
    timeout), so a retry will likely be served; not a sign of bad configuration."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class InvalidCursor(StorageError):
    """A history cursor that this backend did not issue."""


class FormatUnsupported(StorageError):
    """The store, or a user's records, are in a ledger format this version does not read.

    Raised instead of reading (a record is never skipped or misread) and instead of writing
    (nothing is rewritten or downgraded). ``readable``: the formats this version reads;
    ``found``: the unreadable formats present; ``user_id`` and ``records`` (entry ids, at most
    :data:`MAX_NAMED_RECORDS`) when particular records are the reason. See :mod:`points.formats`.
    """

    def __init__(
        self,
        detail: str,
        *,
        readable: tuple[int, ...],
        found: tuple[int, ...] = (),
        user_id: str | None = None,
        records: tuple[str, ...] = (),
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.readable = readable
        self.found = found
        self.user_id = user_id
        self.records = records[:MAX_NAMED_RECORDS]


#: The most record ids a :class:`FormatUnsupported` names.
MAX_NAMED_RECORDS = 20


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One row of a user's ledger. ``points`` is positive for both kinds; ``kind`` gives the sign."""

    entry_id: str
    kind: EntryKind
    user_id: str
    order_id: str
    amount_jpy: int | None
    points: int
    balance: int
    created_at: str
    #: The ledger format the entry is stored in (see :mod:`points.formats`); values above are
    #: always whole points, whatever the format.
    format: int = 1


@dataclass(frozen=True, slots=True)
class Outcome:
    """Result of a write. ``created`` is False when the request replayed an earlier identical one."""

    entry: LedgerEntry
    created: bool


@dataclass(frozen=True, slots=True)
class HistoryPage:
    balance: int
    entries: list[LedgerEntry]
    next_cursor: str | None


#: Kinds whose ``order_id`` is scoped to the user. A redemption id is chosen by the user's own
#: client, so one user's id must neither block another's redemption nor tell them it was used; a
#: grant id is the order system's purchase order, which grants once whoever it is for.
PER_USER_ORDER_KINDS: frozenset[EntryKind] = frozenset({"redemption"})


def resolve_repeat(
    existing: LedgerEntry, *, user_id: str, amount_jpy: int | None, points: int
) -> Outcome:
    """The answer to a request whose order key (see :class:`Storage`) is already stored: a replay of the
    original when it is the same request, else :class:`IdempotencyConflict`.

    A grant is identified by what the client sent (user and amount), not by the points: two app
    versions with different POINTS_RATE values must still see a retried grant as a replay.
    """
    same = existing.user_id == user_id and (
        existing.amount_jpy == amount_jpy if existing.kind == "grant" else existing.points == points
    )
    if not same:
        raise IdempotencyConflict(
            f"order_id {existing.order_id!r} was already used for a different {existing.kind}"
        )
    return Outcome(entry=existing, created=False)


def new_entry(
    *,
    kind: EntryKind,
    user_id: str,
    order_id: str,
    amount_jpy: int | None,
    points: int,
    balance: int,
    format: int = 1,
) -> LedgerEntry:
    """The ledger row a new grant or redemption appends to a user whose balance is ``balance``,
    to be stored in ledger format ``format``; :class:`InsufficientPoints` if a redemption asks
    for more."""
    if kind == "redemption" and points > balance:
        raise InsufficientPoints(balance=balance, requested=points)
    return LedgerEntry(
        entry_id=("grt_" if kind == "grant" else "rdm_") + uuid.uuid4().hex,
        kind=kind,
        user_id=user_id,
        order_id=order_id,
        amount_jpy=amount_jpy,
        points=points,
        balance=balance + points if kind == "grant" else balance - points,
        created_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        format=format,
    )


def _list(formats: Iterable[int]) -> str:
    return ",".join(str(f) for f in sorted(formats))


def check_store_formats(formats: Formats, present: Iterable[int], where: str) -> None:
    """Raise :class:`FormatUnsupported` unless every format in the store's marker
    (``present``) is one ``formats`` reads. ``where`` names the store in the message."""
    unreadable = tuple(sorted(set(present) - formats.read))
    if unreadable:
        raise FormatUnsupported(
            f"{where} holds ledger format {_list(unreadable)} records and this version "
            f"{formats.describe()}: it refuses to serve or write the store (nothing was changed); "
            "deploy a version that reads them",
            readable=tuple(sorted(formats.read)),
            found=unreadable,
        )


def unreadable_user(
    formats: Formats, user_id: str, found: Iterable[int], records: Iterable[str]
) -> FormatUnsupported:
    """The error for a user whose ledger holds records in the formats ``found`` (entry ids
    ``records``) that ``formats`` does not read."""
    found_t = tuple(sorted(set(found)))
    records_t = tuple(records)
    named = ", ".join(records_t[:3]) + (", ..." if len(records_t) > 3 else "")
    return FormatUnsupported(
        f"user {user_id!r} has records in ledger format {_list(found_t)} "
        f"({named or 'its balance'}) and this version {formats.describe()}: it refuses to "
        "serve a balance it cannot read",
        readable=tuple(sorted(formats.read)),
        found=found_t,
        user_id=user_id,
        records=records_t,
    )


def decode_stored(formats: Formats, stored: int, fmt: int, *, user_id: str, record: str) -> int:
    """Whole points from a stored value in format ``fmt``; :class:`FormatUnsupported` when this
    version does not read ``fmt`` or the value is not whole points."""
    value = decode_points(stored, fmt) if fmt in formats.read else None
    if value is None:
        raise unreadable_user(formats, user_id, [fmt], [record])
    return value


def encode_cursor(user_id: str, seq: int) -> str:
    """An opaque history cursor: the user's ledger position ``seq`` to continue below."""
    raw = f"v1:{user_id}:{seq}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(user_id: str, cursor: str, *, max_seq: int) -> int:
    """The ``seq`` a cursor from :func:`encode_cursor` points below; :class:`InvalidCursor` for
    anything else, a cursor of another user's history, or a position beyond ``max_seq`` (what
    the backend can store: a forged huge number must not overflow its driver)."""
    try:
        if len(cursor) > 200:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, rest = raw.partition(":")
        owner, _, seq_text = rest.rpartition(":")
        if version != "v1" or owner != user_id or not seq_text.isascii() or not seq_text.isdigit():
            raise ValueError("not ours")
        seq = int(seq_text)
        if not 1 <= seq <= max_seq:
            raise ValueError("out of range")
        return seq
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor("cursor is not valid for this user's history") from None


class Storage(Protocol):
    """Points ledger. Idempotency is keyed by ``(kind, order_id)`` for grants and by
    ``(kind, user_id, order_id)`` for redemptions (:data:`PER_USER_ORDER_KINDS`), and enforced by
    the store itself, so concurrent duplicates from many processes credit exactly once."""

    def grant(self, *, user_id: str, order_id: str, amount_jpy: int, points: int) -> Outcome: ...

    def redeem(self, *, user_id: str, order_id: str, points: int) -> Outcome: ...

    def balance(self, user_id: str) -> int: ...

    def history(self, user_id: str, *, limit: int, cursor: str | None = None) -> HistoryPage: ...

    def ping(self) -> None:
        """Raise :class:`StorageUnavailable` unless the store answers."""
        ...

    def close(self) -> None: ...
