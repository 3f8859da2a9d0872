"""``python -m rehearsal``: a blue/green deployment with alarm-triggered rollback on one machine
(``--target worker``: the worker's ECS rolling update, :mod:`rehearsal.rolling`).

Exit status: 0 done (and as expected); 1 the outcome differs from ``--expect``, or the run
failed; 2 bad arguments or spec (one line on stderr); 3 the data safety check failed (after a
rollback: the rollback was not safe, e.g. across a one-way door); 4 the one-way-door guard
refused the deployment before anything started (one line on stderr); 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import Any

from points import PRESETS
from rehearsal import _arguments as arguments
from rehearsal import schedule as schedules
from rehearsal import versions
from rehearsal.files import claim
from rehearsal.harm import describe as describe_harm
from rehearsal.judge import what_fired
from rehearsal.model import (
    DEFAULT_SPEC,
    OUTCOMES,
    SCENARIOS,
    Options,
    Outcome,
    cloudwatch_reject_lines,
    not_a_run_directory,
)
from rehearsal.rolling import cli as worker_cli
from rehearsal.runner import run
from rehearsal.supervisor import Interrupted
from rehearsal.versions import OneWayDoor
from sample_api.config import RATE_LIMIT_RPS_RANGE

#: Exit statuses (see the module docstring).
EXIT_MISMATCH, EXIT_USAGE, EXIT_UNSAFE, EXIT_REFUSED, EXIT_INTERRUPTED = 1, 2, 3, 4, 130


#: green's RATE_LIMIT_RPS: the range the service itself accepts (it would refuse to start)
_green_limit = arguments.number(*RATE_LIMIT_RPS_RANGE)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return value


def _port_free(port: int) -> bool:
    """Whether the listener could bind ``127.0.0.1:port`` now (same options as the listener)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _read_spec(path: Path) -> tuple[Any, str | None]:
    """``(spec, None)``, or ``(None, why the alarm spec cannot be used)``."""
    if not path.is_file():
        why = "is not a file" if path.exists() else "does not exist"
        return None, f"alarm spec {str(path)!r} {why}"
    try:
        from alarms import load_spec

        return load_spec(str(path)), None
    except (ValueError, OSError) as exc:  # SpecError is a ValueError
        return None, f"alarm spec {str(path)!r}: {exc}"


