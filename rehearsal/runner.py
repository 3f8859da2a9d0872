"""Run one rehearsal: blue and green under gunicorn, the weighted listener, Locust, the live alarm
evaluation, the deployment controller with rollback, the safety check and the report; the
one-way-door guard first, and ``two-phase`` as two deployments over one store."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from loadtest import LOCUSTFILE
from points import environment_variables as points_env
from points.formats import KNOWN_FORMATS, Formats
from rehearsal import schedule as schedules
from rehearsal.collector import Collector
from rehearsal.controller import DRAIN_S, INGEST_LAG_S, Controller
from rehearsal.harm import user_of
from rehearsal.judge import JudgeTrigger
from rehearsal.listener import WeightedListener
from rehearsal.model import (
    DEFAULT_SPEC,
    ROOT,
    SUCCEEDED,
    Options,
    Outcome,
    not_a_run_directory,
    stale_outputs,
)
from rehearsal.progress import Progress
from rehearsal.report import write_outputs, write_two_phase
from rehearsal.safety import SafetyReport, check
from rehearsal.supervisor import Interrupted, Supervisor, signals_raise
from rehearsal.timeline import Timeline
from rehearsal.versions import TWO_PHASES, OneWayDoor, Side, guard, sides
from sample_api import environment_variables as api_env
from sample_api.dev_tokens import DevIssuer
from telemetry import environment_variables as telemetry_env

__all__ = ["DEFAULT_SPEC", "Options", "Outcome", "child_env", "fastest_alarm_s", "run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, alive: Any, timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers 2xx; fail fast when ``alive()`` turns false."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the process behind {url} exited before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if 200 <= resp.status < 300:
                    return
        except (OSError, urllib.error.URLError) as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} was not ready within {timeout_s:.0f} s ({last})")


#: How much of a log's end :func:`start_failure` reads (a traceback's last line is there).
_LOG_TAIL_BYTES = 64 * 1024
_GUNICORN_LINE = re.compile(r"\[\d{4}-\d\d-\d\d [^]]*\] \[\d+\] \[[A-Z]+\] ")


def start_failure(log: Path) -> str:
    """Why a version's gunicorn exited at start, from its stderr log: the last line that is not
    gunicorn's own (a traceback's exception line, or the app's configuration error), at most 300
    characters; else gunicorn's last line; "" for an empty or unreadable log."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - _LOG_TAIL_BYTES))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    lines = [line.strip() for line in lines if line.strip()]
    own = [line for line in lines if not _GUNICORN_LINE.match(line)]
    found = (own or lines or [""])[-1]
    return found if len(found) <= 300 else found[:297] + "..."


def child_env(
    options: Options,
    version: str,
    db_path: Path,
    port: int,
    limiter: bool,
    service: str = "points-service",
    namespace: str = "SafeDeploy",
    *,
    formats: Formats | None = None,
    version_env: dict[str, str] | None = None,
) -> dict:
    """Environment of one version's gunicorn: shared store, 1 s high-resolution telemetry.

    Service, namespace and version are the alarm spec's, and EMF goes to stdout whatever the
    caller's shell says (``AWS_EMF_*``): metrics the alarms cannot see would pass silently.
    ``formats`` declares the ledger formats the version reads and writes; ``version_env`` is
    this version's own environment, applied last (after ``options.extra_env``)."""
    env = {
        api_env.APP_VERSION: version,
        api_env.PORT: str(port),
        api_env.BIND: f"127.0.0.1:{port}",
        api_env.WEB_CONCURRENCY: str(options.web_concurrency),
        api_env.GUNICORN_THREADS: str(options.threads),
        # The listener plays the ALB: it stops routing to a version and waits for its in-flight
        # requests before the version is stopped, so gunicorn's own SIGTERM drain would only
        # delay the stop (and the supervisor signals the whole process group, workers included).
        api_env.GUNICORN_DRAIN_S: "0",
        points_env.POINTS_STORE: "sqlite",
        points_env.POINTS_DB_PATH: str(db_path),
        telemetry_env.OTEL_SERVICE_NAME: service,
        telemetry_env.OTEL_RESOURCE_ATTRIBUTES: f"service.version={version}",
        telemetry_env.AWS_EMF_NAMESPACE: namespace,
        telemetry_env.AWS_EMF_ENVIRONMENT: "",
        telemetry_env.AWS_EMF_AGENT_ENDPOINT: "",
        telemetry_env.TELEMETRY_FLUSH_INTERVAL_S: "1",
        telemetry_env.TELEMETRY_STORAGE_RESOLUTION: "1",
        # Every request's access line and spans: the report joins the slow and failed ones by
        # trace id ("Why it rolled back"). Spans go to one OTLP JSON file (both versions append
        # whole lines), sampled at 100 %, and nowhere else whatever the caller's shell says.
        telemetry_env.TELEMETRY_ACCESS_LOG_SAMPLE: "1",
        telemetry_env.TELEMETRY_TRACES_FILE: str(options.out / TRACES_FILE),
        telemetry_env.OTEL_TRACES_SAMPLER: "parentbased_always_on",
        telemetry_env.OTEL_TRACES_SAMPLER_ARG: "",
        telemetry_env.OTEL_TRACES_EXPORTER: "none",
        telemetry_env.OTEL_SDK_DISABLED: "false",
        "PYTHONUNBUFFERED": "1",
        api_env.RATE_LIMIT_ENABLED: "true" if limiter else "false",
    }
    if limiter:
        env.update(
            {
                api_env.RATE_LIMIT_RPS: str(options.green_limit_rps),
                api_env.RATE_LIMIT_BURST: str(options.green_limit_burst),
                api_env.RATE_LIMIT_MODE: "delay",
                api_env.RATE_LIMIT_MAX_WAIT_S: str(options.green_limit_max_wait_s),
            }
        )
    if formats is not None:
        env.update(formats.to_env())
    env.update(options.extra_env)
    env.update(version_env or {})
    return env


