"""``python -m rehearsal --target worker``: the worker's options, their checks and the run.

The options shared with the API rehearsal (``--scenario``, ``--time-scale``, ``--bake``, ``--out``,
``--expect``, ``--spec``, ``--no-progress``) keep their meaning; the API's traffic options are
refused with ``--target worker`` and the worker's with ``--target api``, each as one line.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rehearsal import _arguments as arguments
from rehearsal.model import cloudwatch_reject_lines
from rehearsal.rolling.schedule import HEALTHY_AFTER_RUNNING_S, RollingConfigError, plan

#: Option destinations of each target (refused with the other one).
API_ONLY = {
    "deployment_config": "--deployment-config",
    "max_minutes": "--max-minutes",
    "port": "--port",
    "rps": "--rps",
    "green_limit_rps": "--green-limit-rps",
    "app": "--app",
    "blue_version": "--blue-version",
    "green_version": "--green-version",
    "blue_app": "--blue-app",
    "green_app": "--green-app",
    "blue_env": "--blue-env",
    "green_env": "--green-env",
    "allow_one_way_door": "--allow-one-way-door",
    "judge": "--judge/--no-judge",  # the judge compares blue and green requests at the listener
}
#: The scenarios of the worker target (the API has more).
WORKER_SCENARIOS = ("regression", "healthy")
WORKER_ONLY = {
    "tasks": "--tasks",
    "min_healthy_percent": "--min-healthy-percent",
    "max_percent": "--max-percent",
    "rate": "--rate",
    "new_work_ms": "--new-work-ms",
    "delay_objective": "--delay-objective",
    "stop_timeout": "--stop-timeout",
}
DEFAULT_TIME_SCALE = 1.0
#: Upper bounds: the producer's rate (far above what 20 tasks on one machine absorb; an unbounded
#: one overflowed its schedule) and the worker's own limit on WORKER_SIMULATED_WORK_MS
#: (worker/_config.py), which a task would otherwise refuse at start.
MAX_RATE = 1000.0
#: ... and the lowest: one order every 10 s (below it a run may produce nothing to measure).
MIN_RATE = 0.1
MAX_NEW_WORK_MS = 600_000.0
#: Fargate's largest container stopTimeout (ECS API reference, ContainerDefinition.stopTimeout).
MAX_STOP_TIMEOUT_S = 120
#: ... which is whole seconds (an Integer in the API: 1.5 is not a stopTimeout ECS accepts);
#: below one, SIGKILL follows SIGTERM at once.
MIN_STOP_TIMEOUT_S = 1
_UNSET = object()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker target's options (defaults filled in by :func:`run`, so that an option given
    with the other target can be told from one left out)."""
    g = parser.add_argument_group("worker target (--target worker): an ECS rolling update")
    g.add_argument("--tasks", type=arguments.integer(1, 20), default=None, metavar="N",
                   help="desired count of worker tasks (default: 4)")  # fmt: skip
    g.add_argument("--min-healthy-percent", type=arguments.integer(0, 100), default=None, metavar="P",
                   help="ECS minimumHealthyPercent, rounded up (default: 100)")  # fmt: skip
    g.add_argument("--max-percent", type=arguments.integer(100, 200), default=None, metavar="P",
                   help="ECS maximumPercent, rounded down (default: 150)")  # fmt: skip
    g.add_argument("--rate", type=arguments.number(MIN_RATE, MAX_RATE), default=None, metavar="N",
                   help="order events per second from the producer (default: 20)")  # fmt: skip
    g.add_argument("--new-work-ms", type=arguments.number(0, MAX_NEW_WORK_MS, above=True), default=None, metavar="MS",
                   help="regression: the new version's slow downstream call per job (default: 1500)")  # fmt: skip
    g.add_argument("--delay-objective", type=arguments.number(0, arguments.MAX_DELAY_OBJECTIVE_S, above=True), default=None, metavar="SECONDS",
                   help="an order credited later than this after it was sent counts as harm "
                   "(default: 10)")  # fmt: skip
    g.add_argument("--stop-timeout", type=arguments.integer(MIN_STOP_TIMEOUT_S, MAX_STOP_TIMEOUT_S), default=None, metavar="SECONDS",
                   help="ECS stopTimeout: a stopped task gets SIGTERM, then SIGKILL this much "
                   "later (default: 30, as deploy/stack.yaml)")  # fmt: skip


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> set[str]:
    """Destinations of the options ``argv`` gives explicitly."""
    # Parse again with every default replaced by a marker (then restored).
    dests = {a.dest for a in parser._actions if a.dest not in ("help",)}
    saved = {d: parser.get_default(d) for d in dests}
    # An "append" option needs a list to append to: a fresh one, told apart by identity.
    markers = {d: [] if isinstance(saved[d], list) else _UNSET for d in dests}
    parser.set_defaults(**markers)
    try:
        ns = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    finally:
        parser.set_defaults(**saved)
    return {d for d in dests if getattr(ns, d, markers[d]) is not markers[d]}


def refused(target: str, given: set[str]) -> str | None:
    """The first option ``given`` that the ``target`` does not take, as an error message."""
    other = API_ONLY if target == "worker" else WORKER_ONLY
    for dest, option in other.items():
        if dest in given:
            owner = "api" if target == "worker" else "worker"
            return f"{option} is an option of --target {owner}, not --target {target}"
    return None