def _unwritable(out: Path) -> str | None:
    """Why the output directory cannot be used (``None`` if it can); creates it, and holds it
    for this process (:func:`rehearsal.files.claim`): one run at a time in a directory."""
    if out.exists() and not out.is_dir():
        return "is not a directory"
    foreign = not_a_run_directory(out)
    if foreign:
        return foreign
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".rehearsal-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"cannot create or write it ({exc.strerror or exc})"
    return claim(out)


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    p = arguments.Parser(
        prog="python -m rehearsal",
        description=(
            "Rehearse a CodeDeploy blue/green deployment of the points service on this machine: "
            "blue (v1) and green (v2) under gunicorn, a weighted listener, Locust load, the "
            "alarms generated from the spec evaluated live, and an automatic rollback. With "
            "--target worker: the SQS worker's ECS rolling update on moto's SQS server, rolled "
            "back by its USE alarms."
        ),
    )
    p.add_argument("--target", choices=("api", "worker"), default="api",
                   help="api: blue/green of the points service (CodeDeploy); worker: rolling "
                   "update of the SQS worker (ECS) (default: %(default)s)")  # fmt: skip
    p.add_argument("--scenario", required=True, choices=SCENARIOS,
                   help="regression: green has the rate limiter on (worker: the new version's "
                   "jobs make a slow downstream call); healthy: it does not; "
                   "breaking: v1 -> v3 with the regression (a rollback across a one-way door); "
                   "two-phase: v1 -> v2 (prepare), then v2 -> v3 with the regression (both API "
                   "only)")  # fmt: skip
    p.add_argument(
        "--deployment-config",
        default=schedules.DEFAULT_CONFIG,
        metavar="NAME",
        help=(
            "a CodeDeployDefault.ECS* configuration ("
            + ", ".join(n.removeprefix("CodeDeployDefault.") for n in schedules.PREDEFINED)
            + ") or custom:linear:<percent>:<interval_s>, custom:canary:<percent>:<interval_s>, "
            "custom:allatonce, or an ECS native strategy: ecs:blue_green, "
            "ecs:linear[:<stepPercent>[:<stepBakeTimeInMinutes>]], "
            "ecs:canary[:<canaryPercent>[:<canaryBakeTimeInMinutes>]] (default: %(default)s)"
        ),
    )
    p.add_argument("--time-scale", type=arguments.time_scale, default=None, metavar="X",
                   help="multiply every deployment duration by X (default: 0.75; worker: 1)")  # fmt: skip
    p.add_argument("--bake", type=arguments.bake, default=None, metavar="SECONDS",
                   help="wait after 100%% green before terminating blue, alarms still watched; "
                   "scaled too (default: 60; worker: the rollback alarms' longest evaluation "
                   "window, unscaled)")  # fmt: skip
    p.add_argument("--max-minutes", type=arguments.number(0, arguments.MAX_MINUTES, above=True),
                   default=None, metavar="M",
                   help="refuse a deployment whose traffic shifting and bake, scaled, take longer "
                   "(default: 60)")  # fmt: skip
    p.add_argument("--out", type=arguments.out_dir, default=Path("out/rehearsal"), metavar="DIR",
                   help="output directory (default: %(default)s)")  # fmt: skip
    p.add_argument("--expect", choices=OUTCOMES,
                   help="exit 1 unless the outcome is this")  # fmt: skip
    p.add_argument("--spec", type=Path, default=DEFAULT_SPEC, metavar="FILE",
                   help="alarm spec (default: the packaged alarms/specs/points-service.yaml)")  # fmt: skip
    p.add_argument("--port", type=_port, default=0,
                   help="listener port on 127.0.0.1 (default: a free one)")  # fmt: skip
    p.add_argument("--rps", type=arguments.rps, default=40.0,
                   help="load through the listener, requests/s (default: %(default)s)")  # fmt: skip
    p.add_argument("--green-limit-rps", type=_green_limit, default=2.0,
                   help="green's RATE_LIMIT_RPS in the regression scenario (default: %(default)s)")  # fmt: skip
    p.add_argument("--app", type=arguments.wsgi_app, default="sample_api.wsgi:app", metavar="MODULE:NAME",
                   help="WSGI app both versions run under gunicorn (default: %(default)s)")  # fmt: skip
    versions = ", ".join(f"{n} ({f.describe()})" for n, f in PRESETS.items())
    for side in ("blue", "green"):
        p.add_argument(f"--{side}-version", choices=sorted(PRESETS), default=None,
                       help=f"the ledger release {side} runs: {versions} (default: the "
                       "scenario's)" if side == "blue" else f"the ledger release {side} runs")  # fmt: skip
        p.add_argument(f"--{side}-app", type=arguments.wsgi_app, default=None, metavar="MODULE:NAME",
                       help=f"WSGI app {side} runs (default: --app)")  # fmt: skip
        p.add_argument(f"--{side}-env", type=_assignment, action="append", default=[],
                       metavar="NAME=VALUE", help=f"environment of {side} only (repeatable)")  # fmt: skip
    p.add_argument("--allow-one-way-door", action="store_true",
                   help="run a deployment the one-way-door guard refuses (breaking does)")  # fmt: skip
    p.add_argument("--judge", action=argparse.BooleanOptionalAction, default=True,
                   help="also roll back when the statistical judge (green against blue, "
                   "Mann-Whitney U, every second) fails green (default: on)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true",
                   help="plain progress lines even on a terminal")  # fmt: skip
    worker_cli.add_arguments(p)
    return p


def _spec_problem(spec: Path) -> str | None:
    """Why the alarm spec cannot be used (``None`` if it can)."""
    return _read_spec(spec)[1]


