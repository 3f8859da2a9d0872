"""SQS plumbing: the client, what the worker learns about its queue, queue set-up, depths."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

#: Connection pool large enough for the receiver, the acknowledger, the heartbeat and the queue
#: poller at once (boto3's default of 10 is shared by all threads of a client).
_POOL = 32


def make_client(region: str, endpoint_url: str | None = None) -> Any:
    """A thread-safe boto3 SQS client; ``endpoint_url`` None means the real AWS endpoint."""
    config = Config(
        region_name=region,
        max_pool_connections=_POOL,
        # a long poll holds the connection up to 20 s; the read timeout must outlast it
        read_timeout=30,
        connect_timeout=5,
        retries={"mode": "standard", "max_attempts": 3},
    )
    return boto3.client("sqs", region_name=region, endpoint_url=endpoint_url, config=config)


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """The queue's redrive policy as the worker needs it.

    ``max_receive_count`` None: no redrive policy (no DLQ). ``dlq_url`` None: no DLQ, or its URL
    could not be resolved (then only its depth goes unreported).
    """

    url: str
    max_receive_count: int | None
    dlq_url: str | None
    dlq_arn: str | None = None


def describe_queue(client: Any, queue_url: str) -> QueueInfo:
    """Read the queue's redrive policy and resolve its DLQ URL (fails if the queue is missing)."""
    attrs = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    policy_text = attrs.get("Attributes", {}).get("RedrivePolicy")
    if not policy_text:
        return QueueInfo(queue_url, None, None)
    policy = json.loads(policy_text)
    arn = str(policy["deadLetterTargetArn"])
    max_receives = int(policy["maxReceiveCount"])
    # arn:aws:sqs:<region>:<account>:<name>
    parts = arn.split(":")
    try:
        dlq_url = client.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])[
            "QueueUrl"
        ]
    except (ClientError, IndexError):
        # e.g. no sqs:GetQueueUrl on the DLQ: redrive still works, only its depth is unknown
        dlq_url = None
    return QueueInfo(queue_url, max_receives, dlq_url, arn)


def setup_queues(
    client: Any,
    name: str,
    *,
    max_receive_count: int = 3,
    visibility_timeout_s: int = 30,
) -> dict[str, str]:
    """Create (or reuse) ``name`` and ``name-dlq`` with a redrive policy; return both URLs."""
    dlq_url = client.create_queue(
        QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
    attributes = {"VisibilityTimeout": str(visibility_timeout_s), "RedrivePolicy": redrive}
    queue_url = client.create_queue(QueueName=name)["QueueUrl"]
    # set_queue_attributes (not create_queue's Attributes) so re-running with other settings
    # updates an existing queue instead of failing with QueueAlreadyExists.
    client.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)
    return {"queue_url": queue_url, "dlq_url": dlq_url}


@dataclass(frozen=True, slots=True)
class Depths:
    backlog: int
    in_flight: int
    dead_letter: int | None


def queue_depths(client: Any, info: QueueInfo) -> Depths:
    """Approximate visible / in-flight counts of the queue and the DLQ's visible count."""
    main = _attrs(
        client,
        info.url,
        ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    dead = None
    if info.dlq_url:
        dead = int(_attrs(client, info.dlq_url, ["ApproximateNumberOfMessages"])[0])
    return Depths(int(main[0]), int(main[1]), dead)


def _attrs(client: Any, url: str, names: list[str]) -> list[str]:
    got: Mapping[str, str] = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)[
        "Attributes"
    ]
    return [got.get(n, "0") for n in names]
