"""The points ledger: the domain rules and the store, shared by the API, the worker and the
rehearsal. It depends on nothing else of this project, and on neither Flask nor boto3 at import
time (the DynamoDB backend imports boto3 when it is selected).

* :mod:`points.domain` - validation, the points rule (``floor(amount_jpy x rate)``) and
  :class:`PointsService` (grants and redemptions);
* :mod:`points.storage` - the :class:`Storage` protocol (idempotency by ``order_id``: a replay
  answers the original entry, different content is an :class:`IdempotencyConflict`) and its
  backends, ``sqlite`` and ``dynamodb``, opened by :func:`open_storage`;
* :mod:`points.formats` - the ledger record formats a version reads and writes
  (:class:`Formats`, presets ``v1``/``v2``/``v3``) and the one-way-door rule
  (:func:`check_transition`); :mod:`points.guard` applies it to two ECS task definitions
  (``python -m points guard``);
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
from points.formats import PRESETS, Decision, Formats, check_transition, formats_from
from points.settings import ConfigError
from points.storage import (
    FormatUnsupported,
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
    "PRESETS",
    "ConfigError",
    "Decision",
    "FormatUnsupported",
    "Formats",
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
    "check_transition",
    "formats_from",
    "open_storage",
    "parse_rate",
    "points_for",
    "rate_from",
    "validate_grant",
    "validate_redemption",
]
