"""Run one rehearsal: blue and green under gunicorn, the weighted listener, Locust, the live alarm
evaluation, the deployment controller with rollback, the safety check and the report."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtest import LOCUSTFILE
from points import environment_variables as points_env
from rehearsal import schedule as schedules
from rehearsal.collector import Collector
from rehearsal.controller import DRAIN_S, INGEST_LAG_S, Controller
from rehearsal.listener import WeightedListener
from rehearsal.model import DEFAULT_SPEC, ROOT, Options, Outcome
from rehearsal.progress import Progress
from rehearsal.report import write_outputs
from rehearsal.safety import SafetyReport, check
from rehearsal.supervisor import Interrupted, Supervisor, signals_raise
from rehearsal.timeline import Timeline
from sample_api import environment_variables as api_env

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


def child_env(
    options: Options,
    version: str,
    db_path: Path,
    port: int,
    limiter: bool,
    service: str = "points-service",
    namespace: str = "SafeDeploy",
) -> dict:
    """Environment of one version's gunicorn: shared store, 1 s high-resolution telemetry.

    Service, namespace and version are the alarm spec's, and EMF goes to stdout whatever the
    caller's shell says (``AWS_EMF_*``): metrics the alarms cannot see would pass silently."""
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
        "OTEL_SERVICE_NAME": service,
        "OTEL_RESOURCE_ATTRIBUTES": f"service.version={version}",
        "AWS_EMF_NAMESPACE": namespace,
        "AWS_EMF_ENVIRONMENT": "",
        "AWS_EMF_AGENT_ENDPOINT": "",
        "TELEMETRY_FLUSH_INTERVAL_S": "1",
        "TELEMETRY_STORAGE_RESOLUTION": "1",
        # Access lines are only kept as logs here; errors are always logged by telemetry.
        "TELEMETRY_ACCESS_LOG_SAMPLE": "0.1",
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
    env.update(options.extra_env)
    return env


def _clean_parent_env() -> None:
    # No trace export from the rehearsal's children: there is no collector on this machine.
    for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
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


def _load_alarms(spec_path: Path) -> tuple[Any, dict[str, Any], Any, list[str]]:
    from alarms import Evaluator, load_spec, rollback_alarm_names, synth

    spec = load_spec(str(spec_path))
    defs = synth(spec, format="json", profile="rehearsal")
    return spec, defs, Evaluator(defs), list(rollback_alarm_names(defs))


def run(options: Options) -> Outcome:
    """Run the rehearsal described by ``options``; always stops every child before returning."""
    plan = schedules.build(
        options.deployment_config, time_scale=options.time_scale, bake_s=options.bake_s
    )
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    # A re-run into the same directory starts clean (logs are appended to while running).
    stale = [*out.glob("points.db*"), *out.glob("*.log"), *out.glob("logs/*.log")]
    stale += [out / n for n in ("run.json", "result.json", "report.html", "evaluations.jsonl")]
    for path in stale:
        path.unlink(missing_ok=True)
    spec, defs, evaluator, rollback_names = _load_alarms(options.spec)
    (out / "alarms.json").write_text(json.dumps(defs, indent=2, default=str) + "\n")
    _clean_parent_env()

    db_path = out / "points.db"
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
    }
    safety: SafetyReport | None = None
    try:
        with signals_raise():
            ports = {"blue": free_port(), "green": free_port()}
            limiter = options.scenario == "regression"
            # The versions the spec's alarms watch (v1 and v2 in the packaged spec).
            versions = (
                ("blue", spec.versions.blue, False),
                ("green", spec.versions.green, limiter),
            )
            for name, version, limited in versions:
                supervisor.start(
                    name,
                    [
                        sys.executable,
                        "-m",
                        "gunicorn",
                        "-c",
                        str(ROOT / "sample_api" / "gunicorn.conf.py"),
                        options.app,
                    ],
                    env=child_env(
                        options,
                        version,
                        db_path,
                        ports[name],
                        limited,
                        spec.service,
                        spec.namespace,
                    ),
                    cwd=ROOT,
                    on_line=collector.on_line,
                )
            for name, port in ports.items():
                child = supervisor.children[name]
                wait_ready(f"http://127.0.0.1:{port}/readyz", child.alive)
            listener = WeightedListener(
                {n: ("127.0.0.1", p) for n, p in ports.items()},
                weights={"blue": 100},
                port=options.port,
                seed=options.seed,
                observer=timeline.observe,
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
                rollback_names, listener, supervisor, collector, timeline, progress
            )
            decision, stopper = controller.deploy(options, plan)
            # Keep the load on for a moment: the report shows traffic back on the survivor.
            controller.observe(options.observe_after_s, decision)
            with _signals_ignored():
                supervisor.stop("locust", timeout_s=20, first=signal.SIGINT)
            stopper.join(DRAIN_S + 30)
            details["listener_errors"] = listener.error_log
            survivor = decision.survivor
            with _store(db_path) as store:
                safety = check(
                    f"http://127.0.0.1:{ports[survivor]}",
                    survivor,
                    list(timeline.writes),
                    store.balance,
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

    return write_outputs(options, plan, decision, timeline, collector, safety, details)


@contextlib.contextmanager
def _store(db_path: Path) -> Iterator[Any]:
    """The shared store, read directly (independent of either version's API)."""
    from points import open_storage

    storage = open_storage(
        {points_env.POINTS_STORE: "sqlite", points_env.POINTS_DB_PATH: str(db_path)}
    )
    try:
        yield storage
    finally:
        storage.close()
