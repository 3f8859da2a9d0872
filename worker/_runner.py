"""The worker loop: receive -> process on a bounded pool -> batch delete, with a heartbeat.

Threads:

* ``sqs-receiver`` long-polls for up to ``batch_size`` messages whenever a whole batch fits in
  the budget of held messages (``concurrency`` running + one batch waiting for a slot);
* a ``ThreadPoolExecutor`` of ``concurrency`` threads runs the jobs;
* ``sqs-acker`` batches deletes and releases (:mod:`worker._acker`);
* ``sqs-monitor`` extends the visibility of held messages before it runs out (the heartbeat)
  and polls queue depths every ``queue_poll_s``.

A message is deleted only after the store committed its grant (at least once); a redelivery is
a no-op because the store is idempotent by ``order_id`` (so the effect is exactly once).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from opentelemetry import context as otel_context

from points.domain import DEFAULT_RATE, PointsService
from points.storage import IdempotencyConflict, Storage
from worker import _instrument as instrument
from worker._acker import MAX_BATCH, Acker
from worker._config import WorkerConfig
from worker._events import PoisonMessage, parse_event, trace_context
from worker._sqs import QueueInfo, describe_queue, make_client, queue_depths


class SimulatedFailure(RuntimeError):
    """Raised by the fault injection knob ``WORKER_SIMULATED_FAILURE_RATE``."""


@dataclass(slots=True)
class _Held:
    """A received message the worker has not yet acknowledged."""

    message_id: str
    receipt: str
    received_at: float  # monotonic
    deadline: float  # monotonic time its visibility runs out
    gave_up_extending: bool = False


@dataclass(slots=True)
class Stats:
    """Counters for tests, benchmarks and the final log line."""

    received: int = 0
    receive_calls: int = 0
    credited: int = 0
    duplicates: int = 0
    poison: int = 0
    failed: int = 0
    dead_lettered: int = 0
    released: int = 0
    extended: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class Worker:
    """Grants points for "order completed" events from one SQS queue until :meth:`stop`."""

    def __init__(
        self,
        config: WorkerConfig,
        storage: Storage,
        *,
        rate: Decimal = DEFAULT_RATE,
        client: Any | None = None,
    ) -> None:
        self.config = config
        self.service = PointsService(storage, rate)
        self.client = client or make_client(config.region, config.endpoint_url)
        self.stats = Stats()
        self.info: QueueInfo | None = None
        self._stop = threading.Event()
        self._stopped_at: float | None = None
        self._cond = threading.Condition()
        self._held: dict[str, _Held] = {}  # by receipt handle; guarded by _cond
        self._holding = 0  # messages received and not finished; guarded by _cond
        self._running = 0  # jobs inside _job right now; guarded by _cond
        self._capacity = config.concurrency + config.batch_size
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="job")
        self._acker: Acker | None = None
        self._receiver = threading.Thread(target=self._receive_loop, name="sqs-receiver")
        self._monitor = threading.Thread(target=self._monitor_loop, name="sqs-monitor")
        self._receiver.daemon = self._monitor.daemon = True
        self._stats_lock = threading.Lock()

    # -- public ------------------------------------------------------------------------------

    def start(self) -> None:
        """Read the queue's redrive policy, then start receiving (raises if the queue is missing)."""
        self.info = describe_queue(self.client, self.config.queue_url)
        try:
            # Touch the store once before the pool starts: this creates the schema (SQLite) from
            # one thread instead of ten racing for it, and says early if it is unreachable.
            self.service.storage.ping()
        except Exception as exc:
            instrument.log.error(
                "points store unavailable at start-up (jobs will fail and be retried): %s", exc
            )
        if self.info.max_receive_count is None:
            instrument.log.warning(
                "queue has no redrive policy: poison messages will be retried forever "
                "(create it with `python -m worker setup-queues`)",
                extra={"queue_url": self.config.queue_url},
            )
        self._acker = Acker(self.client, self.config.queue_url, log=lambda: instrument.log)
        self._acker.start()
        self._monitor.start()
        self._receiver.start()
        instrument.log.info(
            "worker started",
            extra={
                "queue_url": self.config.queue_url,
                "dlq_url": self.info.dlq_url,
                "dlq_arn": self.info.dlq_arn,
                "max_receive_count": self.info.max_receive_count,
                "concurrency": self.config.concurrency,
                "batch_size": self.config.batch_size,
            },
        )

    def stop(self) -> None:
        """Ask the worker to stop (safe from a signal handler); :meth:`wait` does the rest."""
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        self._stop.set()
        with contextlib.suppress(RuntimeError):  # a signal may land while the lock is held
            if self._cond.acquire(blocking=False):
                try:
                    self._cond.notify_all()
                finally:
                    self._cond.release()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self) -> bool:
        """Block until :meth:`stop`, then shut down within ``stop_timeout_s``.

        Returns True if every held message was finished or released in time.
        """
        while not self._stop.wait(0.5):
            pass
        return self._shutdown()

    def run(self) -> bool:
        self.start()
        return self.wait()

    # -- shutdown ----------------------------------------------------------------------------

    def _shutdown(self) -> bool:
        cfg = self.config
        stopped_at = self._stopped_at or time.monotonic()
        deadline = stopped_at + cfg.stop_timeout_s
        reserve = min(3.0, cfg.stop_timeout_s / 4)  # kept for releasing and flushing
        instrument.log.info("stopping: no more receives; finishing in-flight jobs")
        # 1. The receiver returns when its long poll does and releases what that poll brought.
        self._receiver.join(max(0.0, deadline - reserve - time.monotonic()))
        # 2. Jobs not started yet are cancelled (their messages are released below); running
        #    jobs are given until the deadline minus the reserve.
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._cond:
            while self._running_jobs() and time.monotonic() < deadline - reserve:
                self._cond.wait(0.1)
        # 3. Stop the heartbeat before releasing, so it cannot extend a released message.
        self._monitor.join(max(0.0, min(2.0, deadline - time.monotonic())))
        with self._cond:
            leftovers = list(self._held.values())
            self._held.clear()
        assert self._acker is not None
        for held in leftovers:
            self._acker.release(held.message_id, held.receipt)
        self._count("released", len(leftovers))
        clean = self._acker.close(max(0.5, deadline - time.monotonic()))
        unfinished = self._running_jobs()
        instrument.log.info(
            "worker stopped",
            extra={
                "received": self.stats.received,
                "credited": self.stats.credited,
                "duplicates": self.stats.duplicates,
                "poison": self.stats.poison,
                "failed": self.stats.failed,
                "released": self.stats.released,
                "deleted": self._acker.deleted,
                "receive_calls": self.stats.receive_calls,
                "ack_calls": self._acker.calls,
                "unfinished_jobs": unfinished,
                "stop_s": round(time.monotonic() - stopped_at, 3),
            },
        )
        return clean and not unfinished and not self._receiver.is_alive()

    def _running_jobs(self) -> int:
        return self._running

    # -- receiving ---------------------------------------------------------------------------

    def _receive_loop(self) -> None:
        cfg = self.config
        failures = 0
        while not self._stop.is_set():
            with self._cond:
                # receive a full batch only when it fits: no message waits long for a slot
                while self._holding > self._capacity - cfg.batch_size and not self._stop.is_set():
                    self._cond.wait(0.5)
            if self._stop.is_set():
                break
            try:
                resp = self.client.receive_message(
                    QueueUrl=cfg.queue_url,
                    MaxNumberOfMessages=cfg.batch_size,
                    WaitTimeSeconds=cfg.wait_time_s,
                    VisibilityTimeout=cfg.visibility_timeout_s,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except Exception as exc:
                failures += 1
                pause = min(10.0, 0.2 * 2 ** min(failures, 6))
                instrument.log.error(
                    "receive failed (%s); retrying in %.1f s", exc, pause, extra={"error": str(exc)}
                )
                self._stop.wait(pause)
                continue
            failures = 0
            self._count("receive_calls", 1)
            messages = resp.get("Messages") or []
            if not messages:
                if cfg.wait_time_s == 0:
                    self._stop.wait(1.0)  # short polling an empty queue: do not spin
                continue
            try:
                self._accept(messages)
            except Exception:  # a bug must not stop the receiver; the messages reappear later
                instrument.log.exception("could not hand received messages to the pool")

    def _accept(self, messages: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        wall = time.time()
        held = [
            _Held(m["MessageId"], m["ReceiptHandle"], now, now + self.config.visibility_timeout_s)
            for m in messages
        ]
        self._count("received", len(messages))
        for m in messages:
            sent_ms = (m.get("Attributes") or {}).get("SentTimestamp")
            if sent_ms:
                with contextlib.suppress(ValueError):
                    instrument.message_age(max(0.0, wall - int(sent_ms) / 1000))
        with self._cond:
            for h in held:
                self._held[h.receipt] = h
            self._holding += len(held)
        if self._stop.is_set():
            self._release_all(held)
            return
        for h, m in zip(held, messages, strict=True):
            try:
                self._pool.submit(self._job, h, m)
            except RuntimeError:  # pool shut down between the check and here
                self._release_all([h])

    def _release_all(self, held: list[_Held]) -> None:
        assert self._acker is not None
        for h in held:
            if self._forget(h):
                self._acker.release(h.message_id, h.receipt)
                self._count("released", 1)

    def _forget(self, held: _Held) -> bool:
        """Stop tracking ``held``; False if someone else already did."""
        with self._cond:
            if self._held.pop(held.receipt, None) is None:
                return False
            self._holding -= 1
            self._cond.notify_all()
            return True

    # -- one job -----------------------------------------------------------------------------

    def _job(self, held: _Held, message: dict[str, Any]) -> None:
        with self._cond:
            self._running += 1
        try:
            if self._stop.is_set():
                self._release_all([held])
                return
            ctx = trace_context(message)
            token = otel_context.attach(ctx) if ctx is not None else None
            try:
                self._process(held, message)
            finally:
                if token is not None:
                    otel_context.detach(token)
        finally:
            with self._cond:
                self._running -= 1
                # nothing running or waiting: no more acknowledgements are coming for now
                idle = self._holding == 0
                self._cond.notify_all()
            if idle and self._acker is not None:
                self._acker.flush_soon()

    def _process(self, held: _Held, message: dict[str, Any]) -> None:
        assert self._acker is not None and self.info is not None
        attrs = message.get("Attributes") or {}
        receive_count = int(attrs.get("ApproximateReceiveCount", "1"))
        max_receives = self.info.max_receive_count
        last_try = max_receives is not None and receive_count >= max_receives
        poison: str | None = None
        request = None
        try:
            request = parse_event(message.get("Body") or "")
        except PoisonMessage as exc:
            poison = exc.reason
        order_id = request.order_id if request else None

        with instrument.job(held.message_id, order_id, receive_count) as job:
            fields: dict[str, Any] = {}
            error: BaseException | None = None
            try:
                if poison is not None:
                    raise PoisonMessage(poison)
                assert request is not None
                self._simulate()
                try:
                    result = self.service.grant(request)
                except IdempotencyConflict as exc:
                    raise PoisonMessage(
                        f"order_id already granted with other content: {exc}"
                    ) from None
                outcome = "credited" if result.created else "duplicate"
                fields.update(user_id=request.user_id, points=result.entry.points)
            except PoisonMessage as exc:
                outcome, error = "poison", exc
            except Exception as exc:
                outcome, error = "failed", exc

            if not self._forget(held):
                # the shutdown released it already; the effect (if any) is committed and the
                # redelivery will be a no-op
                fields["late"] = True
            elif error is None:
                self._acker.delete(held.message_id, held.receipt)
            elif outcome == "poison" and self.info.max_receive_count is not None:
                # Fail fast: visible again at once, so SQS's redrive policy moves it to the DLQ
                # after maxReceiveCount receives within moments instead of maxReceiveCount
                # visibility timeouts; the rest of the queue is never blocked behind it.
                self._acker.release(held.message_id, held.receipt)
            # else ("failed"): left alone, it reappears when its visibility timeout runs out
            # (SQS's retry, the timeout being the back-off) and after maxReceiveCount receives
            # SQS moves it to the DLQ.

            self._count("duplicates" if outcome == "duplicate" else outcome, 1)
            fields["outcome"] = outcome
            if error is None:
                instrument.log.info("order %s", outcome, extra=fields)
                return
            job.failed = True
            fields["reason"] = str(error)
            if last_try:
                fields["dead_letter"] = True
                self._count("dead_lettered", 1)
                instrument.dead_lettered()
            if outcome == "poison":
                instrument.log.warning("poison message: %s", error, extra=fields)
            else:
                fields["error_type"] = type(error).__name__
                instrument.log.error(
                    "job failed: %s",
                    error,
                    extra=fields,
                    exc_info=None if isinstance(error, SimulatedFailure) else error,
                )

    def _simulate(self) -> None:
        cfg = self.config
        if cfg.simulated_work_ms > 0:
            time.sleep(cfg.simulated_work_ms / 1000)
        if cfg.simulated_failure_rate > 0 and random.random() < cfg.simulated_failure_rate:
            raise SimulatedFailure("simulated failure (WORKER_SIMULATED_FAILURE_RATE)")

    def _count(self, name: str, n: int) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + n)

    # -- heartbeat and queue depths ----------------------------------------------------------

    def _monitor_loop(self) -> None:
        cfg = self.config
        tick = min(1.0, max(0.1, cfg.visibility_timeout_s / 6))
        next_poll = time.monotonic()
        while not self._stop.wait(tick):
            try:
                self._heartbeat()
            except Exception:  # keep the heartbeat thread alive whatever happens
                instrument.log.exception("heartbeat failed")
            if cfg.queue_poll_s > 0 and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + cfg.queue_poll_s
                self._poll_depths()
        # one last look at the queue, so a short run still reports its depths
        if cfg.queue_poll_s > 0:
            self._poll_depths()

    def _heartbeat(self) -> None:
        cfg = self.config
        now = time.monotonic()
        due: list[_Held] = []
        with self._cond:
            for h in self._held.values():
                if h.gave_up_extending or h.deadline - now > cfg.visibility_timeout_s / 2:
                    continue
                if now - h.received_at >= cfg.job_timeout_s:
                    h.gave_up_extending = True
                    instrument.log.warning(
                        "job exceeded WORKER_JOB_TIMEOUT_S; no longer extending its visibility",
                        extra={"message_id": h.message_id},
                    )
                    continue
                due.append(h)
        for i in range(0, len(due), MAX_BATCH):
            chunk = due[i : i + MAX_BATCH]
            try:
                resp = self.client.change_message_visibility_batch(
                    QueueUrl=cfg.queue_url,
                    Entries=[
                        {
                            "Id": str(j),
                            "ReceiptHandle": h.receipt,
                            "VisibilityTimeout": cfg.visibility_timeout_s,
                        }
                        for j, h in enumerate(chunk)
                    ],
                )
            except Exception as exc:
                instrument.log.warning("visibility extension failed: %s", exc)
                continue
            failed = {int(e["Id"]) for e in resp.get("Failed") or []}
            extended_at = time.monotonic()
            for j, h in enumerate(chunk):
                if j not in failed:
                    h.deadline = extended_at + cfg.visibility_timeout_s
            self._count("extended", len(chunk) - len(failed))

    def _poll_depths(self) -> None:
        assert self.info is not None
        try:
            depths = queue_depths(self.client, self.info)
        except Exception as exc:
            instrument.log.warning("queue depth poll failed: %s", exc)
            return
        instrument.queue_depths(depths.backlog, depths.in_flight, depths.dead_letter)
