"""Realistic "order completed" traffic for demos, load and tests (``python -m worker send-sample``)."""

from __future__ import annotations

import math
import random
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from worker._acker import MAX_BATCH
from worker._events import make_event

#: Bodies that can never succeed, one per failure class the worker distinguishes.
POISON_BODIES = (
    "{not json",
    '{"user_id": "u-1", "order_id": "o-1", "amount_jpy": 100}',  # no envelope
    '{"type": "order.completed", "version": 1, "data": {"user_id": "u-1", "order_id": "o-x", '
    '"amount_jpy": -5}}',
    '{"type": "order.cancelled", "version": 1, "data": {}}',
)


@dataclass(frozen=True, slots=True)
class SampleOrder:
    user_id: str
    order_id: str
    amount_jpy: int


def sample_orders(count: int, *, users: int = 50, seed: int | None = None) -> Iterator[SampleOrder]:
    """``count`` orders: a few heavy users, amounts log-normal around 3,000 JPY."""
    rng = random.Random(seed)
    for _ in range(count):
        # Zipf-ish: low user numbers buy more often, as real customers do
        user = min(users, int(users ** rng.random()))
        amount = int(min(500_000, max(100, math.exp(rng.gauss(math.log(3000), 0.9)))))
        order = uuid.UUID(int=rng.getrandbits(128)).hex[:20]
        yield SampleOrder(f"user-{user:04d}", f"ord-{order}", amount)


def new_trace() -> tuple[str, str]:
    """A fresh sampled trace as (X-Ray header, W3C traceparent) naming the same trace and span."""
    trace_hex = f"{int(time.time()):08x}{secrets.token_hex(12)}"  # X-Ray ids start with epoch s
    span_hex = secrets.token_hex(8)
    xray = f"Root=1-{trace_hex[:8]}-{trace_hex[8:]};Parent={span_hex};Sampled=1"
    return xray, f"00-{trace_hex}-{span_hex}-01"


def message_entry(body: str, index: int, *, traced: bool = True) -> dict[str, Any]:
    """One SendMessageBatch entry carrying the producer's trace both ways."""
    entry: dict[str, Any] = {"Id": str(index), "MessageBody": body}
    if traced:
        xray, traceparent = new_trace()
        entry["MessageAttributes"] = {
            "traceparent": {"DataType": "String", "StringValue": traceparent}
        }
        entry["MessageSystemAttributes"] = {
            "AWSTraceHeader": {"DataType": "String", "StringValue": xray}
        }
    return entry


def send_bodies(client: Any, queue_url: str, bodies: list[str], *, traced: bool = True) -> int:
    """Send ``bodies`` in batches of 10; return how many SQS accepted (raises on failures)."""
    sent = 0
    for i in range(0, len(bodies), MAX_BATCH):
        chunk = bodies[i : i + MAX_BATCH]
        resp = client.send_message_batch(
            QueueUrl=queue_url,
            Entries=[message_entry(b, j, traced=traced) for j, b in enumerate(chunk)],
        )
        failed = resp.get("Failed") or []
        if failed:
            first = failed[0]
            raise RuntimeError(
                f"SQS refused {len(failed)} message(s): {first.get('Code')} {first.get('Message')}"
            )
        sent += len(chunk)
    return sent


def send_sample(
    client: Any,
    queue_url: str,
    *,
    count: int,
    users: int = 50,
    poison: int = 0,
    duplicates: int = 1,
    seed: int | None = None,
) -> dict[str, int]:
    """Publish ``count`` orders (each ``duplicates`` times) plus ``poison`` bad messages."""
    orders = list(sample_orders(count, users=users, seed=seed))
    bodies = [make_event(o.user_id, o.order_id, o.amount_jpy) for o in orders] * duplicates
    bodies += [POISON_BODIES[i % len(POISON_BODIES)] for i in range(poison)]
    random.Random(seed).shuffle(bodies)
    sent = send_bodies(client, queue_url, bodies)
    return {
        "orders": count,
        "messages": sent,
        "poison": poison,
        "amount_jpy": sum(o.amount_jpy for o in orders),
    }
