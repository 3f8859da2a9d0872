"""The order producer: "order completed" events sent to the queue at a steady rate, each one
remembered (order, user, amount, points due, when SQS accepted it) for the exactly-once check and
the delay accounting."""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from points import points_for
from points.domain import DEFAULT_RATE
from worker import make_event

#: SendMessageBatch takes at most 10 entries.
MAX_BATCH = 10
#: How often the producer catches up with its rate (seconds).
TICK_S = 0.1


@dataclass(frozen=True, slots=True)
class Produced:
    """One order event SQS accepted; ``sent_at`` is epoch seconds when the send returned."""

    order_id: str
    user_id: str
    amount_jpy: int
    points: int
    sent_at: float


class Producer:
    """Sends ``rate`` events per second from :meth:`start` until :meth:`stop` (a daemon thread).

    A send that SQS refuses (a failed entry, an exception) is counted in ``send_failures`` and
    the event is not remembered: it was never produced. ``users`` distinct users share the orders.
    """

    def __init__(
        self,
        client: Any,
        queue_url: str,
        rate: float,
        *,
        users: int = 200,
        seed: int | None = None,
        rate_of_points: Decimal = DEFAULT_RATE,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 events/s, got {rate!r}")
        self._client = client
        self._queue_url = queue_url
        self.rate = rate
        self._users = users
        self._rng = random.Random(seed)
        self._rate_of_points = rate_of_points
        self._lock = threading.Lock()
        self._produced: list[Produced] = []
        self.send_failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    def _next_order(self) -> tuple[str, str, int]:
        rng = self._rng
        user = f"user-{rng.randrange(self._users):04d}"
        amount = int(min(500_000, max(100, rng.lognormvariate(8.0, 0.9))))  # ~3,000 JPY median
        return f"ord-{uuid.UUID(int=rng.getrandbits(128)).hex[:20]}", user, amount

    def start(self) -> Producer:
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._loop, name="producer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.stopped_at = time.time()

    @property
    def produced(self) -> list[Produced]:
        with self._lock:
            return list(self._produced)

    def count(self) -> int:
        with self._lock:
            return len(self._produced)

    def _loop(self) -> None:
        begin = time.monotonic()
        attempted = 0
        while not self._stop.is_set():
            due = int((time.monotonic() - begin) * self.rate) - attempted
            # Behind by more than a few batches (a stalled endpoint): do not flood on recovery.
            due = min(due, MAX_BATCH * 5)
            while due > 0:
                n = min(due, MAX_BATCH)
                self._send(n)
                attempted += n
                due -= n
            self._stop.wait(TICK_S)

    def _send(self, n: int) -> None:
        orders = [self._next_order() for _ in range(n)]
        entries = [
            {"Id": str(i), "MessageBody": make_event(user, order, amount)}
            for i, (order, user, amount) in enumerate(orders)
        ]
        try:
            resp = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        except Exception:  # the endpoint's own errors: counted; these orders never existed
            self.send_failures += n
            return
        now = time.time()
        ok = {e.get("Id") for e in resp.get("Successful") or []}
        self.send_failures += n - len(ok)
        accepted = [
            Produced(order, user, amount, points_for(amount, self._rate_of_points), now)
            for i, (order, user, amount) in enumerate(orders)
            if str(i) in ok
        ]
        with self._lock:
            self._produced.extend(accepted)
