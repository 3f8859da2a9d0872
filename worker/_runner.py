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
import functools
import itertools
import random
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from opentelemetry import context as otel_context

from points.domain import DEFAULT_RATE, PointsService
from points.storage import IdempotencyConflict, Storage
from worker import _instrument as instrument
from worker._acker import Acker
from worker._batch import MAX_BATCH, BatchSender, Target
from worker._config import WorkerConfig
from worker._events import PoisonMessage, parse_event, trace_context
from worker._sqs import QueueInfo, describe_queue, make_client, queue_depths

#: How often :meth:`Worker.wait` looks for a stop requested by a signal handler, seconds.
_STOP_POLL_S = 0.1

#: SQS's limit on a message's total visibility since it was received, seconds (12 hours):
#: "you can't extend the timeout of a message [...] to more than a total visibility timeout of
#: 12 hours"; a ChangeMessageVisibility past it is rejected (InvalidParameterValue), and SQS
#: does not shorten it to the time left (SQS API reference, ChangeMessageVisibility).
MAX_VISIBILITY_S = 43_200


class SimulatedFailure(RuntimeError):
    """Raised by the fault injection knob ``WORKER_SIMULATED_FAILURE_RATE``."""


@dataclass(slots=True)
class _Held:
    """A received message the worker has not yet acknowledged (it holds one slot)."""

    key: int  # unique per receive: two messages may carry the same (odd) receipt handle
    message_id: str
    receipt: str
    received_at: float  # monotonic
    deadline: float  # monotonic time its visibility runs out
    #: monotonic time past which SQS refuses any visibility (12 hours after the receive; counted
    #: from when the receive was sent, which is before SQS started counting)
    visible_limit: float
    gave_up_extending: bool = False
    counted: bool = False  # the job's telemetry (Jobs/JobErrors) has started
    settled: bool = False  # the job's outcome has been counted in Stats
    #: received for the last time the redrive policy allows: released, SQS moves it to the DLQ
    #: at its next receive, so a stop runs it rather than releasing it (when time allows)
    last_receive: bool = False


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
    #: of ``released``: messages on their last allowed receive, which the DLQ gets next
    released_last_receive: int = 0
    extended: int = 0
    #: messages that could not be held at all (no usable receipt handle): failed jobs too
    unusable: int = 0
    #: jobs that raised past their own handling (a bug): logged, counted, left for retry
    crashed: int = 0
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
        #: set by :meth:`request_stop` (a signal handler); :meth:`wait` turns it into ``_stop``
        self._stop_requested = False
        self._stopped_at: float | None = None
        self._cond = threading.Condition()
        self._held: dict[int, _Held] = {}  # by _Held.key; guarded by _cond
        self._keys = itertools.count()
        self._holding = 0  # messages received and not finished; guarded by _cond
        self._running = 0  # jobs inside _job right now; guarded by _cond
        self._capacity = config.concurrency + config.batch_size
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="job")
        self._pending: dict[int, Future[None]] = {}  # jobs not done yet, by _Held.key; _cond
        self._closing = False  # past the stop's deadline for jobs: nothing more starts
        self._acker: Acker | None = None
        #: every batch call (deletes, releases, extensions) and its per-entry failures
        self.batches = BatchSender(self.client, config.queue_url, log=lambda: instrument.log)
        self._receiver = threading.Thread(target=self._receive_loop, name="sqs-receiver")
        self._monitor = threading.Thread(target=self._monitor_loop, name="sqs-monitor")
        self._receiver.daemon = self._monitor.daemon = True
        self._stats_lock = threading.Lock()

    # -- public ------------------------------------------------------------------------------

    def start(self) -> bool:
        """Read the queue's redrive policy, then start receiving (raises if the queue is missing).

        Returns False, having started nothing, when a stop was requested first, also while it
        waited on SQS or the store: an endpoint that accepts and never answers holds a call for
        its read timeout and retries (minutes), and a SIGTERM must not wait for that."""
        info = self._unless_stopped(describe_queue, self.client, self.config.queue_url)
        if info is None:
            return False
        self.info = info
        try:
            # Touch the store once before the pool starts: this creates the schema (SQLite) from
            # one thread instead of ten racing for it, and says early if it is unreachable.
            self._unless_stopped(self.service.storage.ping)
        except Exception as exc:
            instrument.log.error(
                "points store unavailable at start-up (jobs will fail and be retried): %s", exc
            )
        if self.stopping:
            return False
        if self.info.max_receive_count is None:
            instrument.log.warning(
                "queue has no redrive policy: poison messages will be retried forever "
                "(create it with `python -m worker setup-queues`)",
                extra={"queue_url": self.config.queue_url},
            )
        self._acker = Acker(
            self.client, self.config.queue_url, log=lambda: instrument.log, sender=self.batches
        )
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
        return True

    def _unless_stopped(self, call: Any, *args: Any) -> Any:
        """``call(*args)`` in a helper thread while this one watches for a stop request (every
        :data:`_STOP_POLL_S`); its result, its exception re-raised, or None when a stop came
        first (the call is abandoned: a daemon thread that ends with its own timeout)."""
        done = threading.Event()
        out: list[Any] = [None, None]

        def target() -> None:
            try:
                out[0] = call(*args)
            except BaseException as exc:  # handed to the caller
                out[1] = exc
            finally:
                done.set()

        threading.Thread(target=target, name="worker-start", daemon=True).start()
        while not done.wait(_STOP_POLL_S):
            if self.stopping:
                return None
        if out[1] is not None:
            raise out[1]
        return out[0]

    def stop(self) -> None:
        """Ask the worker to stop, from any thread; :meth:`wait` does the rest.

        Not from a signal handler: it takes locks (see :meth:`request_stop`).
        """
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def request_stop(self) -> None:
        """Ask the worker to stop, from a signal handler: :meth:`wait` (the main thread) stops
        it within :data:`_STOP_POLL_S`.

        Takes no lock, on purpose. A handler runs in the main thread between two bytecodes of
        whatever it interrupted; one that took a lock (``Event.set`` does) while the interrupted
        code held it (the main thread's own ``Event.wait``, or a first handler still inside
        ``set`` when a second signal lands) would wait for itself forever, and the process
        would ignore every later SIGTERM.
        """
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested or self._stop.is_set()

    def wait(self) -> bool:
        """Block until :meth:`stop` or :meth:`request_stop`, then shut down within
        ``stop_timeout_s``.

        Returns True if every held message was finished or released in time.
        """
        while not self._stop.wait(_STOP_POLL_S):
            if self._stop_requested:
                self.stop()
        return self._shutdown()

    def run(self) -> bool:
        if not self.start():
            return True  # stopped before it received anything: nothing to hand back
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
        # 2. Jobs not started yet are cancelled (their messages are released below), except a
        #    message on its last allowed receive: released, it would go to the DLQ without
        #    ever failing, so it runs if time allows. Running jobs, and those, are given until
        #    the deadline minus the reserve.
        with self._cond:
            pending = [(key, future) for key, future in self._pending.items()]
            last = {key for key, held in self._held.items() if held.last_receive}
        for key, future in pending:
            if key not in last:
                future.cancel()
        self._pool.shutdown(wait=False)
        with self._cond:
            while (self._running_jobs() or self._waiting_last_receive()) and (
                time.monotonic() < deadline - reserve
            ):
                self._cond.wait(0.1)
            self._closing = True
        # 3. Stop the heartbeat before releasing, so it cannot extend a released message.
        self._monitor.join(max(0.0, min(2.0, deadline - time.monotonic())))
        with self._cond:
            leftovers = list(self._held.values())
            self._held.clear()
        assert self._acker is not None
        for held in leftovers:
            self._acker.release(held.message_id, held.receipt)
        self._count("released", len(leftovers))
        self._count("released_last_receive", sum(1 for held in leftovers if held.last_receive))
        lost = self.stats.released_last_receive
        if lost:
            instrument.log.warning(
                "released %d message(s) on their last allowed receive: the queue moves them to "
                "the DLQ (raise the stop timeout, or lower the concurrency or batch size)",
                lost,
                extra={"released_last_receive": lost},
            )
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
                "released_last_receive": self.stats.released_last_receive,
                "unusable": self.stats.unusable,
                "crashed": self.stats.crashed,
                "deleted": self._acker.deleted,
                "receive_calls": self.stats.receive_calls,
                "ack_calls": self._acker.calls,
                "batch_entry_failures": self.batch_failures(),
                "telemetry_failures": instrument.failures(),
                "unfinished_jobs": unfinished,
                "stop_s": round(time.monotonic() - stopped_at, 3),
            },
        )
        return clean and not unfinished and not self._receiver.is_alive()

    def _running_jobs(self) -> int:
        return self._running

    def _waiting_last_receive(self) -> bool:
        """A job on its last allowed receive has not started yet (call with ``_cond`` held)."""
        return any(
            self._held.get(key) is not None and self._held[key].last_receive
            for key, future in self._pending.items()
            if not future.running() and not future.done()
        )

    def batch_failures(self) -> dict[str, int]:
        """Entries of batch calls that finally failed, by action (delete, release, extend)."""
        return {a: self.batches.failed(a) for a in ("delete", "release", "extend")}

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
            requested_at = time.monotonic()
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
            messages = resp.get("Messages") if isinstance(resp, Mapping) else None
            if not isinstance(messages, list) or not messages:
                if cfg.wait_time_s == 0:
                    self._stop.wait(1.0)  # short polling an empty queue: do not spin
                continue
            try:
                self._accept(messages, requested_at)
            except Exception:  # a bug must not stop the receiver; the messages reappear later
                instrument.log.exception("could not hand received messages to the pool")

    def _accept(self, messages: list[Any], requested_at: float | None = None) -> None:
        """Hold and submit the messages of one receive, sent at monotonic ``requested_at``."""
        now = time.monotonic()
        wall = time.time()
        self._count("received", len(messages))
        accepted: list[tuple[_Held, Mapping[str, Any]]] = []
        for m in messages:
            held = self._hold(m, now, requested_at)
            if held is None:
                self._unusable(m)
                continue
            accepted.append((held, m))
            sent_ms = _whole_number(_attributes(m).get("SentTimestamp"))
            if sent_ms is not None:
                instrument.message_age(max(0.0, wall - sent_ms / 1000))
        if self._stop.is_set():
            # the long poll that returned after the stop: released at once, but a message on
            # its last allowed receive is run like any held one (the DLQ would get it)
            self._release_all([h for h, _ in accepted if not h.last_receive])
            accepted = [(h, m) for h, m in accepted if h.last_receive]
        for h, m in accepted:
            try:
                future = self._pool.submit(self._job, h, m)
            except Exception:  # RuntimeError: pool shut down between the check and here
                self._release_all([h])
                continue
            with self._cond:
                self._pending[h.key] = future
            future.add_done_callback(functools.partial(self._job_done, h))

    def _hold(self, message: Any, now: float, requested_at: float | None = None) -> _Held | None:
        """Track ``message`` (one slot), received at monotonic ``now`` by a receive sent at
        ``requested_at`` (default ``now``); None if it has no receipt handle to acknowledge it by."""
        if not isinstance(message, Mapping):
            return None
        receipt = message.get("ReceiptHandle")
        if not isinstance(receipt, str) or not receipt:
            return None
        held = _Held(
            next(self._keys),
            _message_id(message),
            receipt,
            now,
            now + self.config.visibility_timeout_s,
            (now if requested_at is None else requested_at) + MAX_VISIBILITY_S,
        )
        max_receives = self.info.max_receive_count if self.info is not None else None
        count = _whole_number(_attributes(message).get("ApproximateReceiveCount"))
        held.last_receive = max_receives is not None and count is not None and count >= max_receives
        with self._cond:
            self._held[held.key] = held
            self._holding += 1
        return held

    def _unusable(self, message: Any) -> None:
        """A message without a receipt handle: it cannot be deleted or released, only left to
        reappear after its visibility timeout (and, after maxReceiveCount, go to the DLQ)."""
        message_id = _message_id(message) if isinstance(message, Mapping) else "unknown"
        self._count("unusable", 1)
        with instrument.job(message_id, None, None) as job:
            job.failed = True
            instrument.log.error(
                "received message has no receipt handle; left for SQS to retry",
                extra={"outcome": "failed", "reason": "no receipt handle"},
            )

    def _release_all(self, held: list[_Held]) -> None:
        assert self._acker is not None
        for h in held:
            if self._forget(h):
                self._acker.release(h.message_id, h.receipt)
                self._count("released", 1)
                if h.last_receive:  # however it came to be released (a job started too late
                    # for the stop, a pool already shut down): the DLQ gets it
                    self._count("released_last_receive", 1)

    def _forget(self, held: _Held) -> bool:
        """Stop tracking ``held`` (free its slot); False if someone else already did."""
        with self._cond:
            if self._held.pop(held.key, None) is None:
                return False
            self._holding -= 1
            self._cond.notify_all()
            return True

    # -- one job -----------------------------------------------------------------------------
    #
    # Whatever a message holds and whatever raises while it is handled (the parser, the store,
    # telemetry, a bug), the job ends with its slot freed, a log line, Jobs/JobErrors counted,
    # and the message deleted, released for the DLQ, or left to reappear (SQS's retry).

    def _job(self, held: _Held, message: Mapping[str, Any]) -> None:
        with self._cond:
            self._running += 1
        try:
            if self._stop.is_set() and (self._closing or not held.last_receive):
                self._release_all([held])
                return
            self._process(held, message)
        except BaseException as exc:  # a pool thread has no one else to tell
            self._crashed(held, exc)
        finally:
            with self._cond:
                self._running -= 1
                # nothing running or waiting: no more acknowledgements are coming for now
                idle = self._holding == 0
                self._cond.notify_all()
            if idle and self._acker is not None:
                self._acker.flush_soon()

    def _job_done(self, held: _Held, future: Future[None]) -> None:
        """Done-callback of every job: a job cancelled at shutdown is released at once; one that
        somehow left its message held frees the slot. Never raises (the pool's thread runs it)."""
        try:
            with self._cond:
                self._pending.pop(held.key, None)
                self._cond.notify_all()
            if future.cancelled():
                self._release_all([held])
            elif self._forget(held):
                self._count("crashed", 1)
                instrument.log.error(
                    "job ended without acknowledging its message; left for SQS to retry",
                    extra={"message_id": held.message_id},
                )
        except BaseException as exc:
            _last_words("job done-callback", exc)

    def _crashed(self, held: _Held, exc: BaseException) -> None:
        """A job raised past its own handling: free the slot, log, count; SQS retries it."""
        try:
            self._forget(held)  # left alone: it reappears after its visibility timeout
            if not held.settled:
                self._count("crashed", 1)
                self._count("failed", 1)
            if not held.counted:
                with instrument.job(held.message_id, None, None) as job:
                    job.failed = True
            instrument.log.error(
                "job crashed: %s; message left for SQS to retry",
                _describe(exc),
                exc_info=exc,
                extra={
                    "message_id": held.message_id,
                    "outcome": "failed",
                    "error_type": type(exc).__name__,
                },
            )
        except BaseException as err:
            _last_words("job crash handling", err)

    def _process(self, held: _Held, message: Mapping[str, Any]) -> None:
        assert self._acker is not None and self.info is not None
        receive_count = _whole_number(_attributes(message).get("ApproximateReceiveCount"))
        last_try = held.last_receive
        request = None
        early: BaseException | None = None
        try:
            request = parse_event(message.get("Body"))
        except BaseException as exc:  # PoisonMessage, or worse: raised in the job
            early = exc
        ctx = trace_context(message)
        token = None
        if ctx is not None:
            with contextlib.suppress(Exception):
                token = otel_context.attach(ctx)
        try:
            with instrument.job(
                held.message_id, request.order_id if request else None, receive_count
            ) as job:
                held.counted = True
                outcome, error, fields = self._grant(request, early)
                self._settle(held, outcome, error, fields, last_try)
                job.failed = error is not None
        finally:
            if token is not None:
                with contextlib.suppress(Exception):
                    otel_context.detach(token)

    def _grant(
        self, request: Any, early: BaseException | None
    ) -> tuple[str, BaseException | None, dict[str, Any]]:
        """(outcome, error, log fields): credited/duplicate, poison (never succeeds) or failed."""
        try:
            if early is not None:
                raise early
            assert request is not None
            self._simulate()
            try:
                with instrument.store_span("grant"):
                    result = self.service.grant(request)
            except IdempotencyConflict as exc:
                raise PoisonMessage(
                    f"order_id already granted with other content: {_describe(exc)}"
                ) from None
            fields = {"user_id": request.user_id, "points": result.entry.points}
            return ("credited" if result.created else "duplicate"), None, fields
        except PoisonMessage as exc:
            return "poison", exc, {}
        except BaseException as exc:  # store errors, bugs: SQS retries them
            return "failed", exc, {}

    def _settle(
        self,
        held: _Held,
        outcome: str,
        error: BaseException | None,
        fields: dict[str, Any],
        last_try: bool,
    ) -> None:
        """Acknowledge (delete / release / leave), count and log one job's outcome."""
        assert self._acker is not None and self.info is not None
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
        held.settled = True
        fields["outcome"] = outcome
        if error is None:
            instrument.log.info("order %s", outcome, extra=fields)
            return
        fields["reason"] = _describe(error)
        if last_try:
            fields["dead_letter"] = True
            self._count("dead_lettered", 1)
            instrument.dead_lettered()
        if outcome == "poison":
            instrument.log.warning("poison message: %s", fields["reason"], extra=fields)
        else:
            fields["error_type"] = type(error).__name__
            instrument.log.error(
                "job failed: %s",
                fields["reason"],
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
        due: list[tuple[_Held, int]] = []
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
                # Never past SQS's 12 hours since the receive: SQS rejects such an extension
                # instead of shortening it, and the message would reappear at its old deadline.
                left = int(h.visible_limit - now)
                if left < 1:
                    h.gave_up_extending = True
                    instrument.log.warning(
                        "message reached SQS's 12-hour visibility maximum; no longer extending "
                        "its visibility",
                        extra={"message_id": h.message_id},
                    )
                    continue
                due.append((h, min(cfg.visibility_timeout_s, left)))
        for i in range(0, len(due), MAX_BATCH):
            chunk = [h for h, _ in due[i : i + MAX_BATCH]]
            lengths = [s for _, s in due[i : i + MAX_BATCH]]
            # SQS counts an extension from when it gets the call, so the new deadline is counted
            # from before the call: after it, a slow answer (retries, a 30 s read timeout) would
            # make the worker believe the message hidden for longer than it is.
            sent_at = time.monotonic()
            failures = self.batches.send(
                "extend",
                [Target(h.message_id, h.receipt, s) for h, s in zip(chunk, lengths, strict=True)],
                visibility_s=cfg.visibility_timeout_s,
                # the next tick is the retry of a transient failure
                attempts=1,
                # acknowledged since it was picked: its receipt handle is expected to be gone
                quiet=lambda j, chunk=chunk: not self._is_held(chunk[j]),
            )
            for h, length, failure in zip(chunk, lengths, failures, strict=True):
                if failure is None:
                    h.deadline = sent_at + length
                    self._count("extended", 1)
                elif failure.permanent:
                    h.gave_up_extending = True  # retrying every tick cannot help

    def _is_held(self, held: _Held) -> bool:
        with self._cond:
            return self._held.get(held.key) is held

    def _poll_depths(self) -> None:
        assert self.info is not None
        try:
            depths = queue_depths(self.client, self.info)
        except Exception as exc:
            instrument.log.warning("queue depth poll failed: %s", exc)
            return
        instrument.queue_depths(depths.backlog, depths.in_flight, depths.dead_letter)


def _attributes(message: Mapping[str, Any]) -> Mapping[str, Any]:
    attrs = message.get("Attributes")
    return attrs if isinstance(attrs, Mapping) else {}


def _message_id(message: Mapping[str, Any]) -> str:
    value = message.get("MessageId")
    return value[:128] if isinstance(value, str) and value else "unknown"


def _whole_number(value: Any) -> int | None:
    """A non-negative SQS attribute number ("3", "1700000000000"); None for anything else."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value)
    return None


def _describe(exc: BaseException) -> str:
    """``str(exc)`` in one line of at most 500 characters, even if ``__str__`` raises."""
    try:
        text = str(exc) or type(exc).__name__
    except Exception:
        text = f"<{type(exc).__name__}>"
    return " ".join(text.split())[:500]


def _last_words(what: str, exc: BaseException) -> None:
    """Report a failure of the failure handling itself, where no logging can be trusted."""
    with contextlib.suppress(BaseException):
        print(f"points-worker: {what} failed: {type(exc).__name__}", file=sys.stderr, flush=True)