def run(args: argparse.Namespace, check_spec: Callable[[Path], str | None],
        unwritable: Callable[[Path], str | None]) -> int:  # fmt: skip
    """Validate the worker options (exit 2, one line), run, print the summary; the exit status."""
    from botocore.exceptions import BotoCoreError, ClientError

    from rehearsal.rolling.model import WorkerOptions
    from rehearsal.rolling.runner import run_worker
    from rehearsal.supervisor import Interrupted

    if args.scenario not in WORKER_SCENARIOS:
        print(
            f"rehearsal: error: --scenario {args.scenario} is not a worker scenario "
            f"(--target worker takes {' or '.join(WORKER_SCENARIOS)})",
            file=sys.stderr,
        )
        return 2
    tasks = args.tasks if args.tasks is not None else 4
    low = args.min_healthy_percent if args.min_healthy_percent is not None else 100
    high = args.max_percent if args.max_percent is not None else 150
    try:
        plan(tasks, low, high)
    except RollingConfigError as exc:
        print(f"rehearsal: error: {exc}", file=sys.stderr)
        return 2
    scale = args.time_scale if args.time_scale is not None else DEFAULT_TIME_SCALE
    if not all(math.isfinite(x * scale) for x in (HEALTHY_AFTER_RUNNING_S, args.bake or 0.0)):
        # e.g. --time-scale 1e308: an infinite wait would run forever and write Infinity (not
        # JSON) into the outputs.
        print(f"rehearsal: error: --time-scale {scale!r} makes ECS's {HEALTHY_AFTER_RUNNING_S:g} s "
              "healthy wait or the bake overflow to infinity", file=sys.stderr)  # fmt: skip
        return 2
    problem = check_spec(args.spec)
    if problem:
        print(f"rehearsal: error: {problem}", file=sys.stderr)
        return 2
    from alarms import load_spec

    if load_spec(str(args.spec)).worker is None:
        print(f"rehearsal: error: alarm spec {str(args.spec)!r} has no worker section",
              file=sys.stderr)  # fmt: skip
        return 2
    problem = unwritable(args.out)
    if problem:
        print(f"rehearsal: error: --out {str(args.out)!r}: {problem}", file=sys.stderr)
        return 2
    options = WorkerOptions(
        scenario=args.scenario,
        out=args.out,
        tasks=tasks,
        min_healthy_percent=low,
        max_percent=high,
        time_scale=scale,
        bake_s=args.bake,
        spec=args.spec,
        progress=False if args.no_progress else None,
    )
    for dest, field in (("rate", "rate"), ("new_work_ms", "new_work_ms"),
                        ("delay_objective", "delay_objective_s"),
                        ("stop_timeout", "stop_timeout_s")):  # fmt: skip
        if getattr(args, dest) is not None:
            setattr(options, field, getattr(args, dest))
    try:
        outcome = run_worker(options)
    except (Interrupted, KeyboardInterrupt):
        print("rehearsal: interrupted; every child process was stopped", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, TimeoutError, OSError, BotoCoreError, ClientError) as exc:
        print(f"rehearsal: failed: {exc}", file=sys.stderr)
        return 1
    r = outcome.result
    print(summary(outcome))
    status = 0
    if outcome.exactly_once is None or not outcome.exactly_once.ok:
        status = 1
    if args.expect and r["outcome"] != args.expect:
        print(f"rehearsal: expected {args.expect}, got {r['outcome']}", file=sys.stderr)
        status = 1
    return status


def summary(outcome: object) -> str:
    """The end-of-run summary for people."""
    r = outcome.result  # type: ignore[attr-defined]
    dep, h = r["deployment"], r["harm"]
    lines = [""]
    if r["outcome"] == "rolled_back":
        lines.append(
            f"ROLLED BACK: {r['alarm']} went to ALARM; decision {r['alarm_time_s']} s after the "
            f"first new task started, in round {r['round_at_decision']}/{len(dep['rounds'])}, "
            f"{r['replaced_at_decision']} of {dep['desired_count']} old tasks replaced."
        )
    else:
        lines.append("SUCCEEDED: no rollback alarm fired; every task runs the new version.")
    eo = outcome.exactly_once  # type: ignore[attr-defined]
    if eo is not None:
        lines.append(eo.describe())
        lines.extend(f"  - {p}" for p in eo.problems[:10])
    elif unreadable := outcome.details.get("store_unreadable"):  # type: ignore[attr-defined]
        lines.append(f"Exactly-once NOT CHECKED: the store could not be read ({unreadable}).")
    lines.append(
        f"Harm: {h['delayed_past_objective']} of {r['orders_produced']} orders credited later "
        f"than {h['objective_s']} s (or never), {h['dead_lettered']} dead-lettered, "
        f"{h['credited_twice']} credited twice"
        + (
            "; the store could not be read, so credits are the tasks' log lines'."
            if h["credits_from"] == "log lines"
            else f"; {h['credit_log_lines_missing']} credit times from the ledger (log line lost)."
        )
    )
    lines.extend(cloudwatch_reject_lines(r.get("cloudwatch_rejects")))
    out = outcome.report_path.parent  # type: ignore[attr-defined]
    lines.append(f"Result: {out / 'result.json'}")
    lines.append(
        f"Replay the alarms offline: {shlex.quote(sys.executable)} -m alarms replay --alarms "
        f"{shlex.quote(str(out / 'alarms.json'))} --emf {shlex.quote(str(out / 'emf.jsonl'))}"
    )
    lines.append(f"Report: {outcome.report_path}")  # type: ignore[attr-defined]
    return "\n".join(lines)
