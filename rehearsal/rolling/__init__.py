"""The worker's rolling update with deployment-alarm rollback, rehearsed on one machine.

``python -m rehearsal --target worker --scenario regression|healthy``: moto's SQS server, a
steady order producer, real ``python -m worker`` tasks replaced in batches as ECS's rolling
update does (:mod:`rehearsal.rolling.schedule`), the worker alarms generated from the spec
evaluated live on the tasks' EMF, rollback on ALARM, the exactly-once check and the report.
"""

from rehearsal.rolling.exactly_once import ExactlyOnceReport
from rehearsal.rolling.exactly_once import check as check_exactly_once
from rehearsal.rolling.model import RolloutDecision, WorkerOptions, WorkerOutcome
from rehearsal.rolling.runner import run_worker
from rehearsal.rolling.schedule import (
    HEALTHY_AFTER_RUNNING_S,
    Limits,
    RollingConfigError,
    Round,
    circuit_breaker_threshold,
    limits,
    plan,
)

__all__ = [
    "HEALTHY_AFTER_RUNNING_S",
    "ExactlyOnceReport",
    "Limits",
    "RollingConfigError",
    "RolloutDecision",
    "Round",
    "WorkerOptions",
    "WorkerOutcome",
    "check_exactly_once",
    "circuit_breaker_threshold",
    "limits",
    "plan",
    "run_worker",
]
