"""The rehearsal's typed model, shared by the runner, the controller and the report (none of
them imports another for its types): what a run is asked to do (:class:`Options`), what the
controller decided (:class:`Decision`), what the run produced (:class:`Outcome`), and which
alarm state changes are worth showing (:func:`is_reported_transition`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rehearsal.schedule import DEFAULT_CONFIG

if TYPE_CHECKING:
    from alarms import Evaluation
    from rehearsal.safety import SafetyReport

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT / "alarms" / "specs" / "points-service.yaml"
SCENARIOS = ("regression", "healthy", "breaking", "two-phase")
#: Scenarios whose green has the regression (the rate limiter on) that triggers a rollback.
REGRESSED = frozenset({"regression", "breaking"})
ROLLED_BACK, SUCCEEDED = "rolled_back", "succeeded"
OUTCOMES = (ROLLED_BACK, SUCCEEDED)


#: What a run removes from its ``--out`` before it starts, so that a re-run starts clean (logs
#: are appended to while running); ``points.db*`` too unless the store lives elsewhere.
STALE_OUTPUTS = (
    "*.log", "logs/*.log", "run.json", "result.json", "report.html", "evaluations.jsonl",
    "traces.jsonl", "requests.jsonl",
)  # fmt: skip
STALE_STORE = "points.db*"
#: Files only a rehearsal writes: a directory holding one (or whose direct subdirectory holds
#: one: a two-phase run's or a pipeline's stages) is a rehearsal's output, safe to clean.
RUN_MARKERS = ("run.json", "result.json", "alarms.json", "pipeline.json", "compare.json")


def stale_outputs(out: Path, *, store: bool = True) -> list[Path]:
    """The files a run into ``out`` removes before it starts (see :data:`STALE_OUTPUTS`)."""
    globs = (*STALE_OUTPUTS, STALE_STORE) if store else STALE_OUTPUTS
    return [p for g in globs for p in out.glob(g) if p.is_file() or p.is_symlink()]


def not_a_run_directory(out: Path) -> str | None:
    """Why a run must not clean ``out`` (``None`` when it may): it holds files a run would
    remove (``*.log``, ``points.db``, ``report.html``, ...) but nothing a rehearsal writes, so
    they are someone else's (``--out /var/log`` would otherwise delete the system's logs)."""
    try:
        if not out.is_dir():
            return None
        dirs = [out, *(d for d in out.iterdir() if d.is_dir() and not d.is_symlink())]
        if any((d / m).is_file() for d in dirs for m in RUN_MARKERS):
            return None
        theirs = sorted(str(p.relative_to(out)) for p in stale_outputs(out))
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if not theirs:
        return None
    shown = ", ".join(theirs[:3]) + (f" and {len(theirs) - 3} more" if len(theirs) > 3 else "")
    return (
        f"holds {shown} but no rehearsal output ({', '.join(RUN_MARKERS[:3])}): a run would "
        "remove them; choose a new or empty directory"
    )


@dataclass
class Options:
    """Everything a rehearsal run needs; the CLI fills it from its arguments."""

    scenario: str
    out: Path
    deployment_config: str = DEFAULT_CONFIG
    time_scale: float = 0.75
    bake_s: float = 60.0  # CodeDeploy's wait before terminating the original task set (scaled)
    spec: Path = DEFAULT_SPEC
    port: int = 0  # listener port; 0 picks a free one
    load_rps: float = 40.0
    warmup_s: float = 5.0  # blue alone before the deployment starts (not scaled)
    observe_after_s: float = 5.0  # load kept on after the decision, to show the recovery
    web_concurrency: int = 1
    threads: int = 4  # gthread workers: keep-alive to the listener, several requests at once
    app: str = "sample_api.wsgi:app"
    green_limit_rps: float = 2.0
    green_limit_burst: int = 1  # no head start: green queues from its first requests
    green_limit_max_wait_s: float = 2.0
    progress: bool | None = None  # None: updating line when stdout is a TTY
    seed: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)  # both versions
    # Per version (see rehearsal.versions): a release of the ledger format change (v1, v2
    # prepare, v3 activate; None: the spec's version labels, default formats), its own WSGI app
    # (None: ``app``) and environment (on top of ``extra_env``).
    blue_version: str | None = None
    green_version: str | None = None
    blue_app: str | None = None
    green_app: str | None = None
    blue_env: dict[str, str] = field(default_factory=dict)
    green_env: dict[str, str] = field(default_factory=dict)
    #: Green has the regression (None: the scenario decides: ``regression``, ``breaking``).
    green_regressed: bool | None = None
    #: Run a deployment the one-way-door guard refuses (the ``breaking`` scenario does).
    allow_one_way_door: bool = False
    #: The shared store (default ``out/points.db``, emptied first); a given file is kept, so a
    #: second deployment continues the first one's ledger (``two-phase``).
    db_path: Path | None = None
    #: Writes acknowledged before this run (an earlier phase), checked for data safety too.
    prior_writes: list[Any] = field(default_factory=list)
    judge: bool = True  # the statistical judge (rehearsal.judge) as a rollback trigger too
    alarm_rollback: bool = True  # False: the alarms are evaluated and shown, but roll nothing back
    alarm_profile: str = "rehearsal"  # the spec's profile: 10 s periods; "production": 60 s


@dataclass(frozen=True)
class Decision:
    """The controller's decision: roll back (a rollback alarm fired) or succeed (bake time over).

    ``decided_at`` is epoch seconds; ``alarm_time_s`` seconds after green first took traffic."""

    outcome: str  # ROLLED_BACK or SUCCEEDED
    decided_at: float
    alarms_firing: tuple[str, ...] = ()
    alarm_time_s: float | None = None
    green_percent_at_alarm: int | None = None

    @property
    def rolled_back(self) -> bool:
        return self.outcome == ROLLED_BACK

    @property
    def alarm(self) -> str | None:
        """The first rollback alarm found in ALARM (``None`` on success)."""
        return self.alarms_firing[0] if self.alarms_firing else None

    @property
    def survivor(self) -> str:
        """The version left serving: blue after a rollback, green after a success."""
        return "blue" if self.rolled_back else "green"

    @property
    def stopped(self) -> str:
        return "green" if self.rolled_back else "blue"


@dataclass
class Outcome:
    """What :func:`rehearsal.run` returns: the result document and where everything was written."""

    result: dict[str, Any]  # the result.json document
    report_path: Path
    safety: SafetyReport | None
    details: dict[str, Any]  # the run.json document
    writes: list[Any] = field(default_factory=list)  # acknowledged writes (timeline.Write)


def is_reported_transition(evaluation: Evaluation, watched: Collection[str]) -> bool:
    """A state change worth showing (progress lines, the report's table): any change of a
    watched (rollback) alarm, and any alarm going to ALARM."""
    return evaluation.changed and (evaluation.alarm in watched or evaluation.state == "ALARM")


def alarm_name_prefix(names: Sequence[str]) -> str:
    """The alarm names' common prefix up to a ``-`` (``points-service-``), for shorter labels."""
    if len(names) < 2:
        return ""
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    return prefix[: prefix.rfind("-") + 1] if "-" in prefix else ""


def cloudwatch_reject_lines(rejects: dict[str, Any] | None, limit: int = 5) -> list[str]:
    """What the end-of-run summary and the report say about the versions' EMF that CloudWatch
    would reject (``Collector.cloudwatch_rejects()``): ``[]`` when there was none, else a
    headline and up to ``limit`` of the evaluator's warnings."""
    if not rejects or not rejects.get("count"):
        return []
    warnings = list(rejects.get("warnings") or [])
    lines = [
        f"WARNING: CloudWatch would reject {rejects['count']} metric values the versions wrote;"
        " the alarms did not see them here, and would not see them in production."
    ]
    lines += [f"  - {w}" for w in warnings[:limit]]
    if len(warnings) > limit:
        lines.append(f"  - ... {len(warnings) - limit} more kinds in run.json")
    return lines
