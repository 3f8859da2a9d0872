"""Batched acknowledgements: DeleteMessageBatch and ChangeMessageVisibilityBatch, 10 at a time.

Jobs finish one by one on many threads; one background thread gathers their deletes (and
releases) for up to ``linger_s`` so that each SQS call carries up to 10 entries. The worker calls
:meth:`Acker.flush_soon` when its last running job ends: nothing more is coming, so the batch goes
out at once instead of waiting out the linger (messages leave the in-flight set sooner).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

MAX_BATCH = 10  # SQS's limit for both batch actions
_FLUSH = "flush"

Action = Literal["delete", "release"]


@dataclass(frozen=True, slots=True)
class Ack:
    action: Action
    message_id: str
    receipt: str


class Acker:
    """Queue deletes/releases from any thread; a background thread sends them in batches."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        *,
        log: Callable[[], logging.Logger],
        linger_s: float = 0.05,
    ) -> None:
        self._client = client
        self._url = queue_url
        self._log = log
        self._linger_s = linger_s
        self._q: queue.SimpleQueue[Ack | str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqs-acker", daemon=True)
        self.deleted = 0
        self.released = 0
        self.failed = 0
        self.calls = 0

    def start(self) -> None:
        self._thread.start()

    def delete(self, message_id: str, receipt: str) -> None:
        self._q.put(Ack("delete", message_id, receipt))

    def release(self, message_id: str, receipt: str) -> None:
        """Make the message visible again at once (ChangeMessageVisibility 0)."""
        self._q.put(Ack("release", message_id, receipt))

    def flush_soon(self) -> None:
        """Send what has been gathered without waiting for the linger to run out."""
        self._q.put(_FLUSH)

    def close(self, timeout_s: float) -> bool:
        """Send what is queued, stop the thread; False if it did not finish in time."""
        self._q.put(None)
        self._thread.join(max(0.0, timeout_s))
        return not self._thread.is_alive()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._q.get()
            if first == _FLUSH:
                continue
            batch: list[Ack] = []
            if first is None:
                stopping = True
            else:
                assert isinstance(first, Ack)
                batch.append(first)
            # gather more: whatever is queued right now, waiting at most linger_s for stragglers
            deadline = time.monotonic() + self._linger_s
            while not stopping and len(batch) < MAX_BATCH:
                remaining = deadline - time.monotonic()
                try:
                    item = self._q.get(timeout=remaining) if remaining > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                elif item == _FLUSH:
                    break
                else:
                    assert isinstance(item, Ack)
                    batch.append(item)
            if stopping:  # drain everything left, still in batches
                while True:
                    try:
                        item = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(item, Ack):
                        batch.append(item)
            for action in ("delete", "release"):
                items = [a for a in batch if a.action == action]
                for i in range(0, len(items), MAX_BATCH):
                    self._send(action, items[i : i + MAX_BATCH])

    def _send(self, action: Action, items: list[Ack]) -> None:
        self.calls += 1
        try:
            if action == "delete":
                resp = self._client.delete_message_batch(
                    QueueUrl=self._url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": a.receipt} for i, a in enumerate(items)
                    ],
                )
            else:
                resp = self._client.change_message_visibility_batch(
                    QueueUrl=self._url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": a.receipt, "VisibilityTimeout": 0}
                        for i, a in enumerate(items)
                    ],
                )
        except Exception as exc:
            # botocore already retried; the messages reappear after their visibility timeout
            # and the idempotent store turns the redelivery into a no-op.
            self.failed += len(items)
            self._log().error(
                "sqs %s batch failed: %s",
                action,
                exc,
                extra={"action": action, "messages": [a.message_id for a in items]},
            )
            return
        failed = resp.get("Failed") or []
        done = len(items) - len(failed)
        if action == "delete":
            self.deleted += done
        else:
            self.released += done
        for entry in failed:
            self.failed += 1
            item = items[int(entry["Id"])]
            self._log().warning(
                "sqs %s failed for message %s: %s %s",
                action,
                item.message_id,
                entry.get("Code"),
                entry.get("Message", ""),
                extra={"action": action, "message_id": item.message_id},
            )
