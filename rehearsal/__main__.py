"""``python -m rehearsal``: a blue/green deployment with alarm-triggered rollback on one machine.

Exit status: 0 done (and as expected), 1 the outcome differs from ``--expect`` or the rollback
data safety check failed (or the run failed), 2 bad arguments or spec (one line on stderr), 130
interrupted.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import NoReturn

from rehearsal import schedule as schedules
from rehearsal.model import DEFAULT_SPEC, OUTCOMES, SCENARIOS, Options, Outcome
from rehearsal.runner import run
from rehearsal.supervisor import Interrupted


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One clear line, not argparse's usage block.
        self.exit(2, f"rehearsal: error: {message} (see --help)\n")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


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


def _unwritable(out: Path) -> str | None:
    """Why the output directory cannot be used (``None`` if it can); creates it."""
    if out.exists() and not out.is_dir():
        return "is not a directory"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".rehearsal-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"cannot create or write it ({exc.strerror or exc})"
    return None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m rehearsal",
        description=(
            "Rehearse a CodeDeploy blue/green deployment of the points service on this machine: "
            "blue (v1) and green (v2) under gunicorn, a weighted listener, Locust load, the "
            "alarms generated from the spec evaluated live, and an automatic rollback."
        ),
    )
    p.add_argument("--scenario", required=True, choices=SCENARIOS,
                   help="regression: green has the rate limiter on; healthy: it does not")  # fmt: skip
    p.add_argument(
        "--deployment-config",
        default=schedules.DEFAULT_CONFIG,
        metavar="NAME",
        help=(
            "a CodeDeployDefault.ECS* configuration ("
            + ", ".join(n.removeprefix("CodeDeployDefault.") for n in schedules.PREDEFINED)
            + ") or custom:linear:<percent>:<interval_s>, custom:canary:<percent>:<interval_s>, "
            "custom:allatonce (default: %(default)s)"
        ),
    )
    p.add_argument("--time-scale", type=_positive, default=0.75, metavar="X",
                   help="multiply every deployment duration by X (default: %(default)s)")  # fmt: skip
    p.add_argument("--bake", type=_non_negative, default=60.0, metavar="SECONDS",
                   help="wait after 100%% green before terminating blue, alarms still watched; "
                   "scaled too (default: %(default)s)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("out/rehearsal"), metavar="DIR",
                   help="output directory (default: %(default)s)")  # fmt: skip
    p.add_argument("--expect", choices=OUTCOMES,
                   help="exit 1 unless the outcome is this")  # fmt: skip
    p.add_argument("--spec", type=Path, default=DEFAULT_SPEC, metavar="FILE",
                   help="alarm spec (default: the packaged alarms/specs/points-service.yaml)")  # fmt: skip
    p.add_argument("--port", type=_port, default=0,
                   help="listener port on 127.0.0.1 (default: a free one)")  # fmt: skip
    p.add_argument("--rps", type=_positive, default=40.0,
                   help="load through the listener, requests/s (default: %(default)s)")  # fmt: skip
    p.add_argument("--green-limit-rps", type=_positive, default=2.0,
                   help="green's RATE_LIMIT_RPS in the regression scenario (default: %(default)s)")  # fmt: skip
    p.add_argument("--app", default="sample_api.wsgi:app", metavar="MODULE:NAME",
                   help="WSGI app both versions run under gunicorn (default: %(default)s)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true",
                   help="plain progress lines even on a terminal")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The help lists the predefined names without their prefix; accept them so.
    args.deployment_config = schedules.canonical(args.deployment_config)
    try:
        schedules.build(args.deployment_config, time_scale=args.time_scale, bake_s=args.bake)
    except schedules.ConfigError as exc:
        print(f"rehearsal: error: {exc}", file=sys.stderr)
        return 2
    if not args.spec.is_file():
        why = "is not a file" if args.spec.exists() else "does not exist"
        print(f"rehearsal: error: alarm spec {str(args.spec)!r} {why}", file=sys.stderr)
        return 2
    try:
        from alarms import load_spec

        load_spec(str(args.spec))
    except (ValueError, OSError) as exc:  # SpecError is a ValueError
        print(f"rehearsal: error: alarm spec {str(args.spec)!r}: {exc}", file=sys.stderr)
        return 2
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
    )
    try:
        outcome = run(options)
    except (Interrupted, KeyboardInterrupt):
        print("rehearsal: interrupted; every child process was stopped", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, TimeoutError, OSError) as exc:
        print(f"rehearsal: failed: {exc}", file=sys.stderr)
        return 1
    print(summary(outcome))
    status = 0
    if outcome.safety is not None and not outcome.safety.ok:
        status = 1
    if args.expect and outcome.result["outcome"] != args.expect:
        print(
            f"rehearsal: expected {args.expect}, got {outcome.result['outcome']}", file=sys.stderr
        )
        status = 1
    return status


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
            f"ROLLED BACK: {r['alarm']} went to ALARM; decision {r['alarm_time_s']} s after green "
            f"first took traffic, at green {d.get('green_percent_at_alarm')}%."
        )
    else:
        lines.append("SUCCEEDED: no rollback alarm fired; all traffic on green, blue terminated.")
    s = outcome.safety
    if s is not None:
        lines.append(s.describe())
        lines.extend(f"  - {p}" for p in s.problems[:10])
    lines.append(f"Requests through the listener: {r['requests']}, server errors: {r['errors']}.")
    out = outcome.report_path.parent
    lines.append(f"Result: {out / 'result.json'}")
    lines.append(
        f"Replay the alarms offline: {_python()} -m alarms replay --alarms "
        f"{shlex.quote(str(out / 'alarms.json'))} --emf {shlex.quote(str(out / 'emf.jsonl'))}"
    )
    lines.append(f"Report: {outcome.report_path}")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before any child process was started
        print("rehearsal: interrupted", file=sys.stderr)
        sys.exit(130)
