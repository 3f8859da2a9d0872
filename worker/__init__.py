"""SQS points worker: grants points for "order completed" events, at least once, idempotently.

Run it with ``python -m worker`` (or the ``points-worker`` console script); see docs/worker.md.
"""

from points.settings import ConfigError
from worker._config import WorkerConfig
from worker._events import EVENT_TYPE, EVENT_VERSION, PoisonMessage, make_event, parse_event
from worker._runner import Stats, Worker
from worker._sample import send_sample
from worker._sqs import QueueInfo, describe_queue, make_client, setup_queues

__all__ = [
    "EVENT_TYPE",
    "EVENT_VERSION",
    "ConfigError",
    "PoisonMessage",
    "QueueInfo",
    "Stats",
    "Worker",
    "WorkerConfig",
    "describe_queue",
    "make_client",
    "make_event",
    "parse_event",
    "send_sample",
    "setup_queues",
]
