"""The worker's only door to ``telemetry``: USE metrics, per-job JSON logs and spans.

``telemetry`` promises never to raise into application code, so these are thin: they exist to
keep metric names and the job's span name in one place.
"""

from __future__ import annotations

import logging

import telemetry

DEFAULT_SERVICE = "points-worker"
#: Name of the CONSUMER span (and of the ``job`` log field) for one message.
JOB_NAME = "order.completed"

log = logging.getLogger("worker")


def configure(slots: int) -> None:
    """Start telemetry for this process; ``slots`` (job concurrency) is utilization's 100 %."""
    telemetry.configure(default_service=DEFAULT_SERVICE, worker_slots=slots)
    # botocore logs "Found credentials in environment variables." and the like at INFO
    logging.getLogger("botocore").setLevel(logging.WARNING)


def shutdown() -> None:
    """Flush metrics, logs and spans (also registered atexit by telemetry)."""
    telemetry.shutdown()


def job(message_id: str, order_id: str | None, receive_count: int) -> telemetry.Job:
    """One job: Jobs/JobErrors/JobDuration, busy time for WorkerUtilization, a CONSUMER span
    (child of the current context: the producer's trace) and ``message_id``/``order_id`` on
    every log line written inside it. Set ``.failed = True`` to count a handled failure."""
    return telemetry.job(
        JOB_NAME, message_id=message_id, order_id=order_id, receive_count=receive_count
    )


def dead_lettered() -> None:
    """One message given up on: poison or failed on its last allowed receive, bound for the DLQ."""
    telemetry.put_metric("DeadLettered", 1)


def message_age(seconds: float) -> None:
    telemetry.record_message_age(seconds)


def queue_depths(backlog: int, in_flight: int, dead_letter: int | None) -> None:
    telemetry.report_queue(backlog=backlog, in_flight=in_flight, dead_letter=dead_letter)
