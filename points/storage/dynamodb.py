"""DynamoDB backend: the points ledger for more than one task (``POINTS_STORE=dynamodb``).

Environment: ``POINTS_TABLE`` (required), ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (default
us-east-1), ``AWS_ENDPOINT_URL`` (optional: a local endpoint such as moto's server), credentials
from the usual boto3 chain (on ECS: the task role).

One table, two key attributes (``pk``, ``sk``), four kinds of item::

    pk = "USER#<user_id>"            sk = "BALANCE"                       balance, seq
    pk = "USER#<user_id>"            sk = "ENTRY#<seq:020d>"              one ledger entry
    pk = "USER#<user_id>"            sk = "ORDER#redemption#<order_id>"   the entry the user's
                                                                          redemption produced
    pk = "ORDER#<kind>#<order_id>"   sk = "ORDER"                         the entry an order
                                                                          produced (first claim)
    pk = "LEDGER"                    sk = "FORMATS"                       formats (NS): the marker

Every write is one ``TransactWriteItems`` of the order item(s), the entry item and the balance
item, each with a condition: an order item must not exist (idempotency: two writers of the same
order cannot both succeed), the entry item must not exist, and the balance item must still carry
the ``seq`` the writer read (optimistic concurrency: no lost update, so balances are exact). A
cancelled transaction is retried from a fresh consistent read, which then sees the winner's order
item and answers as a replay. History is a ``Query`` on the user's ``ENTRY#`` items, newest first
(``seq`` is zero-padded so it sorts).

Redemption ids are per user (:data:`points.storage.base.PER_USER_ORDER_KINDS`): the key is the
user's own ``ORDER#redemption#`` item. Versions before it knew only the global
``ORDER#redemption#<order_id>`` item, so a redemption also *claims* that item when no one holds it
yet, in the same transaction. Hence every user-scoped order item has a global one (its own, or an
earlier claim by another user): an earlier version, looking up only the global item, finds it and
answers a replay or 409, and never stores a redemption twice; and this version finds a redemption
an earlier version wrote (global item, same user) and answers it as a replay.

Formats (see :mod:`points.formats`): entry and order items carry ``format`` (absent: 1, items
written before formats existed), their ``points`` and ``balance`` stored in it; the balance item
carries the ``format`` of its ``balance`` and ``formats`` (NS), every format in the user's
ledger; the ``LEDGER``/``FORMATS`` item is the store's marker, every format ever written, added
to in the same transaction as the first item of a new format. A write reads the marker and
refuses when it holds a format this version does not read (a newer writer racing with it must
change the user's balance item, whose ``seq`` condition then makes this writer re-read); a read
refuses a user whose balance item names a format it does not read; ``ping`` checks the marker.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from points.environment_variables import (
    AWS_ACCESS_KEY_ID,
    AWS_ENDPOINT_URL,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
    POINTS_STORE,
    POINTS_TABLE,
)
from points.formats import DEFAULT_FORMATS, Formats, encode_points, formats_from
from points.settings import DEFAULT_REGION, ConfigError, env_url, one_line, region_from
from points.storage.base import (
    MAX_NAMED_RECORDS,
    PER_USER_ORDER_KINDS,
    EntryKind,
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

__all__ = ["ATTRIBUTE_DEFINITIONS", "KEY_SCHEMA", "DynamoDBStorage", "create_table", "from_env"]

#: The table's key; deploy/stack.yaml declares the same (tests/deploy checks).
KEY_SCHEMA = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
ATTRIBUTE_DEFINITIONS = [
    {"AttributeName": "pk", "AttributeType": "S"},
    {"AttributeName": "sk", "AttributeType": "S"},
]
#: Write attempts before giving up under contention (each re-reads; backoff is jittered).
MAX_ATTEMPTS = 40
_BALANCE_SK = "BALANCE"
_ENTRY_PREFIX = "ENTRY#"
_ORDER_SK = "ORDER"
_SEQ_WIDTH = 20
_MARKER_KEY = {"pk": {"S": "LEDGER"}, "sk": {"S": "FORMATS"}}


def _user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def _order_pk(kind: EntryKind, order_id: str) -> str:
    return f"ORDER#{kind}#{order_id}"


def _user_order_sk(kind: EntryKind, order_id: str) -> str:
    return f"ORDER#{kind}#{order_id}"


def _entry_sk(seq: int) -> str:
    return f"{_ENTRY_PREFIX}{seq:0{_SEQ_WIDTH}d}"


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _format_of(item: Mapping[str, Mapping[str, Any]]) -> int:
    return int(item["format"]["N"]) if "format" in item else 1


def _formats_of(item: Mapping[str, Mapping[str, Any]]) -> set[int]:
    return {int(f) for f in item["formats"]["NS"]} if "formats" in item else {_format_of(item)}


def _entry_attributes(entry: LedgerEntry, seq: int) -> dict[str, dict[str, Any]]:
    item: dict[str, dict[str, Any]] = {
        "entry_id": _s(entry.entry_id),
        "kind": _s(entry.kind),
        "user_id": _s(entry.user_id),
        "order_id": _s(entry.order_id),
        "points": _n(encode_points(entry.points, entry.format)),
        "balance": _n(encode_points(entry.balance, entry.format)),
        "created_at": _s(entry.created_at),
        "seq": _n(seq),
        "format": _n(entry.format),
    }
    item["amount_jpy"] = {"NULL": True} if entry.amount_jpy is None else _n(entry.amount_jpy)
    return item


def _entry_from(item: Mapping[str, Mapping[str, Any]], formats: Formats) -> LedgerEntry:
    """An entry or order item as a whole-points entry; FormatUnsupported if unreadable."""
    amount = item.get("amount_jpy", {"NULL": True})
    fmt = _format_of(item)
    decode = {"user_id": item["user_id"]["S"], "record": item["entry_id"]["S"]}
    return LedgerEntry(
        entry_id=item["entry_id"]["S"],
        kind=item["kind"]["S"],  # type: ignore[arg-type]
        user_id=item["user_id"]["S"],
        order_id=item["order_id"]["S"],
        amount_jpy=None if "NULL" in amount else int(amount["N"]),
        points=decode_stored(formats, int(item["points"]["N"]), fmt, **decode),
        balance=decode_stored(formats, int(item["balance"]["N"]), fmt, **decode),
        created_at=item["created_at"]["S"],
        format=fmt,
    )


def _client_config() -> BotoConfig:
    """Bounded waits for every DynamoDB call: 2 s to connect, 5 s per read, 3 attempts (about
    20 s at worst), for the backend and ``create-table`` alike (with botocore's defaults, 60 s
    per read and 5 attempts, ``create-table`` hung for minutes on an endpoint that accepted
    connections and never answered)."""
    return BotoConfig(
        connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"}
    )


class _Contended(Exception):
    """A transaction lost a race; re-read and try again."""


class DynamoDBStorage:
    """The points ledger in one DynamoDB table (see the module docstring for the item layout)."""

    def __init__(
        self,
        table: str,
        *,
        region: str = DEFAULT_REGION,
        endpoint_url: str | None = None,
        credentials: Mapping[str, str] | None = None,
        formats: Formats = DEFAULT_FORMATS,
    ) -> None:
        self.table = table
        self.formats = formats
        self.region = region
        self.endpoint_url = endpoint_url
        self._credentials = dict(credentials or {})
        self._lock = threading.Lock()
        self._client: Any = None
        self._client_pid: int | None = None

    # -- client ----------------------------------------------------------------------------------

    def _dynamodb(self) -> Any:
        # One client per process: botocore's connection pool must not cross a fork (gunicorn).
        # Clients are thread-safe, so the threads of one process share it.
        pid = os.getpid()
        with self._lock:
            if self._client is None or self._client_pid != pid:
                self._client = boto3.session.Session(**self._credentials).client(
                    "dynamodb",
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    config=_client_config(),
                )
                self._client_pid = pid
            return self._client

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Network, throttling and missing-table errors become :class:`StorageUnavailable`."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise StorageUnavailable(
                f"DynamoDB table {self.table!r}: {error.get('Code', 'error')}: "
                f"{error.get('Message', '')}".rstrip(": ")
            ) from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"DynamoDB table {self.table!r}: {exc}") from exc

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        resp = self._dynamodb().get_item(
            TableName=self.table, Key={"pk": _s(pk), "sk": _s(sk)}, ConsistentRead=True
        )
        return resp.get("Item")

    # -- Storage protocol ------------------------------------------------------------------------

    def grant(self, *, user_id: str, order_id: str, amount_jpy: int, points: int) -> Outcome:
        return self._append("grant", user_id, order_id, amount_jpy, points)

    def redeem(self, *, user_id: str, order_id: str, points: int) -> Outcome:
        return self._append("redemption", user_id, order_id, None, points)

    def _append(
        self,
        kind: EntryKind,
        user_id: str,
        order_id: str,
        amount_jpy: int | None,
        points: int,
    ) -> Outcome:
        if points < 0:
            raise ValueError("points must not be negative")
        with self._errors():
            for attempt in range(MAX_ATTEMPTS):
                try:
                    return self._try_append(kind, user_id, order_id, amount_jpy, points)
                except _Contended:
                    # Jittered exponential backoff, capped, so racing writers spread out.
                    time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
        raise StorageUnavailable(
            f"DynamoDB table {self.table!r}: {MAX_ATTEMPTS} write attempts lost to contention"
        )

    def _try_append(
        self,
        kind: EntryKind,
        user_id: str,
        order_id: str,
        amount_jpy: int | None,
        points: int,
    ) -> Outcome:
        present = self._marker()
        check_store_formats(self.formats, present, f"DynamoDB table {self.table!r}")
        per_user = kind in PER_USER_ORDER_KINDS
        own = self._get(_user_pk(user_id), _user_order_sk(kind, order_id)) if per_user else None
        order_item = own or self._get(_order_pk(kind, order_id), _ORDER_SK)
        # Another user's claim of a per-user id is no repeat of this request.
        if order_item is not None and (not per_user or order_item["user_id"]["S"] == user_id):
            return resolve_repeat(
                _entry_from(order_item, self.formats),
                user_id=user_id,
                amount_jpy=amount_jpy,
                points=points,
            )
        balance_item = self._get(_user_pk(user_id), _BALANCE_SK)
        seq = int(balance_item["seq"]["N"]) if balance_item else 0
        balance = 0
        user_formats: set[int] = set()
        if balance_item is not None:
            self._check_user(user_id, balance_item)
            user_formats = _formats_of(balance_item)
            balance = decode_stored(
                self.formats,
                int(balance_item["balance"]["N"]),
                _format_of(balance_item),
                user_id=user_id,
                record="balance",
            )
        write = self.formats.write
        entry = new_entry(
            kind=kind,
            user_id=user_id,
            order_id=order_id,
            amount_jpy=amount_jpy,
            points=points,
            balance=balance,
            format=write,
        )
        new_seq = seq + 1
        attrs = _entry_attributes(entry, new_seq)
        if balance_item is None:
            balance_condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            balance_condition = {
                "ConditionExpression": "seq = :seq",
                "ExpressionAttributeValues": {":seq": _n(seq)},
            }
        order_keys = [(_order_pk(kind, order_id), _ORDER_SK)] if order_item is None else []
        if per_user:
            order_keys.append((_user_pk(user_id), _user_order_sk(kind, order_id)))
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {"pk": _s(pk), "sk": _s(sk), **attrs},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for pk, sk in order_keys
        ]
        items += [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {"pk": _s(_user_pk(user_id)), "sk": _s(_entry_sk(new_seq)), **attrs},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        "pk": _s(_user_pk(user_id)),
                        "sk": _s(_BALANCE_SK),
                        # The writer's format (exact: values are whole points).
                        "balance": _n(encode_points(entry.balance, write)),
                        "format": _n(write),
                        "formats": {"NS": sorted(str(f) for f in user_formats | {write})},
                        "seq": _n(new_seq),
                    },
                    **balance_condition,
                }
            },
        ]
        if write not in present:
            # The first item of this format: the marker learns it in the same transaction.
            items.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _MARKER_KEY,
                        "UpdateExpression": "ADD formats :f",
                        "ExpressionAttributeValues": {":f": {"NS": [str(write)]}},
                    }
                }
            )
        try:
            self._dynamodb().transact_write_items(
                TransactItems=items, ClientRequestToken=uuid.uuid4().hex
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            # Cancelled (a condition failed: someone else wrote this order or this user's ledger
            # first) or in conflict with a concurrent transaction: re-read and decide again.
            if code in ("TransactionCanceledException", "TransactionConflictException"):
                raise _Contended from exc
            raise
        return Outcome(entry=entry, created=True)

    def _marker(self) -> set[int]:
        item = (
            self._dynamodb()
            .get_item(TableName=self.table, Key=_MARKER_KEY, ConsistentRead=True)
            .get("Item")
        )
        return {int(f) for f in item["formats"]["NS"]} if item and "formats" in item else set()

    def _check_user(self, user_id: str, balance_item: Mapping[str, Any]) -> None:
        """FormatUnsupported, naming the user's unreadable entries, if the balance item says
        the user's ledger holds a format this version does not read."""
        found = _formats_of(balance_item) - self.formats.read
        if _format_of(balance_item) not in self.formats.read:
            found.add(_format_of(balance_item))
        if not found:
            return
        resp = self._dynamodb().query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :entry)",
            ExpressionAttributeValues={":pk": _s(_user_pk(user_id)), ":entry": _s(_ENTRY_PREFIX)},
            ConsistentRead=True,
            Limit=100,
        )
        bad = [
            i["entry_id"]["S"]
            for i in resp.get("Items", [])
            if _format_of(i) not in self.formats.read
        ]
        raise unreadable_user(self.formats, user_id, found, bad[:MAX_NAMED_RECORDS])

    def balance(self, user_id: str) -> int:
        with self._errors():
            item = self._get(_user_pk(user_id), _BALANCE_SK)
            if item is None:
                return 0
            self._check_user(user_id, item)
        return decode_stored(
            self.formats,
            int(item["balance"]["N"]),
            _format_of(item),
            user_id=user_id,
            record="balance",
        )

    def history(self, user_id: str, *, limit: int, cursor: str | None = None) -> HistoryPage:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        below = (
            decode_cursor(user_id, cursor, max_seq=10**_SEQ_WIDTH - 1)
            if cursor is not None
            else None
        )
        if below is not None and below <= 1:
            high = None  # nothing below the first entry
        else:
            high = _entry_sk(below - 1) if below is not None else _entry_sk(10**_SEQ_WIDTH - 1)
        with self._errors():
            balance = self.balance(user_id)
            items: list[dict[str, Any]] = []
            if high is not None:
                resp = self._dynamodb().query(
                    TableName=self.table,
                    KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
                    ExpressionAttributeValues={
                        ":pk": _s(_user_pk(user_id)),
                        ":low": _s(_entry_sk(0)),
                        ":high": _s(high),
                    },
                    ScanIndexForward=False,  # newest (highest seq) first
                    Limit=limit + 1,
                    ConsistentRead=True,
                )
                items = resp.get("Items", [])
        more = len(items) > limit
        items = items[:limit]
        return HistoryPage(
            balance=balance,
            entries=[_entry_from(i, self.formats) for i in items],
            next_cursor=encode_cursor(user_id, int(items[-1]["seq"]["N"])) if more else None,
        )

    def ping(self) -> None:
        with self._errors():
            status = self._dynamodb().describe_table(TableName=self.table)["Table"]["TableStatus"]
        if status not in ("ACTIVE", "UPDATING"):
            raise StorageUnavailable(f"DynamoDB table {self.table!r} is {status}")
        check_store_formats(self.formats, self.stored_formats(), f"DynamoDB table {self.table!r}")

    def stored_formats(self) -> set[int]:
        """The table's format marker (every format ever written to it)."""
        with self._errors():
            return self._marker()

    def close(self) -> None:
        with self._lock:
            client, self._client, self._client_pid = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def from_env(env: Mapping[str, str]) -> DynamoDBStorage:
    """Open the table named by ``POINTS_TABLE``; :class:`~points.settings.ConfigError` (a
    ``ValueError``) names a missing or malformed variable.

    No I/O here: an unreachable table shows up as :class:`StorageUnavailable` on first use.
    """
    table = table_from(env, required=True)
    credentials = {}
    # Explicit credentials in the mapping win (tests pass a complete environment); otherwise the
    # default chain applies (the ECS task role in production).
    if env.get(AWS_ACCESS_KEY_ID) and env.get(AWS_SECRET_ACCESS_KEY):
        credentials = {
            "aws_access_key_id": env[AWS_ACCESS_KEY_ID],
            "aws_secret_access_key": env[AWS_SECRET_ACCESS_KEY],
        }
        if env.get(AWS_SESSION_TOKEN):
            credentials["aws_session_token"] = env[AWS_SESSION_TOKEN]
    return DynamoDBStorage(
        table,
        region=region_from(env),
        endpoint_url=env_url(env, AWS_ENDPOINT_URL),
        credentials=credentials,
        formats=formats_from(env),
    )


