"""The worker rehearsal's typed model, shared by its runner and its report (neither imports the
other for its types): what a run is asked to do (:class:`WorkerOptions`), what was decided
(:class:`RolloutDecision`), what the tasks said (:class:`Credits`), what the report needs
(:class:`RunData`) and what the run returns (:class:`WorkerOutcome`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rehearsal.model import DEFAULT_SPEC, ROLLED_BACK

if TYPE_CHECKING:
    from alarms import Evaluation
    from rehearsal.rolling.exactly_once import ExactlyOnceReport
    from rehearsal.rolling.producer import Produced


@dataclass
class WorkerOptions:
    """Everything a worker rehearsal needs; ``python -m rehearsal --target worker`` fills it."""

    scenario: str
    out: Path
    tasks: int = 4  # the service's desiredCount
    min_healthy_percent: int = 100
    max_percent: int = 150
    time_scale: float = 1.0  # multiplies ECS's 40 s healthy wait and --bake, never alarm periods
    bake_s: float | None = None  # None: the longest rollback alarm's evaluation window, unscaled
    spec: Path = DEFAULT_SPEC
    rate: float = 20.0  # orders per second from the producer
    concurrency: int = 2  # WORKER_CONCURRENCY of every task
    batch_size: int = 5  # WORKER_BATCH_SIZE
    visibility_timeout_s: int = 10  # WORKER_VISIBILITY_TIMEOUT_S (the heartbeat extends it)
    new_work_ms: float = 1500.0  # regression: the new version's slow downstream call per job
    stop_timeout_s: float = 30.0  # ECS stopTimeout: SIGTERM, then SIGKILL (deploy/stack.yaml)
    delay_objective_s: float = 10.0  # an order credited later than this after it was sent is harm
    warmup_s: float = 10.0  # the old revision alone before the deployment starts (not scaled)
    progress: bool | None = None
    seed: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutDecision:
    """Rolled back (a rollback alarm in ALARM) or succeeded (bake time over)."""

    outcome: str
    decided_at: float
    alarms_firing: tuple[str, ...] = ()
    alarm_time_s: float | None = None  # seconds after the first new task started
    new_tasks: int = 0  # tasks of the new revision running at the decision
    replaced: int = 0  # old tasks stopped by then
    round: int = 0  # 1-based round during which the decision came

    @property
    def rolled_back(self) -> bool:
        return self.outcome == ROLLED_BACK

    @property
    def alarm(self) -> str | None:
        return self.alarms_firing[0] if self.alarms_firing else None


@dataclass
class Credits:
    """What the tasks' log lines say about each order: first credit time, and the rest. A task
    SIGKILLed (stopTimeout) loses the lines still in its output buffer, so an order the store
    credited can lack its line: the harm takes such credits from the store's ledger."""

    #: order_id -> epoch s of its first ``credited`` or ``duplicate`` line (done, as far as the
    #: lines tell)
    first: dict[str, float] = field(default_factory=dict)
    #: order_id -> epoch s of its first ``credited`` line only (a ``duplicate`` line comes later)
    credited_at: dict[str, float] = field(default_factory=dict)
    by_version: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    dead_lettered: int = 0
    failed: int = 0


@dataclass
class WorkerOutcome:
    """What :func:`run_worker` returns."""

    result: dict[str, Any]
    report_path: Path
    exactly_once: ExactlyOnceReport | None
    details: dict[str, Any]


@dataclass
class RunData:
    """What the report needs of a finished run."""

    options: WorkerOptions
    versions: tuple[str, str]  # (old, new)
    rollback_alarms: list[str]
    healthy_s: float
    bake_s: float
    t0: float | None
    monitoring: bool
    produced: Sequence[Produced]
    send_failures: int
    credits: Credits
    evaluations: Sequence[Evaluation]
    emf_lines: dict[str, int]
    #: The tasks' metric values CloudWatch would reject (``Collector.cloudwatch_rejects()``).
    cloudwatch_rejects: dict[str, Any] = field(default_factory=dict)
    #: order_id -> epoch s of its first grant in the store's ledger (``None``: time unreadable),
    #: ``exactly_once.grant_times``; ``None`` when the store could not be read.
    ledger_credits: dict[str, float | None] | None = None