#: The versions' spans, OTLP JSON lines (opentelemetry-exporter-otlp-json-file).
TRACES_FILE = "traces.jsonl"


def _clean_parent_env() -> None:
    # No trace export from the rehearsal's children: there is no collector on this machine.
    for key in (
        telemetry_env.OTEL_EXPORTER_OTLP_ENDPOINT,
        telemetry_env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    ):
        os.environ.pop(key, None)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """While cleaning up, a second Ctrl-C must not abandon half-stopped children."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def fastest_alarm_s(defs: dict[str, Any], names: list[str]) -> float | None:
    """The least time any of the alarms ``names`` needs to go to ALARM: M periods of data."""
    fastest = None
    for alarm in defs.get("MetricAlarms", []):
        if alarm.get("AlarmName") not in names:
            continue
        periods = [alarm.get("Period")]
        periods += [q.get("MetricStat", {}).get("Period") for q in alarm.get("Metrics", [])]
        period = max((p for p in periods if isinstance(p, int | float)), default=None)
        if period is None:
            continue
        needed = float(period) * int(alarm.get("DatapointsToAlarm") or alarm["EvaluationPeriods"])
        fastest = needed if fastest is None else min(fastest, needed)
    return fastest


def _load_alarms(
    spec_path: Path, labels: tuple[str, str] | None = None, profile: str = "rehearsal"
) -> tuple[Any, dict[str, Any], Any, list[str]]:
    """The spec's alarms in ``profile``, watching the versions ``labels`` (blue, green) when
    given."""
    from alarms import Evaluator, load_spec, rollback_alarm_names, synth

    spec = load_spec(str(spec_path))
    if labels is not None and labels != (spec.versions.blue, spec.versions.green):
        spec = replace(spec, versions=replace(spec.versions, blue=labels[0], green=labels[1]))
    defs = synth(spec, format="json", profile=profile)
    return spec, defs, Evaluator(defs), list(rollback_alarm_names(defs))


def run(options: Options) -> Outcome:
    """Run the rehearsal described by ``options``; always stops every child before returning.

    Raises :class:`~rehearsal.versions.OneWayDoor` before starting anything when blue could not
    read what green writes (or the reverse) and ``options.allow_one_way_door`` is false; the
    ``breaking`` scenario sets it, to show what happens."""
    if options.scenario == "two-phase":
        return run_two_phase(options)
    plan = schedules.build(
        options.deployment_config, time_scale=options.time_scale, bake_s=options.bake_s
    )
    from alarms import load_spec

    spec_file = load_spec(str(options.spec))
    blue, green = sides(options, spec_file.versions.blue, spec_file.versions.green)
    door = guard(blue, green)
    allowed = options.allow_one_way_door or options.scenario == "breaking"
    if not door.ok and not allowed:
        raise OneWayDoor(door.message)
    out = options.out
    foreign = not_a_run_directory(out)
    if foreign:
        raise ValueError(f"output directory {str(out)!r} {foreign}")
    out.mkdir(parents=True, exist_ok=True)
    # A re-run into the same directory starts clean (logs are appended to while running).
    for path in stale_outputs(out, store=options.db_path is None):
        path.unlink(missing_ok=True)
    spec, defs, evaluator, rollback_names = _load_alarms(
        options.spec, (blue.label, green.label), options.alarm_profile
    )
    if not options.alarm_rollback:
        rollback_names = []
    (out / "alarms.json").write_text(json.dumps(defs, indent=2, default=str) + "\n")
    _clean_parent_env()
    # The local token issuer: keys in a temporary directory outside ``out`` (nothing secret is
    # ever written there), deleted when the run ends.
    keys = tempfile.TemporaryDirectory(prefix="rehearsal-keys-")
    issuer = DevIssuer.create(keys.name)

    db_path = options.db_path or out / "points.db"
    timeline = Timeline()
    collector = Collector(out, evaluator)
    supervisor = Supervisor(out / "logs")
    progress = Progress(tty=options.progress)
    listener: WeightedListener | None = None
    details: dict[str, Any] = {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "schedule": {
            "steps": [[s.at_s, s.green_percent] for s in plan.steps],
            "bake_s": plan.bake_s,
        },
        "rollback_alarms": rollback_names,
        "versions": {
            side.name: {
                "version": side.label,
                "release": side.release,
                "formats": side.formats.to_dict(),
                "app": side.app,
                "regressed": side.regressed,
            }
            for side in (blue, green)
        },
        "one_way_door_guard": {
            "ok": door.ok,
            "message": door.message,
            "overridden": not door.ok,
        },
        "latency_objective_ms": spec.latency.objective_ms,  # harm accounting
    }
    safety: SafetyReport | None = None
    judge_trigger = JudgeTrigger(timeline) if options.judge else None
    try:
        with signals_raise():
            ports = {"blue": free_port(), "green": free_port()}
            for side in (blue, green):
                _start_version(
                    supervisor, collector, options, side, db_path, ports, spec, issuer.env()
                )
            for name, port in ports.items():
                child = supervisor.children[name]
                try:
                    wait_ready(f"http://127.0.0.1:{port}/readyz", child.alive)
                except RuntimeError:
                    side = blue if name == "blue" else green
                    log = supervisor.log_dir / f"{name}.stderr.log"
                    raise RuntimeError(
                        f"{name} (version {side.label}, app {side.app}) exited before it was "
                        f"ready: {start_failure(log)} (see {log})"
                    ) from None
            listener = WeightedListener(
                {n: ("127.0.0.1", p) for n, p in ports.items()},
                weights={"blue": 100},
                port=options.port,
                seed=options.seed,
                observer=timeline.observe,
                user_of=user_of,
            ).start()
            details["listener"] = listener.url
            details["ports"] = ports
            progress.message(
                f"rehearsal: {options.scenario} with {options.deployment_config} "
                f"(time scale {options.time_scale}); listener {listener.url} "
                f"(try: curl -i {listener.url}/version)"
            )
            fastest = fastest_alarm_s(defs, rollback_names)
            if fastest and plan.total_s < fastest + INGEST_LAG_S:
                progress.message(
                    f"note: blue is terminated {plan.total_s:g} s after green first takes "
                    f"traffic, but no rollback alarm can fire before {fastest:g} s (its periods "
                    "are not scaled); raise --time-scale or --bake to give the alarms a chance"
                )
            supervisor.start(
                "locust",
                [
                    sys.executable,
                    "-m",
                    "locust",
                    "-f",
                    str(LOCUSTFILE),
                    "--headless",
                    "--host",
                    listener.url,
                    "--csv",
                    str(out / "locust"),
                    "--html",
                    str(out / "locust.html"),
                    "--loglevel",
                    "WARNING",
                    "--only-summary",
                    "--stop-timeout",  # users finish the request in flight when told to stop
                    "5",
                ],
                env={
                    **issuer.load_env(),
                    "LOAD_SHAPE": "demo",
                    "LOAD_RPS": str(options.load_rps),
                    # One request every 2 s per user: many users, so a slow green request
                    # delays one user's next request, not a big share of the load.
                    "LOAD_USER_RPS": "0.5",
                    # Users start spread over one pacing period (1 / 0.5 req/s), so their
                    # requests interleave instead of arriving in waves.
                    "LOAD_RAMP_S": "2",
                },
                cwd=ROOT,
            )
            details["children"] = supervisor.pgids()
            # Written now for whoever watches the run (listener URL, child process groups) and
            # again, complete, at the end.
            (out / "run.json").write_text(json.dumps(details, indent=2, default=str) + "\n")
            controller = Controller(
                rollback_names,
                listener,
                supervisor,
                collector,
                timeline,
                progress,
                alarm_defs=defs,
                triggers=[judge_trigger] if judge_trigger else [],
            )
            decision, stopper = controller.deploy(options, plan)
            # Keep the load on for a moment: the report shows traffic back on the survivor.
            controller.observe(options.observe_after_s, decision)
            with _signals_ignored():
                supervisor.stop("locust", timeout_s=20, first=signal.SIGINT)
            stopper.join(DRAIN_S + 30)
            details["listener_errors"] = listener.error_log
            # the loser's drain, for the plots: from the decision until it was stopped
            details["drain"] = {
                "version": decision.stopped,
                "from": decision.decided_at,
                "stopped_at": controller.stopped_at.get(decision.stopped),
            }
            survivor = decision.survivor
            with _store(db_path) as store:
                safety = check(
                    f"http://127.0.0.1:{ports[survivor]}",
                    survivor,
                    [*options.prior_writes, *timeline.writes],
                    store.balance,
                    token_for=issuer.mint,
                )
    except Interrupted as exc:
        progress.close()
        print(f"\nrehearsal: interrupted ({exc}); stopping every child process", file=sys.stderr)
        raise
    finally:
        progress.close()
        with _signals_ignored():
            if listener is not None:
                listener.stop()
            supervisor.stop_all()
            # The survivors' last windows arrive as they exit; evaluate what is left.
            collector.advance(time.time())
            collector.close()
            keys.cleanup()

    if judge_trigger is not None:
        details["judge"] = judge_trigger.to_dict(timeline.t0)
    outcome = write_outputs(options, plan, decision, timeline, collector, safety, details)
    outcome.writes = list(timeline.writes)
    return outcome


def _start_version(
    supervisor: Supervisor,
    collector: Collector,
    options: Options,
    side: Side,
    db_path: Path,
    ports: dict[str, int],
    spec: Any,
    auth_env: dict[str, str],
) -> None:
    """Start one version's gunicorn: its own app, release formats and environment, trusting
    the run's token issuer (``auth_env``)."""
    supervisor.start(
        side.name,
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "sample_api" / "gunicorn.conf.py"),
            "--",  # the app is never an option, whatever the caller passed
            side.app,
        ],
        env={
            **auth_env,
            **child_env(
                options,
                side.label,
                db_path,
                ports[side.name],
                side.regressed,
                spec.service,
                spec.namespace,
                formats=side.formats if side.release else None,
                version_env=side.env,
            ),
        },
        cwd=ROOT,
        on_line=collector.on_line,
    )