def table_from(env: Mapping[str, str], *, required: bool, default: str = "points-ledger") -> str:
    """``POINTS_TABLE``, checked against DynamoDB's naming rule (otherwise every request would
    fail later with a validation error); unset means ``default`` unless ``required``."""
    table = (env.get(POINTS_TABLE) or "").strip()
    if not table:
        if required:
            raise ConfigError(f"{POINTS_TABLE} is required when {POINTS_STORE}=dynamodb")
        table = default
    if not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", table):
        raise ConfigError(
            f"{POINTS_TABLE} must be 3-255 characters of letters, digits, '_', '.', '-'; "
            f"got {table!r}"
        )
    return table


def create_table(
    table: str,
    *,
    region: str = DEFAULT_REGION,
    endpoint_url: str | None = None,
    timeout_s: float = 60.0,
) -> bool:
    """Create the table (on-demand capacity) unless it exists; wait until ACTIVE.

    For local runs and tests (moto's server, DynamoDB Local); on AWS the stack creates it.
    Returns True if this call created it.
    """
    client = boto3.client(
        "dynamodb", region_name=region, endpoint_url=endpoint_url, config=_client_config()
    )
    created = True
    try:
        client.create_table(
            TableName=table,
            KeySchema=KEY_SCHEMA,
            AttributeDefinitions=ATTRIBUTE_DEFINITIONS,
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
        created = False
    deadline = time.monotonic() + timeout_s
    while client.describe_table(TableName=table)["Table"]["TableStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {table!r} not ACTIVE after {timeout_s:g} s")
        time.sleep(0.5)
    return created


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit 2 (argparse adds the usage block)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations ("--min" for "--min-healthy-percent"), in subcommands too (they
        # are this class): a typo or a later option must not silently change the meaning.
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m points.storage.dynamodb")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-table", help="create the ledger table (local runs)")
    create.add_argument("--table", default=None, help="default: $POINTS_TABLE or points-ledger")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m points.storage.dynamodb create-table [--table NAME]`` (env as the app)."""
    args = build_parser().parse_args(argv)
    try:
        table = table_from(
            {POINTS_TABLE: args.table or os.environ.get(POINTS_TABLE, "")}, required=False
        )
        created = create_table(
            table,
            region=region_from(os.environ),
            endpoint_url=env_url(os.environ, AWS_ENDPOINT_URL),
        )
    except (ConfigError, ClientError, BotoCoreError, TimeoutError) as exc:
        # one line even when the endpoint is not DynamoDB and answers with an HTML page
        print(f"create-table: {one_line(str(exc))}", file=sys.stderr)
        return 2
    print(f"{POINTS_TABLE}={table} ({'created' if created else 'already there'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
