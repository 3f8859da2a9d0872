"""The DynamoDB backend beyond the shared contract: configuration errors, unavailability, the
table helper, the IAM actions it needs, and the API served by gunicorn on top of it."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from typing import Any

import boto3
import pytest

from points.storage import IdempotencyConflict, StorageUnavailable, open_storage
from points.storage.dynamodb import create_table, from_env
from tests.deploy._cfn import DEPLOY, load
from tests.support.issuer import ISSUER, bearer, grant_token, user_token
from tests.support.processes import free_port, gunicorn


def _env(aws_env: dict[str, str], table: str) -> dict[str, str]:
    return {**aws_env, **ISSUER.env(), "POINTS_STORE": "dynamodb", "POINTS_TABLE": table}


def _table(aws_env: dict[str, str]) -> str:
    name = f"points-{uuid.uuid4().hex[:8]}"
    create_table(name, region=aws_env["AWS_REGION"], endpoint_url=aws_env["AWS_ENDPOINT_URL"])
    return name


def test_points_table_is_required() -> None:
    with pytest.raises(ValueError, match="POINTS_TABLE"):
        open_storage({"POINTS_STORE": "dynamodb"})


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"POINTS_TABLE": "a b"}, "POINTS_TABLE must be 3-255 characters"),
        ({"POINTS_TABLE": "ab"}, "POINTS_TABLE must be 3-255 characters"),
        ({"POINTS_TABLE": "points", "AWS_ENDPOINT_URL": "localhost:5000"}, "AWS_ENDPOINT_URL"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        open_storage({"POINTS_STORE": "dynamodb", **env})


def test_missing_table_is_unavailable_not_a_crash(aws_env: dict[str, str]) -> None:
    store = from_env(_env(aws_env, "no-such-table"))
    try:
        with pytest.raises(StorageUnavailable, match="no-such-table"):
            store.ping()
        with pytest.raises(StorageUnavailable):
            store.grant(user_id="u", order_id="o", amount_jpy=100, points=1)
        with pytest.raises(StorageUnavailable):
            store.history("u", limit=5)
    finally:
        store.close()


def test_unreachable_endpoint_is_unavailable(aws_env: dict[str, str]) -> None:
    env = {**_env(aws_env, "points-t"), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    store = from_env(env)
    try:
        with pytest.raises(StorageUnavailable):
            store.balance("u")
    finally:
        store.close()


def test_create_table_is_idempotent(aws_env: dict[str, str]) -> None:
    name = f"points-{uuid.uuid4().hex[:8]}"
    kwargs = {"region": aws_env["AWS_REGION"], "endpoint_url": aws_env["AWS_ENDPOINT_URL"]}
    assert create_table(name, **kwargs) is True
    assert create_table(name, **kwargs) is False


def test_create_table_cli(aws_env: dict[str, str]) -> None:
    name = f"points-{uuid.uuid4().hex[:8]}"
    args = [sys.executable, "-m", "points.storage.dynamodb", "create-table", "--table", name]
    ok = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and f"POINTS_TABLE={name} (created)" in ok.stdout
    env = {**aws_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    down = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert down.returncode == 2 and down.stderr.count("\n") == 1
    assert "Traceback" not in down.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--table", "x y"], {}, "POINTS_TABLE must be 3-255 characters"),
        ([], {"POINTS_TABLE": "ab"}, "POINTS_TABLE must be 3-255 characters"),
        ([], {"AWS_ENDPOINT_URL": "localhost:5000"}, "AWS_ENDPOINT_URL must be an http(s) URL"),
    ],
)
def test_create_table_cli_bad_settings_are_one_line(
    aws_env: dict[str, str], args: list[str], env: dict[str, str], message: str
) -> None:
    cmd = [sys.executable, "-m", "points.storage.dynamodb", "create-table", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**aws_env, **env})
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"create-table: {message}") and proc.stderr.count("\n") == 1


def _create_table_against(aws_env: dict[str, str], port: int) -> subprocess.CompletedProcess:
    """``create-table`` against an endpoint on 127.0.0.1:``port``; asserts one line, exit 2."""
    env = {**aws_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    cmd = [sys.executable, "-m", "points.storage.dynamodb", "create-table", "--table", "tbl"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("create-table: ") and proc.stderr.count("\n") == 1
    return proc


def test_create_table_cli_against_an_endpoint_that_is_not_dynamodb_is_one_line(
    aws_env: dict[str, str],
) -> None:
    """botocore makes such an endpoint's HTML error page the message (found by review r14)."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        http.server.SimpleHTTPRequestHandler,  # POST: 501, an HTML page
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        proc = _create_table_against(aws_env, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert "501" in proc.stderr and len(proc.stderr) <= 320


@pytest.mark.parametrize("args", [[], ["create-table", "--nope"], ["drop-table"]])
def test_create_table_cli_usage_errors_are_one_line(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "points.storage.dynamodb", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "error:" in proc.stderr and proc.stderr.endswith("(see --help)\n")


@pytest.mark.parametrize(("formats", "stored"), [({}, 12), ({"POINTS_FORMAT_WRITE": "2"}, 12_000)])
def test_item_layout(aws_env: dict[str, str], formats: dict[str, str], stored: int) -> None:
    """One grant leaves exactly the documented three items and the format marker; format 2
    stores milli-points."""
    table = _table(aws_env)
    env = {**_env(aws_env, table), **formats}
    if formats:
        env["POINTS_FORMATS_READ"] = "1,2"
    store = from_env(env)
    try:
        store.grant(user_id="u-1", order_id="o-1", amount_jpy=1234, points=12)
    finally:
        store.close()
    client = boto3.client("dynamodb", endpoint_url=aws_env["AWS_ENDPOINT_URL"])
    items = {(i["pk"]["S"], i["sk"]["S"]): i for i in client.scan(TableName=table)["Items"]}
    assert set(items) == {
        ("USER#u-1", "BALANCE"),
        ("USER#u-1", "ENTRY#" + "1".zfill(20)),
        ("ORDER#grant#o-1", "ORDER"),
        ("LEDGER", "FORMATS"),
    }
    fmt = formats.get("POINTS_FORMAT_WRITE", "1")
    assert items[("LEDGER", "FORMATS")]["formats"] == {"NS": [fmt]}
    for key in (("USER#u-1", "BALANCE"), ("USER#u-1", "ENTRY#" + "1".zfill(20))):
        assert items[key]["format"] == {"N": fmt}
        assert items[key]["balance"] == {"N": str(stored)}


def _order_items(client: Any, table: str) -> dict[tuple[str, str], str]:
    """Every order item's key -> the user it is for."""
    return {
        (i["pk"]["S"], i["sk"]["S"]): i["user_id"]["S"]
        for i in client.scan(TableName=table)["Items"]
        if i["pk"]["S"].startswith("ORDER#") or i["sk"]["S"].startswith("ORDER#")
    }


def test_redemption_ids_per_user_and_the_items_an_earlier_version_reads(
    aws_env: dict[str, str],
) -> None:
    """A redemption writes the user's own order item and claims the global one when it is free,
    so every user-scoped item has a global item: the only one versions before per-user ids look
    up. One written by such a version (global item only) is still a replay here."""
    table = _table(aws_env)
    client = boto3.client("dynamodb", endpoint_url=aws_env["AWS_ENDPOINT_URL"])
    store = from_env(_env(aws_env, table))
    try:
        for user in ("alice", "bob", "carol"):
            store.grant(user_id=user, order_id=f"g-{user}", amount_jpy=10_000, points=100)
        first = store.redeem(user_id="alice", order_id="r-1", points=30)
        store.redeem(user_id="bob", order_id="r-1", points=20)
        assert _order_items(client, table) == {
            **{(f"ORDER#grant#g-{u}", "ORDER"): u for u in ("alice", "bob", "carol")},
            ("ORDER#redemption#r-1", "ORDER"): "alice",  # the first claim
            ("USER#alice", "ORDER#redemption#r-1"): "alice",
            ("USER#bob", "ORDER#redemption#r-1"): "bob",
        }
        # carol's r-2 as an earlier version writes it: the global item alone
        store.redeem(user_id="carol", order_id="r-2", points=10)
        client.delete_item(
            TableName=table, Key={"pk": {"S": "USER#carol"}, "sk": {"S": "ORDER#redemption#r-2"}}
        )
        assert store.redeem(user_id="carol", order_id="r-2", points=10).created is False
        assert store.redeem(user_id="alice", order_id="r-1", points=30).entry == first.entry
        assert [store.balance(u) for u in ("alice", "bob", "carol")] == [70, 80, 90]
        with pytest.raises(IdempotencyConflict):
            store.redeem(user_id="carol", order_id="r-2", points=11)
    finally:
        store.close()


# IAM actions a DynamoDB API operation needs (TransactWriteItems: those of its parts).
_ACTION = {
    "GetItem": "dynamodb:GetItem",
    "Query": "dynamodb:Query",
    "DescribeTable": "dynamodb:DescribeTable",
}
_PART = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Delete": "dynamodb:DeleteItem",
}


def test_task_roles_allow_every_call_the_backend_makes(aws_env: dict[str, str]) -> None:
    table = _table(aws_env)
    store = from_env(_env(aws_env, table))
    needed: set[str] = set()

    def record(model: Any, params: dict, **_: Any) -> None:  # botocore: the API parameters
        if model.name == "TransactWriteItems":
            needed.update(_PART[next(iter(item))] for item in params["TransactItems"])
        else:
            needed.add(_ACTION[model.name])

    try:
        store._dynamodb().meta.events.register("provide-client-params.dynamodb", record)
        store.grant(user_id="u", order_id="o1", amount_jpy=5000, points=50)
        store.grant(user_id="u", order_id="o1", amount_jpy=5000, points=50)
        store.redeem(user_id="u", order_id="r1", points=20)
        store.history("u", limit=1)
        store.history("u", limit=1, cursor=store.history("u", limit=1).next_cursor)
        store.ping()
    finally:
        store.close()
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"} <= needed
    roles = load(DEPLOY / "stack.yaml")["Resources"]
    for role in ("ApiTaskRole", "WorkerTaskRole"):
        allowed = {
            action
            for policy in roles[role]["Properties"]["Policies"]
            for s in policy["PolicyDocument"]["Statement"]
            if s["Resource"] == {"Fn::GetAtt": ["PointsTable", "Arn"]}
            for action in s["Action"]
        }
        assert needed <= allowed, (role, needed - allowed)


@pytest.mark.slow
def test_api_on_dynamodb_over_gunicorn(aws_env: dict[str, str]) -> None:
    """The API process, configured as the stack configures it, against DynamoDB (moto)."""
    table = _table(aws_env)
    with gunicorn(env={**_env(aws_env, table), "WEB_CONCURRENCY": "2"}) as (base, _):
        with urllib.request.urlopen(base + "/readyz", timeout=10) as resp:
            assert resp.status == 200
        body = json.dumps({"user_id": "u-9", "order_id": "ord-9", "amount_jpy": 2500}).encode()

        def post() -> tuple[int, dict]:
            request = urllib.request.Request(
                base + "/v1/points/grants",
                data=body,
                headers={"Content-Type": "application/json", **bearer(grant_token())},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read())

        first, replay = post(), post()
        assert first[0] == 201 and replay[0] == 200
        history = urllib.request.Request(
            base + "/v1/users/u-9/points", headers=bearer(user_token("u-9"))
        )
        with urllib.request.urlopen(history, timeout=10) as resp:
            assert json.loads(resp.read())["balance"] == 25
    # and with the table gone, readiness says so instead of crashing
    boto3.client("dynamodb", endpoint_url=aws_env["AWS_ENDPOINT_URL"]).delete_table(TableName=table)
    with gunicorn(env={**_env(aws_env, table)}) as (base, _):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + "/readyz", timeout=10)
        assert info.value.code == 503


def test_create_table_cli_against_a_silent_endpoint_ends_with_one_line(
    aws_env: dict[str, str],
) -> None:
    """An endpoint that accepts connections and never answers (a wrong port, a stuck proxy)
    held the CLI for botocore's defaults, 60 s per read and 5 attempts (found by review r24);
    it now ends with the backend's own bounded timeouts."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody answers
    try:
        proc = _create_table_against(aws_env, listener.getsockname()[1])
    finally:
        listener.close()
    assert "timeout" in proc.stderr.lower()