#: Subcommands: ``python -m rehearsal judge DIR``, ``python -m rehearsal compare ...``.
SUBCOMMANDS = {"judge": "rehearsal.judge_cli", "compare": "rehearsal.compare"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pipeline"]:  # `python -m rehearsal pipeline ...` (rehearsal/pipeline.py)
        return pipeline_main(argv[1:])
    if argv[:1] and argv[0] in SUBCOMMANDS:  # `judge DIR`, `compare ...`
        import importlib

        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    not_here = worker_cli.refused(args.target, worker_cli.given_options(parser, argv))
    if not_here:
        parser.error(not_here)
    if args.target == "worker":
        return worker_cli.run(args, _spec_problem, _unwritable)
    args.time_scale = 0.75 if args.time_scale is None else args.time_scale
    args.bake = 60.0 if args.bake is None else args.bake
    chosen = [f"--{s}-version" for s in ("blue", "green") if getattr(args, f"{s}_version")]
    if args.scenario == "two-phase" and chosen:
        print(
            f"rehearsal: error: {chosen[0]} does not apply to --scenario two-phase "
            "(it runs v1 -> v2 -> v3)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    # The help lists the predefined names without their prefix; accept them so.
    args.deployment_config = schedules.canonical(args.deployment_config)
    try:
        schedule = schedules.build(
            args.deployment_config, time_scale=args.time_scale, bake_s=args.bake
        )
    except schedules.ConfigError as exc:
        print(f"rehearsal: error: {exc}", file=sys.stderr)
        return 2
    max_minutes = arguments.DEFAULT_MAX_MINUTES if args.max_minutes is None else args.max_minutes
    if schedule.total_s > max_minutes * 60:
        # a custom interval of a day at --time-scale 1000 was accepted: ~270 years
        print(
            f"rehearsal: error: {args.deployment_config} at --time-scale {args.time_scale:g} "
            f"with --bake {args.bake:g} takes {_minutes(schedule.total_s)} minutes to shift and "
            f"bake, above --max-minutes {max_minutes:g}; lower --time-scale or --bake, or raise "
            "--max-minutes",
            file=sys.stderr,
        )
        return 2
    spec, problem = _read_spec(args.spec)
    if problem:
        print(f"rehearsal: error: {problem}", file=sys.stderr)
        return 2
    refusal = _refusal(args, spec)
    if refusal is not None:
        print(f"rehearsal: {refusal[1]}", file=sys.stderr)
        return refusal[0]
    if args.port and not _port_free(args.port):
        print(
            f"rehearsal: error: --port {args.port}: 127.0.0.1:{args.port} is in use",
            file=sys.stderr,
        )
        return 2
    # Last, once every other argument is known good: it creates the directory.
    problem = _unwritable(args.out)
    if problem:
        print(f"rehearsal: error: --out {str(args.out)!r}: {problem}", file=sys.stderr)
        return 2
    options = Options(
        scenario=args.scenario,
        out=args.out,
        deployment_config=args.deployment_config,
        time_scale=args.time_scale,
        bake_s=args.bake,
        spec=args.spec,
        port=args.port,
        load_rps=args.rps,
        green_limit_rps=args.green_limit_rps,
        app=args.app,
        progress=False if args.no_progress else None,
        blue_version=args.blue_version,
        green_version=args.green_version,
        blue_app=args.blue_app,
        green_app=args.green_app,
        blue_env=dict(args.blue_env),
        green_env=dict(args.green_env),
        allow_one_way_door=args.allow_one_way_door,
        judge=args.judge,
    )
    try:
        outcome = run(options)
    except OneWayDoor as exc:
        print(f"rehearsal: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (Interrupted, KeyboardInterrupt):
        print("rehearsal: interrupted; every child process was stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, RuntimeError, TimeoutError, OSError) as exc:
        print(f"rehearsal: failed: {exc}", file=sys.stderr)
        return EXIT_MISMATCH
    print(summary(outcome))
    if args.expect and outcome.result["outcome"] != args.expect:
        print(
            f"rehearsal: expected {args.expect}, got {outcome.result['outcome']}", file=sys.stderr
        )
        return EXIT_MISMATCH
    if outcome.safety is not None and not outcome.safety.ok:
        return EXIT_UNSAFE
    return 0


def _refusal(args: argparse.Namespace, spec: Any) -> tuple[int, str] | None:
    """Checked before anything starts: two versions the alarms can tell apart (exit 2), and
    the one-way-door guard (exit 4 unless overridden)."""
    # two-phase: each of its deployments (v1 -> v2, v2 -> v3) as run_two_phase makes it; both
    # are safe as released, but --blue-env/--green-env may declare other formats.
    phases = (
        [(blue, green) for _, blue, green, _ in versions.TWO_PHASES]
        if args.scenario == "two-phase"
        else [(args.blue_version, args.green_version)]
    )
    for blue_version, green_version in phases:
        probe = Options(
            scenario=args.scenario,
            out=args.out,
            blue_version=blue_version,
            green_version=green_version,
            # the versions' own environment may declare formats: the guard judges those
            blue_env=dict(args.blue_env),
            green_env=dict(args.green_env),
        )
        try:
            blue, green = versions.sides(probe, spec.versions.blue, spec.versions.green)
        except ValueError as exc:
            return EXIT_USAGE, f"error: {exc}"
        door = versions.guard(blue, green)
        # run_two_phase never crosses a door (the point of the scenario), overridden or not
        allowed = args.scenario == "breaking" or (
            args.allow_one_way_door and args.scenario != "two-phase"
        )
        if not (door.ok or allowed):
            return EXIT_REFUSED, f"{door.message} (--allow-one-way-door runs it anyway)"
    return None


def _python() -> str:
    """This interpreter as the user can type it (``.venv/bin/python`` after ``make demo``):
    a bare ``python`` may not be the one with the toolkit installed."""
    rel = os.path.relpath(sys.executable)
    return shlex.quote(sys.executable if rel.startswith("..") else rel)


def summary(outcome: Outcome) -> str:
    """The end-of-run summary for people."""
    r, d = outcome.result, outcome.details
    lines = [""]
    if r["outcome"] == "rolled_back":
        lines.append(
            f"ROLLED BACK: {what_fired(r['alarm'])}; decision {r['alarm_time_s']} s after green "
            f"first took traffic, at green {d.get('green_percent_at_alarm')}%."
        )
    else:
        lines.append("SUCCEEDED: no rollback alarm fired; all traffic on green, blue terminated.")
    door = r.get("one_way_door_guard") or {}
    if not door.get("ok", True):
        lines.append(
            "ONE-WAY DOOR: green writes a ledger format blue cannot read, so once green had "
            f"written no rollback to blue could be safe (guard overridden: {door['message']})."
        )
    for phase in r.get("phases", []):
        safe = {True: "rollback safe", False: "rollback NOT safe", None: "no rollback"}
        lines.append(
            f"  {phase['phase']}: {phase['versions'].get('blue')} -> "
            f"{phase['versions'].get('green')} {phase['outcome']} "
            f"({safe[phase['rollback_safe']]}); report {phase['out']}/report.html"
        )
    if r.get("harm"):
        lines.append(describe_harm(r["harm"]))
    s = outcome.safety
    if s is not None:
        lines.append(s.describe())
        lines.extend(f"  - {p}" for p in s.problems[:10])
    lines.append(f"Requests through the listener: {r['requests']}, server errors: {r['errors']}.")
    lines.extend(cloudwatch_reject_lines(r.get("cloudwatch_rejects")))
    out = outcome.report_path.parent
    lines.append(f"Result: {out / 'result.json'}")
    if r.get("phases"):  # two-phase: the alarms of the last deployment
        out = out / r["phases"][-1]["out"]
    lines.append(
        f"Replay the alarms offline: {_python()} -m alarms replay --alarms "
        f"{shlex.quote(str(out / 'alarms.json'))} --emf {shlex.quote(str(out / 'emf.jsonl'))}"
    )
    lines.append(f"Report: {outcome.report_path}")
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    """``seconds`` in minutes, rounded up to a tenth: above a limit never prints as it."""
    return f"{math.ceil(round(seconds / 6, 6)) / 10:.1f}"


def build_pipeline_parser() -> argparse.ArgumentParser:
    p = arguments.Parser(
        prog="python -m rehearsal pipeline",
        description="The release pipeline's stages (pre-production, then production) as "
        "consecutive rehearsals of one release; the first stage that rolls back stops it.",
    )
    p.add_argument("--scenario", required=True, choices=SCENARIOS)
    p.add_argument("--stage", action="append", default=[], metavar="NAME[=CONFIG[@BAKE_S]]",
                   help="a stage, in order (repeat); default: pre-production, production")  # fmt: skip
    p.add_argument("--time-scale", type=arguments.time_scale, default=0.75, metavar="X")
    p.add_argument("--bake", type=arguments.bake, default=60.0, metavar="SECONDS",
                   help="bake of stages that do not give their own (scaled)")  # fmt: skip
    p.add_argument("--max-minutes", type=arguments.number(0, arguments.MAX_MINUTES, above=True),
                   default=arguments.DEFAULT_MAX_MINUTES, metavar="M",
                   help="refuse stages whose traffic shifting and bakes, scaled, take longer in "
                   "all (default: %(default)g)")  # fmt: skip
    p.add_argument("--out", type=arguments.out_dir, default=Path("out/pipeline"), metavar="DIR")
    p.add_argument("--spec", type=Path, default=DEFAULT_SPEC, metavar="FILE")
    p.add_argument("--rps", type=arguments.rps, default=40.0)
    p.add_argument("--green-limit-rps", type=_green_limit, default=2.0)
    p.add_argument("--expect", metavar="released|STAGE",
                   help="exit 1 unless the release is released, or stopped at STAGE")  # fmt: skip
    p.add_argument("--no-progress", action="store_true")
    return p


def pipeline_main(argv: list[str]) -> int:
    """``python -m rehearsal pipeline ...``. Exit status: 0 done (and as ``--expect`` says), 1 the
    end differs from ``--expect`` or a stage's run failed, 2 bad arguments (one line), 130
    interrupted."""
    from rehearsal.pipeline import DEFAULT_STAGES, Stage, final_outcome, run_pipeline, table

    args = build_pipeline_parser().parse_args(argv)
    try:
        stages = [Stage.parse(s) for s in args.stage] or list(DEFAULT_STAGES)
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise schedules.ConfigError(f"stage names must differ: {', '.join(names)}")
        total_s = 0.0
        for stage in stages:
            bake = args.bake if stage.bake_s is None else stage.bake_s
            total_s += schedules.build(
                stage.deployment_config, time_scale=args.time_scale, bake_s=bake
            ).total_s
    except schedules.ConfigError as exc:
        print(f"rehearsal pipeline: error: {exc}", file=sys.stderr)
        return 2
    if total_s > args.max_minutes * 60:
        # as for a single run: a stage of custom:linear:1:86400 at --time-scale 1000 never ends
        print(f"rehearsal pipeline: error: the {len(stages)} stage(s) at --time-scale "
              f"{args.time_scale:g} take {_minutes(total_s)} minutes to shift and bake, above "
              f"--max-minutes {args.max_minutes:g}; lower --time-scale or the bakes, or raise "
              "--max-minutes", file=sys.stderr)  # fmt: skip
        return 2
    if args.expect is not None and args.expect != "released" and args.expect not in names:
        print(f"rehearsal pipeline: error: --expect {args.expect!r} is neither 'released' nor a "
              f"stage ({', '.join(names)})", file=sys.stderr)  # fmt: skip
        return 2
    problem = _read_spec(args.spec)[1]
    if problem is None and (why := _unwritable(args.out)):
        problem = f"--out {str(args.out)!r}: {why}"
    if problem:
        print(f"rehearsal pipeline: error: {problem}", file=sys.stderr)
        return 2
    base = Options(
        scenario=args.scenario,
        out=args.out,
        time_scale=args.time_scale,
        bake_s=args.bake,
        spec=args.spec,
        load_rps=args.rps,
        green_limit_rps=args.green_limit_rps,
        progress=False if args.no_progress else None,
    )
    try:
        rows = run_pipeline(stages, base, report=lambda line: print(line, flush=True))
    except (Interrupted, KeyboardInterrupt):
        print("rehearsal pipeline: interrupted; every child process was stopped", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, TimeoutError, OSError) as exc:
        print(f"rehearsal pipeline: failed: {exc}", file=sys.stderr)
        return 1
    end = final_outcome(rows)
    print()
    print(table(rows))
    print(f"\nPipeline: {end}. Rows: {args.out / 'pipeline.json'}")
    if args.expect is not None:
        wanted = "released" if args.expect == "released" else f"stopped at {args.expect}"
        if end != wanted:
            print(f"rehearsal pipeline: expected {wanted}, got {end}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before any child process was started
        print("rehearsal: interrupted", file=sys.stderr)
        sys.exit(130)
