"""The points ledger: the domain rules and the store, shared by the API, the worker and the
rehearsal. It depends on nothing else of this project, and on neither Flask nor boto3 at import
time (the DynamoDB backend imports boto3 when it is selected).

* :mod:`points.domain` - validation, the points rule (``floor(amount_jpy x rate)``) and
  :class:`PointsService` (grants and redemptions);
* :mod:`points.storage` - the :class:`Storage` protocol (idempotency by ``order_id``: a replay
  answers the original entry, different content is an :class:`IdempotencyConflict`) and its
  backends, ``sqlite`` and ``dynamodb``, opened by :func:`open_storage`;
* :mod:`points.settings` - :class:`ConfigError` and the environment parsing every package uses;
* :mod:`points.environment_variables` - the names of the variables the ledger reads.
"""

from points.domain import (
    GrantRequest,
    PointsService,
    RedemptionRequest,
    ValidationError,
    parse_rate,
    points_for,
    rate_from,
    validate_grant,
    validate_redemption,
)
from points.settings import ConfigError
from points.storage import (
    HistoryPage,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidCursor,
    LedgerEntry,
    Outcome,
    Storage,
    StorageError,
    StorageUnavailable,
    open_storage,
)

__all__ = [
    "ConfigError",
    "GrantRequest",
    "HistoryPage",
    "IdempotencyConflict",
    "InsufficientPoints",
    "InvalidCursor",
    "LedgerEntry",
    "Outcome",
    "PointsService",
    "RedemptionRequest",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "ValidationError",
    "open_storage",
    "parse_rate",
    "points_for",
    "rate_from",
    "validate_grant",
    "validate_redemption",
]
