"""The storage contract every backend implements (SQLite here, DynamoDB for AWS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

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
    """The backend cannot be reached (readiness fails, requests get 503)."""


class InvalidCursor(StorageError):
    """A history cursor that this backend did not issue."""


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


class Storage(Protocol):
    """Points ledger. Idempotency is keyed by ``(kind, order_id)`` and enforced by the store itself,
    so concurrent duplicates from many processes credit exactly once."""

    def grant(self, *, user_id: str, order_id: str, amount_jpy: int, points: int) -> Outcome: ...

    def redeem(self, *, user_id: str, order_id: str, points: int) -> Outcome: ...

    def balance(self, user_id: str) -> int: ...

    def history(self, user_id: str, *, limit: int, cursor: str | None = None) -> HistoryPage: ...

    def ping(self) -> None:
        """Raise :class:`StorageUnavailable` unless the store answers."""
        ...

    def close(self) -> None: ...
