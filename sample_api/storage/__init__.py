"""Storage backends for the points ledger. ``open_storage()`` picks one from the environment."""

from sample_api.storage.base import (
    HistoryPage,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidCursor,
    LedgerEntry,
    Outcome,
    Storage,
    StorageError,
    StorageUnavailable,
)

__all__ = [
    "HistoryPage",
    "IdempotencyConflict",
    "InsufficientPoints",
    "InvalidCursor",
    "LedgerEntry",
    "Outcome",
    "Storage",
    "StorageError",
    "StorageUnavailable",
]
