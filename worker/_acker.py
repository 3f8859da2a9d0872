"""Batched acknowledgements: DeleteMessageBatch and ChangeMessageVisibilityBatch, 10 at a time.

Jobs finish one by one on many threads; one background thread gathers their deletes (and
releases) for up to ``linger_s`` so that each SQS call carries up to 10 entries. The worker calls
:meth:`Acker.flush_soon` when its last running job ends: nothing more is coming, so the batch goes
out at once instead of waiting out the linger (messages leave the in-flight set sooner).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from worker._batch import MAX_BATCH, BatchSender, Target

__all__ = ["MAX_BATCH", "Ack", "Acker"]

_FLUSH = "flush"
#: Tries per entry for transient per-entry failures (botocore retries whole calls, not entries).
ATTEMPTS = 3

Action = Literal["delete", "release"]


@dataclass(frozen=True, slots=True)
class Ack:
    action: Action
    message_id: str
    receipt: str


class Acker:
    """Queue deletes/releases from any thread; a background thread sends them in batches.

    Per-entry failures go through :class:`worker._batch.BatchSender` (logged, counted, transient
    ones retried up to :data:`ATTEMPTS` times); nothing here raises into a job.
    """

    def __init__(
        self,
        client: Any,
        queue_url: str,
        *,
        log: Callable[[], logging.Logger],
        linger_s: float = 0.05,
        sender: BatchSender | None = None,
    ) -> None:
        self.sender = sender or BatchSender(client, queue_url, log=log)
        self._log = log
        self._linger_s = linger_s
        self._q: queue.SimpleQueue[Ack | str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqs-acker", daemon=True)
        self.calls = 0

    @property
    def deleted(self) -> int:
        return self.sender.count("delete", "ok")

    @property
    def released(self) -> int:
        return self.sender.count("release", "ok")

    @property
    def failed(self) -> int:
        """Deletes and releases that finally failed (permanently, or after the last retry)."""
        return self.sender.failed("delete", "release")

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
            self.sender.send(
                action, [Target(a.message_id, a.receipt) for a in items], attempts=ATTEMPTS
            )
        except Exception:  # a bug here must not end the thread: no acknowledgement would follow
            with contextlib.suppress(Exception):
                self._log().exception(
                    "sqs %s batch could not be sent",
                    action,
                    extra={"action": action, "messages": [a.message_id for a in items]},
                )
