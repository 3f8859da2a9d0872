"""The worker loop in-process, over HTTP to moto's SQS: idempotency, DLQ routing, heartbeat."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from points.domain import points_for
from tests.worker.conftest import Ledger, depth, drained, running_worker, wait_for
from worker import make_event
from worker._sample import POISON_BODIES, send_bodies


def test_same_event_three_times_is_credited_once(
    sqs: Any, queues: dict[str, str], db_path: Path, ledger: Ledger, aws_env: dict[str, str]
) -> None:
    body = make_event("user-dup", "order-dup-1", 12_345)
    other = make_event("user-dup", "order-dup-2", 1_000)
    # three separate messages with the same event (distinct message ids), in one batch so that
    # they are processed concurrently, plus one distinct order as a control
    send_bodies(sqs, queues["queue_url"], [body, body, other, body])
    # visibility 10 s: no redelivery can blur the count of duplicates on a slow machine
    with running_worker(
        queues["queue_url"],
        db_path,
        aws_env["AWS_ENDPOINT_URL"],
        concurrency=4,
        visibility_timeout_s=10,
    ) as worker:
        wait_for(lambda: worker.stats.credited + worker.stats.duplicates == 4, 20, "4 jobs")
        wait_for(lambda: drained(sqs, queues["queue_url"]), 10, "the queue to drain")
    assert sorted(ledger.rows()) == [
        ("user-dup", "order-dup-1", points_for(12_345)),
        ("user-dup", "order-dup-2", points_for(1_000)),
    ]
    assert (worker.stats.credited, worker.stats.duplicates) == (2, 2)
    assert worker.stats.failed == worker.stats.poison == 0


def _dlq_bodies(sqs: Any, url: str, expected: int) -> list[str]:
    got: dict[str, str] = {}
    for _ in range(20):
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in resp.get("Messages", []):
            got[m["MessageId"]] = m["Body"]
        if len(got) >= expected:
            break
    return sorted(got.values())


def test_poison_messages_reach_the_dlq_without_blocking_the_rest(
    sqs: Any, queues: dict[str, str], db_path: Path, ledger: Ledger, aws_env: dict[str, str]
) -> None:
    good = [make_event(f"user-{i}", f"order-p-{i}", 100 * (i + 1)) for i in range(6)]
    poison = list(POISON_BODIES)
    send_bodies(sqs, queues["queue_url"], poison + good)
    with running_worker(
        queues["queue_url"],
        db_path,
        aws_env["AWS_ENDPOINT_URL"],
        concurrency=2,
        batch_size=5,
        visibility_timeout_s=10,  # only the explicit release may bring poison back quickly
    ) as worker:
        wait_for(lambda: depth(sqs, queues["dlq_url"])[0] == len(poison), 30, "poison in DLQ")
        wait_for(lambda: drained(sqs, queues["queue_url"]), 10, "the queue to drain")
    assert ledger.count() == len(good)
    # maxReceiveCount (3) failed receives each, then SQS moved it; given up once per message
    assert worker.stats.poison == 3 * len(poison)
    assert worker.stats.dead_lettered == len(poison)
    assert worker.stats.credited == len(good) and worker.stats.failed == 0
    assert _dlq_bodies(sqs, queues["dlq_url"], len(poison)) == sorted(poison)


def test_a_failing_job_is_retried_by_sqs_then_dead_lettered(
    sqs: Any, queues: dict[str, str], db_path: Path, ledger: Ledger, aws_env: dict[str, str]
) -> None:
    body = make_event("user-f", "order-f-1", 5_000)
    send_bodies(sqs, queues["queue_url"], [body])
    with running_worker(
        queues["queue_url"],
        db_path,
        aws_env["AWS_ENDPOINT_URL"],
        visibility_timeout_s=1,
        simulated_failure_rate=1.0,
    ) as worker:
        wait_for(lambda: depth(sqs, queues["dlq_url"])[0] == 1, 30, "the message in the DLQ")
    assert worker.stats.failed == 3  # one per receive, then SQS's redrive policy moved it
    assert worker.stats.dead_lettered == 1
    assert worker.stats.credited == 0 and ledger.count() == 0
    assert _dlq_bodies(sqs, queues["dlq_url"], 1) == [body]


def test_a_long_job_keeps_its_message_invisible(
    sqs: Any, queues: dict[str, str], db_path: Path, ledger: Ledger, aws_env: dict[str, str]
) -> None:
    # visibility 3 s, the job takes 6.5 s: without the heartbeat the message would reappear
    send_bodies(sqs, queues["queue_url"], [make_event("user-h", "order-h-1", 777)])
    with running_worker(
        queues["queue_url"],
        db_path,
        aws_env["AWS_ENDPOINT_URL"],
        concurrency=1,
        visibility_timeout_s=3,
        simulated_work_ms=6_500,
    ) as worker:
        wait_for(lambda: worker.stats.received == 1, 10, "the message to be received")
        stolen = []
        for _ in range(5):  # another consumer polls for ~5 s while the job runs
            resp = sqs.receive_message(
                QueueUrl=queues["queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            stolen += resp.get("Messages", [])
        wait_for(lambda: worker.stats.credited == 1, 15, "the job to finish")
        wait_for(lambda: drained(sqs, queues["queue_url"]), 10, "the queue to drain")
    assert stolen == []
    assert worker.stats.extended >= 2
    assert ledger.rows() == [("user-h", "order-h-1", points_for(777))]
    assert worker.stats.duplicates == 0


def test_stop_releases_messages_not_yet_started(
    sqs: Any, queues: dict[str, str], db_path: Path, ledger: Ledger, aws_env: dict[str, str]
) -> None:
    bodies = [make_event("user-s", f"order-s-{i}", 1_000) for i in range(10)]
    send_bodies(sqs, queues["queue_url"], bodies)
    with running_worker(
        queues["queue_url"],
        db_path,
        aws_env["AWS_ENDPOINT_URL"],
        concurrency=2,
        batch_size=10,
        visibility_timeout_s=60,
        simulated_work_ms=1_500,
    ) as worker:
        wait_for(lambda: worker.stats.received >= 10, 10, "a batch to be received")
    # 2 jobs were running (finished and deleted); the 8 waiting were released, not left
    # invisible for the 60 s visibility timeout
    visible, in_flight = depth(sqs, queues["queue_url"])
    assert in_flight == 0
    assert visible + ledger.count() == 10
    assert worker.stats.released == visible >= 1
    assert json.loads(bodies[0])["type"] == "order.completed"