def run_two_phase(options: Options) -> Outcome:
    """``two-phase``: v1 -> v2 (prepare; healthy, baked) then v2 -> v3 (activate; with the
    regression, so it rolls back to v2), over one store. Each deployment writes its own outputs
    in ``out/1-prepare`` and ``out/2-activate``; ``out/result.json`` and ``out/report.html`` sum
    them up. The second data safety check covers the writes acknowledged in both."""
    out = options.out
    foreign = not_a_run_directory(out)
    if foreign:
        raise ValueError(f"output directory {str(out)!r} {foreign}")
    out.mkdir(parents=True, exist_ok=True)
    db_path = options.db_path or out / "points.db"
    if options.db_path is None:
        for path in out.glob("points.db*"):
            path.unlink()
    outcomes: list[Outcome] = []
    writes: list[Any] = list(options.prior_writes)
    for index, (name, blue, green, regressed) in enumerate(TWO_PHASES, start=1):
        phase = replace(
            options,
            scenario=f"two-phase:{name}",
            out=out / f"{index}-{name}",
            blue_version=blue,
            green_version=green,
            green_regressed=regressed,
            allow_one_way_door=False,
            db_path=db_path,
            prior_writes=writes,
        )
        outcome = run(phase)
        outcomes.append(outcome)
        # Carried into the next deployment under the version that acknowledged them (v1, v2),
        # not blue/green, which name other processes there.
        labels = {"blue": blue, "green": green}
        writes += [replace(w, target=labels.get(w.target, w.target)) for w in outcome.writes]
        if name == "prepare" and outcome.result["outcome"] != SUCCEEDED:
            break  # v2 never became the running version: activating it would cross the door
    return write_two_phase(options, outcomes)


@contextlib.contextmanager
def _store(db_path: Path) -> Iterator[Any]:
    """The shared store, read directly (independent of either version's API) by a reader of
    every format this build knows; it never writes."""
    from points import open_storage

    reader = Formats.of(KNOWN_FORMATS, 1)
    storage = open_storage(
        {
            points_env.POINTS_STORE: "sqlite",
            points_env.POINTS_DB_PATH: str(db_path),
            **reader.to_env(),
        }
    )
    try:
        yield storage
    finally:
        storage.close()
