"""Real ``python -m worker`` processes against moto's SQS over HTTP: SIGKILL, SIGTERM, EMF."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from points.domain import points_for
from telemetry import catalog
from tests.support.processes import child
from tests.worker.conftest import (
    HOSTILE_BODIES,
    WORKER_CMD,
    Ledger,
    depth,
    drained,
    emf_docs,
    emf_sums,
    emf_values,
    wait_for,
    worker_env,
)
from worker import make_event
from worker._sample import POISON_BODIES, message_entry, new_trace, sample_orders, send_bodies


def _orders(prefix: str, n: int) -> list[tuple[str, str, int]]:
    return [(f"user-{i % 5}", f"{prefix}-{i}", 1_000 + 37 * i) for i in range(n)]


def _expected_rows(orders: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    return sorted((u, o, points_for(a)) for u, o, a in orders)


def test_sigkill_mid_batch_loses_nothing_and_credits_once(
    sqs: Any, queues: dict[str, str], db_path: Path, ledger: Ledger, aws_env: dict[str, str]
) -> None:
    orders = _orders("kill", 40)
    send_bodies(sqs, queues["queue_url"], [make_event(*o) for o in orders])
    env = worker_env(
        aws_env,
        queues["queue_url"],
        db_path,
        WORKER_CONCURRENCY=4,
        WORKER_SIMULATED_WORK_MS=400,
    )
    with child(WORKER_CMD, env=env) as first:
        wait_for(lambda: ledger.count() >= 4, 30, "the first worker to credit some orders")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    credited_before = ledger.count()
    assert credited_before < len(orders), "the kill must land in the middle of the work"
    _, in_flight = depth(sqs, queues["queue_url"])
    assert in_flight > 0, "the killed worker held messages it never acknowledged"

    # a new worker: the held messages come back after the 2 s visibility timeout
    with child(WORKER_CMD, env=worker_env(aws_env, queues["queue_url"], db_path)) as second:
        wait_for(lambda: ledger.count() == len(orders), 40, "every order to be credited")
        wait_for(lambda: drained(sqs, queues["queue_url"]), 20, "the queue to drain")
        assert second.poll() is None
    assert sorted(ledger.rows()) == _expected_rows(orders)  # each order exactly once
    assert depth(sqs, queues["dlq_url"]) == (0, 0)


def test_sigterm_mid_batch_exits_0_in_time_and_releases_the_rest(
    sqs: Any, queues: dict[str, str], db_path: Path, ledger: Ledger, aws_env: dict[str, str]
) -> None:
    orders = _orders("term", 20)
    send_bodies(sqs, queues["queue_url"], [make_event(*o) for o in orders])
    env = worker_env(
        aws_env,
        queues["queue_url"],
        db_path,
        WORKER_CONCURRENCY=3,
        WORKER_SIMULATED_WORK_MS=1_500,
        # long enough that only an explicit release can make messages visible again
        WORKER_VISIBILITY_TIMEOUT_S=60,
        # the default long poll: the stop must still come well within ECS's 30 s
        WORKER_WAIT_TIME_S=10,
    )
    with child(WORKER_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        # A first credit proves jobs are running (held messages alone may all still be waiting
        # for a slot on a loaded machine), then more must be held: the stop lands mid-batch.
        wait_for(lambda: ledger.count() >= 1, 30, "a first order to be credited")
        wait_for(lambda: depth(sqs, queues["queue_url"])[1] >= 3, 30, "jobs to be in flight")
        assert ledger.count() < len(orders)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)  # the correctness bound, not a speed target
    assert proc.returncode == 0, err[-2000:]
    visible, in_flight = depth(sqs, queues["queue_url"])
    assert in_flight == 0, "every held message was finished (deleted) or released"
    credited = ledger.count()
    assert credited >= 1 and credited + visible == len(orders)
    rows = ledger.rows()
    assert set(rows) <= set(_expected_rows(orders))
    assert len({o for _, o, _ in rows}) == len(rows)
    lines = out.decode().splitlines()
    stopped = [json.loads(line) for line in lines if '"worker stopped"' in line]
    assert len(stopped) == 1 and stopped[0]["unfinished_jobs"] == 0
    # held but not started -> released (visible at once despite the 60 s visibility timeout)
    assert stopped[0]["released"] == stopped[0]["received"] - credited >= 1


@pytest.mark.parametrize(("stop_timeout", "all_run"), [(20, True), (2, False)])
def test_sigterm_runs_messages_on_their_last_receive_instead_of_dead_lettering_them(
    sqs: Any,
    db_path: Path,
    ledger: Ledger,
    aws_env: dict[str, str],
    stop_timeout: int,
    all_run: bool,
) -> None:
    """With maxReceiveCount 1 every message is on its last receive: released at a stop, SQS
    moves it to the DLQ at its next receive without it ever failing (found by review r18). A
    stop runs them within the stop timeout; what it cannot run is counted and logged."""
    from worker._sqs import setup_queues

    queues = setup_queues(sqs, f"t-{uuid.uuid4().hex[:12]}", max_receive_count=1)
    orders = _orders("last", 8)
    send_bodies(sqs, queues["queue_url"], [make_event(*o) for o in orders])
    env = worker_env(
        aws_env,
        queues["queue_url"],
        db_path,
        WORKER_CONCURRENCY=1,
        WORKER_BATCH_SIZE=10,
        WORKER_SIMULATED_WORK_MS=600,
        WORKER_VISIBILITY_TIMEOUT_S=60,
        WORKER_WAIT_TIME_S=1,
        WORKER_STOP_TIMEOUT_S=stop_timeout,
    )
    with child(WORKER_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        wait_for(lambda: ledger.count() >= 1, 30, "a first order to be credited")
        wait_for(lambda: depth(sqs, queues["queue_url"])[1] >= 3, 30, "messages to be held")
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    (stopped,) = [json.loads(x) for x in out.decode().splitlines() if '"worker stopped"' in x]
    credited = ledger.count()
    assert stopped["released_last_receive"] == stopped["received"] - credited
    if all_run:
        assert credited == stopped["received"] and stopped["released_last_receive"] == 0
    else:  # 2 s is not enough for the held batch: counted and said
        assert stopped["released_last_receive"] >= 1
        assert '"released_last_receive"' in out.decode().split('"worker stopped"')[0]


def _xray_id(w3c_trace_id: str) -> str:
    return f"1-{w3c_trace_id[:8]}-{w3c_trace_id[8:]}"


def test_use_metrics_logs_and_traces(
    sqs: Any, queues: dict[str, str], db_path: Path, ledger: Ledger, aws_env: dict[str, str]
) -> None:
    orders = list(sample_orders(30, users=7, seed=11))
    entries = [
        message_entry(make_event(o.user_id, o.order_id, o.amount_jpy), i)
        for i, o in enumerate(orders)
    ]
    # W3C traceparent message attribute (moto drops system attributes in batches)
    producer_trace = {
        o.order_id: _xray_id(e["MessageAttributes"]["traceparent"]["StringValue"][3:35])
        for o, e in zip(orders, entries, strict=True)
    }
    for i in range(0, len(entries), 10):
        sqs.send_message_batch(QueueUrl=queues["queue_url"], Entries=entries[i : i + 10])
    # the AWSTraceHeader system attribute, as SQS sets it for X-Ray-instrumented producers
    xray, _ = new_trace()
    sqs.send_message(
        QueueUrl=queues["queue_url"],
        MessageBody=make_event("user-x", "order-xray", 2_000),
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": xray}},
    )
    producer_trace["order-xray"] = xray.split(";")[0].removeprefix("Root=")
    summary = {"orders": len(orders) + 1}
    poison = POISON_BODIES[:2]
    send_bodies(sqs, queues["queue_url"], list(poison))
    # visibility 10 s: exact Jobs sums need no redelivery, even on a slow machine
    env = worker_env(
        aws_env, queues["queue_url"], db_path, WORKER_CONCURRENCY=4, WORKER_VISIBILITY_TIMEOUT_S=10
    )
    with child(WORKER_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        wait_for(lambda: ledger.count() == summary["orders"], 30, "every order credited")
        wait_for(lambda: depth(sqs, queues["dlq_url"])[0] == len(poison), 30, "poison in DLQ")
        wait_for(lambda: drained(sqs, queues["queue_url"]), 20, "the queue to drain")
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    out = out.decode()
    docs = emf_docs(out.splitlines())
    assert docs, "no EMF output"
    sums: Counter[str] = Counter()
    samples: dict[str, list[float]] = {}
    worker_names = set(catalog.names("worker"))
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "SafeDeploy"
            for metric in directive["Metrics"]:
                name = metric["Name"]
                assert name in worker_names, f"{name} is not a worker metric of the catalog"
                assert metric["Unit"] == catalog.get(name).unit
                dims = {tuple(d) for d in directive["Dimensions"]}
                assert dims == set(catalog.get(name).dimension_sets), name
                values = emf_values(doc, name)
                samples.setdefault(name, []).extend(values)
                sums[name] += sum(values)
        assert doc["Service"] == "points-worker"
    use = {
        "Jobs",
        "JobErrors",
        "JobDuration",
        "WorkerUtilization",
        "QueueBacklog",
        "QueueInFlight",
        "MessageAge",
        "DeadLetterBacklog",
        "DeadLettered",
    }
    assert use <= set(samples), f"missing: {use - set(samples)}"
    jobs = summary["orders"] + 3 * len(poison)  # each poison message: maxReceiveCount tries
    assert sums["Jobs"] == jobs
    assert sums["JobErrors"] == 3 * len(poison)
    assert sums["DeadLettered"] == len(poison)
    assert len(samples["JobDuration"]) == jobs
    assert len(samples["MessageAge"]) == jobs  # one per receive
    assert all(0 <= u <= 100 for u in samples["WorkerUtilization"])
    assert max(samples["WorkerUtilization"]) > 0
    assert max(samples["DeadLetterBacklog"]) == len(poison)

    logs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    outcome_lines = [d for d in logs if d.get("outcome") in ("credited", "duplicate", "poison")]
    credited = [d for d in outcome_lines if d["outcome"] == "credited"]
    assert len(credited) == summary["orders"]
    assert all(d["message_id"] and d["order_id"] and d["trace_id"] for d in credited)
    poisoned = [d for d in outcome_lines if d["outcome"] == "poison"]
    assert len(poisoned) == 3 * len(poison) and all(d["reason"] for d in poisoned)
    assert sum(1 for d in poisoned if d.get("dead_letter")) == len(poison)
    # the job span continues the producer's trace (W3C or X-Ray), as a new span in it
    assert {d["order_id"]: d["trace_id"] for d in credited} == producer_trace


def test_sigterm_during_an_idle_long_poll_exits_0(
    sqs: Any, queues: dict[str, str], db_path: Path, aws_env: dict[str, str]
) -> None:
    # defaults for the poll (10 s) and the stop budget (20 s): the receiver is blocked in a long
    # poll on an empty queue when the signal lands
    env = worker_env(aws_env, queues["queue_url"], db_path, WORKER_WAIT_TIME_S="")
    with child(WORKER_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()  # the "worker started" line: polling now
        assert '"worker started"' in first
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b'"worker stopped"' in out
    assert depth(sqs, queues["queue_url"]) == (0, 0)


def test_dynamodb_store_credits_duplicates_once(
    sqs: Any,
    queues: dict[str, str],
    db_path: Path,
    aws_env: dict[str, str],
    serial_moto_endpoint: str,
) -> None:
    # the production set-up: POINTS_STORE=dynamodb. DynamoDB lives on its own serial moto server
    # (transaction isolation, see tests/points/conftest.py) and SQS on the shared one.
    from points.storage.dynamodb import create_table, from_env

    table = f"points-{uuid.uuid4().hex[:8]}"
    create_table(table, region="us-east-1", endpoint_url=serial_moto_endpoint)
    orders = _orders("ddb", 6)
    bodies = [make_event(*o) for o in orders]
    send_bodies(sqs, queues["queue_url"], bodies * 3)  # every order three times
    env = worker_env(
        aws_env,
        queues["queue_url"],
        db_path,
        POINTS_STORE="dynamodb",
        POINTS_TABLE=table,
        AWS_ENDPOINT_URL=serial_moto_endpoint,
        AWS_ENDPOINT_URL_SQS=aws_env["AWS_ENDPOINT_URL"],
        WORKER_VISIBILITY_TIMEOUT_S=10,
    )
    with child(WORKER_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        wait_for(lambda: drained(sqs, queues["queue_url"]), 40, "the queue to drain")
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    store = from_env({**aws_env, "AWS_ENDPOINT_URL": serial_moto_endpoint, "POINTS_TABLE": table})
    got = []
    for user in sorted({u for u, _, _ in orders}):
        page = store.history(user, limit=100)
        assert page.balance == sum(points_for(a) for u, _, a in orders if u == user)
        got += [(e.user_id, e.order_id, e.points) for e in page.entries]
    assert sorted(got) == _expected_rows(orders)
    outcomes = Counter(
        json.loads(line).get("outcome") for line in out.decode().splitlines() if '"outcome"' in line
    )
    assert outcomes["credited"] == len(orders) and outcomes["duplicate"] == 2 * len(orders)
    assert depth(sqs, queues["dlq_url"]) == (0, 0)


def test_sigterm_with_a_stuck_job_releases_it_and_exits_0(
    sqs: Any, queues: dict[str, str], db_path: Path, ledger: Ledger, aws_env: dict[str, str]
) -> None:
    send_bodies(sqs, queues["queue_url"], [make_event("user-st", "order-stuck", 4_000)])
    env = worker_env(
        aws_env,
        queues["queue_url"],
        db_path,
        WORKER_SIMULATED_WORK_MS=120_000,  # far beyond the stop budget
        WORKER_STOP_TIMEOUT_S=4,
        WORKER_VISIBILITY_TIMEOUT_S=60,
    )
    with child(WORKER_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        wait_for(lambda: depth(sqs, queues["queue_url"]) == (0, 1), 20, "the job to start")
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    # released at the deadline: visible again at once, not after the 60 s visibility timeout
    assert depth(sqs, queues["queue_url"]) == (1, 0)
    assert ledger.count() == 0
    stopped = [json.loads(x) for x in out.decode().splitlines() if '"worker stopped"' in x]
    assert stopped[0]["unfinished_jobs"] == 1 and stopped[0]["released"] == 1


def test_a_flood_of_unparseable_messages_never_stalls_the_worker(
    sqs: Any, queues: dict[str, str], db_path: Path, ledger: Ledger, aws_env: dict[str, str]
) -> None:
    # more hostile messages than the worker can hold at once (2 slots + a batch of 10): each
    # must free its slot, or the worker stops receiving and the good orders behind them wait
    orders = _orders("after-flood", 8)
    send_bodies(sqs, queues["queue_url"], HOSTILE_BODIES)
    send_bodies(sqs, queues["queue_url"], [make_event(*o) for o in orders])
    env = worker_env(
        aws_env,
        queues["queue_url"],
        db_path,
        WORKER_CONCURRENCY=2,
        # only the worker's explicit release can bring a message back before this
        WORKER_VISIBILITY_TIMEOUT_S=30,
    )
    with child(WORKER_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        wait_for(lambda: ledger.count() == len(orders), 60, "every good order credited")
        wait_for(lambda: depth(sqs, queues["dlq_url"])[0] == len(HOSTILE_BODIES), 60, "DLQ filled")
        wait_for(lambda: drained(sqs, queues["queue_url"]), 20, "the queue to drain")
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"Traceback" not in err
    assert sorted(ledger.rows()) == _expected_rows(orders)
    lines = out.decode().splitlines()
    poison = [json.loads(x) for x in lines if '"outcome": "poison"' in x]
    tries = 3 * len(HOSTILE_BODIES)  # maxReceiveCount receives each, then SQS's redrive
    assert len(poison) == tries and all(p["reason"] for p in poison)
    sums = emf_sums(lines)
    assert sums["JobErrors"] == tries and sums["DeadLettered"] == len(HOSTILE_BODIES)
    stopped = [json.loads(x) for x in lines if '"worker stopped"' in x]
    assert stopped[0]["crashed"] == 0 and stopped[0]["unfinished_jobs"] == 0


def test_a_store_locked_at_start_up_is_waited_out_not_refused(
    sqs: Any, queues: dict[str, str], db_path: Path, ledger: Ledger, aws_env: dict[str, str]
) -> None:
    """Another process's long write (a backup, a migration) holding the SQLite file when the
    worker starts is an outage, not configuration: the worker starts, and credits once it ends."""
    import sqlite3

    from points.storage import open_storage

    open_storage({"POINTS_DB_PATH": str(db_path)}).ping()  # the schema exists, in WAL mode
    locker = sqlite3.connect(db_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    env = worker_env(aws_env, queues["queue_url"], db_path)
    try:
        with child(WORKER_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            # past the start-up ping's busy timeout (5 s): before the fix, exit 2 here
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(8)
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            locker.execute("COMMIT")
            orders = _orders("locked", 3)
            send_bodies(sqs, queues["queue_url"], [make_event(*o) for o in orders])
            wait_for(lambda: ledger.count() == len(orders), 40, "every order to be credited")
            os.killpg(proc.pid, signal.SIGTERM)
            proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert sorted(ledger.rows()) == _expected_rows(orders)
    finally:
        locker.close()


def _has_open(pid: int, path: Path) -> bool:
    """True once process ``pid`` has ``path`` open (Linux /proc)."""
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == str(path):
                    return True
    return False


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_start_up_exits_0_without_a_traceback(
    signum: int, queues: dict[str, str], db_path: Path, aws_env: dict[str, str]
) -> None:
    """A stop that lands while the worker is still starting (here: waiting for a SQLite file
    another process holds locked, up to the 5 s busy timeout) is a graceful stop too. Before the
    fix the signal handlers were installed only after start-up: SIGTERM killed the process
    (status -15) and SIGINT printed a KeyboardInterrupt traceback."""
    import sqlite3

    from points.storage import open_storage

    open_storage({"POINTS_DB_PATH": str(db_path)}).ping()
    locker = sqlite3.connect(db_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    env = worker_env(aws_env, queues["queue_url"], db_path)
    try:
        with child(WORKER_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            # the store is open: the worker is past its imports, in the start-up ping
            wait_for(lambda: _has_open(proc.pid, db_path), 20, "the worker to open the store")
            assert proc.poll() is None
            os.kill(proc.pid, signum)
            _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err.decode()[-2000:]
    finally:
        locker.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_start_up_waits_on_a_silent_endpoint_exits_0_at_once(
    signum: int, db_path: Path, aws_env: dict[str, str]
) -> None:
    """An SQS endpoint that accepts connections and never answers holds the start-up's queue
    read for the client's read timeout and retries (30 s x 3 attempts). Before the fix the
    signal was only noted meanwhile: the worker exited 1 after ~120 s (ECS SIGKILLs at 30 s);
    now start-up watches for a stop while it waits (found by review r25)."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody answers
    listener.settimeout(30)
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = worker_env(
        {**aws_env, "AWS_ENDPOINT_URL": endpoint}, f"{endpoint}/123456789012/q", db_path
    )
    conn = None
    try:
        with child(WORKER_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            conn, _ = listener.accept()  # the worker is in its start-up call now
            os.kill(proc.pid, signum)
            _out, err = proc.communicate(timeout=20)
    finally:
        if conn is not None:
            conn.close()
        listener.close()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"Traceback" not in err, err.decode()[-2000:]
