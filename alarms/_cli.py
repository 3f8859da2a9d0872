"""``python -m alarms synth|apply|replay`` (see docs/alarms.md)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from telemetry import cloudwatch_rules as _rules

from . import _emf
from ._evaluator import MAX_DATAPOINT_DELAY_S, MAX_RANGE_EXTRA, Evaluation, Evaluator
from ._format import iso, number_text
from ._io import InputError, dump_yaml, load_document, parse_time
from ._spec import SpecError, load_spec, with_names
from ._synth import synth

PROG = "alarms"
SYNTH_FORMATS = ("cloudformation", "yaml", "json")
_YAML_SUFFIXES = (".yaml", ".yml")
#: Longest replay window: bounds the evaluation loop (a typo'd or garbage time must not run for
#: hours or write gigabytes); longer recordings are replayed in pieces.
MAX_REPLAY_S = 31 * 86400
#: The last time an EMF timestamp names (9999-12-31T23:59:59.999Z).
_LAST_TIME_S = _rules.MAX_TIMESTAMP_MS / 1000.0


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations ("--min" for "--min-healthy-percent"), in subcommands too (they
        # are this class): a typo or a later option must not silently change the meaning.
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise InputError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=f"python -m {PROG}",
        description="Generate CloudWatch alarms, dashboards and rollback triggers from a service"
        " spec, apply them with boto3, and replay them offline over EMF (docs/alarms.md).",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("synth", help="generate a CloudFormation template or JSON request shapes")
    s.add_argument("--spec", required=True, help="service spec (YAML)")
    s.add_argument(
        "--format",
        choices=SYNTH_FORMATS,
        default=None,
        help="cloudformation: a template, YAML when -o names a .yaml/.yml file, else JSON"
        " (the default); yaml: the template in YAML; json: the AWS request shapes (JSON)",
    )
    s.add_argument("--profile", default=None, help="production (default) or rehearsal")
    s.add_argument("-o", "--output", help="write here instead of stdout")
    s.add_argument(
        "--service",
        help="replace the spec's service name (alarm names, Service dimension): one spec, one"
        " template per stage, e.g. a pre-production stack with its own ServiceName",
    )
    s.add_argument("--worker-service", help="replace the spec's worker service name likewise")

    a = sub.add_parser("apply", help="create or update the alarms, dashboard, rollback config")
    a.add_argument("--spec", required=True)
    a.add_argument("--profile", default="production")
    a.add_argument("--dry-run", action="store_true", help="print the calls, change nothing")

    r = sub.add_parser("replay", help="evaluate alarms over recorded EMF lines")
    r.add_argument("--alarms", required=True, help="synth JSON or any CloudFormation template")
    r.add_argument("--emf", required=True, nargs="+", help="EMF log files ('-' = stdin)")
    r.add_argument("--start", help="first evaluation (ISO 8601 or epoch s; default: first data)")
    r.add_argument("--end", help="last evaluation (default: last data + 60 s)")
    r.add_argument(
        "--tick",
        type=int,
        help="evaluate every S seconds (multiple of 10) instead of CloudWatch's 60 s / 10 s",
    )
    # Assumptions where CloudWatch's documentation is silent (docs/alarms.md).
    r.add_argument(
        "--range-extra", type=int, default=2, help="evaluation range = N + this (default 2)"
    )
    r.add_argument(
        "--alignment",
        choices=("rolling", "period"),
        default="rolling",
        help="periods end at the evaluation time (rolling) or at UTC multiples of the period",
    )
    r.add_argument(
        "--datapoint-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="evaluate a period once it ended at least S seconds ago (default 0)",
    )
    r.add_argument(
        "--max-lateness",
        type=float,
        default=None,
        metavar="S",
        help="drop samples older than the last evaluation minus S (default: keep)",
    )
    r.add_argument(
        "--low-sample-scope",
        choices=("newest", "any"),
        default="newest",
        help="datapoint(s) EvaluateLowSampleCountPercentile=ignore checks",
    )
    r.add_argument(
        "--percentile",
        choices=("nearest_rank", "interpolate"),
        default="nearest_rank",
        help="percentile definition (default nearest_rank)",
    )
    r.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter value (repeatable)",
    )
    r.add_argument(
        "--json",
        action="store_true",
        help="one JSON line per evaluation and a summary line, instead of the table of changes",
    )
    r.add_argument(
        "--changes-only", action="store_true", help="with --json: print only state changes"
    )
    return p


def _write(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None


def _synth_output(fmt: str | None, output: str | None) -> tuple[str, bool]:
    """``(what synth generates, written as YAML?)`` from ``--format`` and the ``-o`` file name.

    Raises InputError when they disagree (``--format yaml -o t.json``)."""
    yaml_name = output is not None and output.lower().endswith(_YAML_SUFFIXES)
    if fmt == "json" and yaml_name:
        raise InputError(
            f"--format json writes JSON request shapes, but {output} names a YAML file;"
            " use --format yaml (or cloudformation) for a YAML template"
        )
    if fmt == "yaml" and output is not None and not yaml_name:
        raise InputError(f"--format yaml writes YAML, but {output} does not end in .yaml or .yml")
    if fmt == "json":
        return "json", False
    return "cloudformation", fmt == "yaml" or yaml_name


def _cmd_synth(args: argparse.Namespace) -> int:
    what, as_yaml = _synth_output(args.format, args.output)
    spec = with_names(load_spec(args.spec), args.service, args.worker_service)
    out = synth(spec, format=what, profile=args.profile)
    _write(dump_yaml(out) if as_yaml else json.dumps(out, indent=2) + "\n", args.output)
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    from ._apply import ApplyError, apply, describe_plan

    spec = load_spec(args.spec)
    spec.profile(args.profile)

    def report(line: str) -> None:
        print(line, flush=True)

    if args.dry_run:
        return describe_plan(synth(spec, "json", args.profile), report)
    try:
        counts = apply(spec, args.profile, report)
    except ApplyError as exc:
        print(f"{PROG} apply: AWS error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        # botocore refuses a malformed endpoint (AWS_ENDPOINT_URL=localhost:5000) with a bare
        # ValueError while creating the client: bad configuration, not an AWS error.
        if "endpoint" not in str(exc).lower():
            raise
        raise InputError(f"apply: {exc} (check AWS_ENDPOINT_URL)") from None
    report("applied: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def _params(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InputError(f"--param {item!r}: use NAME=VALUE")
        out[name] = value
    return out


def _cmd_replay(args: argparse.Namespace) -> int:
    if args.tick is not None and (args.tick <= 0 or args.tick % 10):
        raise InputError("--tick must be a positive multiple of 10 seconds")
    # The evaluator refuses these too; said here with the flags' names (NaN fails every test).
    if not 0 <= args.range_extra <= MAX_RANGE_EXTRA:
        raise InputError(f"--range-extra must be 0..{MAX_RANGE_EXTRA}")
    if not 0 <= args.datapoint_delay <= MAX_DATAPOINT_DELAY_S:
        raise InputError(f"--datapoint-delay must be 0..{MAX_DATAPOINT_DELAY_S:g} seconds")
    if args.max_lateness is not None and not 0 <= args.max_lateness < math.inf:
        raise InputError("--max-lateness must be a finite number of seconds >= 0")
    start = parse_time(args.start) if args.start else None
    end = parse_time(args.end) if args.end else None
    if start is not None and end is not None and end < start:
        raise InputError("--end is before --start")
    defs = load_document(args.alarms)
    try:
        ev = Evaluator(
            defs,
            start=start,
            range_extra=args.range_extra,
            alignment=args.alignment,
            datapoint_delay_s=args.datapoint_delay,
            max_lateness_s=args.max_lateness,
            low_sample_scope=args.low_sample_scope,
            percentile_method=args.percentile,
            params=_params(args.param),
            tick_s=args.tick,
        )
    except ValueError as exc:
        raise InputError(f"{args.alarms}: {exc}") from None
    for w in ev.warnings:
        print(f"{PROG} replay: warning: {w}", file=sys.stderr)
    # One recording per file: each line's timestamp is judged by the lines around it in its file
    # (Evaluator.ingest), so a line stamped 0 or 9999 does not stretch the window.
    for path in args.emf:
        ev.ingest(_emf.read_lines([path]), source="stdin" if path == "-" else path)
    # What CloudWatch would reject never reaches an alarm in production: say so before the table.
    for w in ev.rejection_warnings:
        print(f"{PROG} replay: warning: {w}", file=sys.stderr)
    span = ev.data_range
    if start is None and span is None:
        if ev.stats["rejected"]:
            raise InputError(
                "no EMF data CloudWatch would accept in the input (see the warnings);"
                " give --start and --end to evaluate anyway"
            )
        raise InputError("no EMF data in the input; give --start and --end to evaluate anyway")
    if end is None:
        # (a recording at the end of 9999 ends there: no time lies beyond it)
        end = min((span[1] if span else start) + 60, _LAST_TIME_S)  # type: ignore[operator]
    first = start if start is not None else span[0]  # type: ignore[index]
    if end - first > MAX_REPLAY_S:
        raise InputError(
            f"the replay window {iso(first)} .. {iso(end)} is longer than"
            f" {MAX_REPLAY_S // 86400} days; give a shorter --start/--end"
        )
    out = sys.stdout
    table = None if args.json else _ChangeTable(out, ev.alarm_names)
    changes: list[dict[str, Any]] = []
    evaluations = 0
    # Advance an hour at a time so output streams and buckets behind the window are pruned.
    t = first + 3600
    while True:
        batch = ev.advance(min(t, end))
        evaluations += len(batch)
        for e in batch:
            if e.changed:
                changes.append(
                    {"time": iso(e.time), "alarm": e.alarm, "from": e.previous_state, "to": e.state}
                )
                if table is not None:
                    table.row(e)
            if table is None and (e.changed or not args.changes_only):
                out.write(json.dumps(e.to_dict()) + "\n")
        if t >= end:
            break
        t += 3600
    states = ev.states
    summary = {
        "evaluations": evaluations,
        "state_changes": changes,
        "final_states": states,
        "alarmed": sorted({c["alarm"] for c in changes if c["to"] == "ALARM"}),
        "no_data": sorted(n for n, s in states.items() if s == "INSUFFICIENT_DATA"),
        "input": ev.stats,
        "warnings": ev.warnings,
        "cloudwatch_rejects": dict(ev.rejections),
    }
    if table is None:
        out.write(json.dumps({"summary": summary}) + "\n")
    else:
        table.summary(summary)
    return 0


class _ChangeTable:
    """``replay``'s output for people: one row per state change, streamed, then a summary."""

    def __init__(self, out: TextIO, names: Sequence[str]) -> None:
        self.out = out
        self.width = max([len("alarm"), *(len(n) for n in names)])
        self.rows = 0

    def _line(self, time: str, alarm: str, change: str, value: str) -> None:
        self.out.write(f"{time:<24}  {alarm:<{self.width}}  {change:<26}  {value}".rstrip() + "\n")

    def row(self, e: Evaluation) -> None:
        if not self.rows:
            self._line("time (UTC)", "alarm", "from -> to", "value (alarm when)")
        self.rows += 1
        self._line(
            iso(e.time), e.alarm, f"{e.previous_state} -> {e.state}", e.value_vs_threshold() or "-"
        )

    def summary(self, s: dict[str, Any]) -> None:
        if not self.rows:
            self.out.write("no state changes\n")
        final = s["final_states"]
        counts = {k: sum(1 for v in final.values() if v == k) for k in ("ALARM", "OK")}
        counts["INSUFFICIENT_DATA"] = len(s["no_data"])
        inp = s["input"]
        self.out.write(
            f"\n{self.rows} state changes in {s['evaluations']} evaluations; at the end: "
            + ", ".join(f"{n} {k}" for k, n in counts.items())
            + "\n"
        )
        firing = sorted(n for n, v in final.items() if v == "ALARM")
        if firing:
            self.out.write(f"in ALARM at the end: {', '.join(firing)}\n")
        if s["alarmed"]:
            self.out.write(f"went to ALARM: {', '.join(s['alarmed'])}\n")
        self.out.write(
            f"input: {inp['lines']} lines, {inp['emf_lines']} EMF, {inp['bad_lines']} bad,"
            f" {number_text(inp['samples'])} samples\n"
        )
        if inp["rejected"]:
            self.out.write(
                f"CloudWatch would reject {inp['rejected']} metric values (left out, as CloudWatch"
                " would; see the warnings)\n"
            )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        return {"synth": _cmd_synth, "apply": _cmd_apply, "replay": _cmd_replay}[args.command](args)
    except (InputError, SpecError) as exc:
        text = str(exc) if isinstance(exc, SpecError) else f"{PROG}: {exc}"
        print(text.splitlines()[0] if text else f"{PROG}: bad input", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `| head` closed stdout
        return 0
