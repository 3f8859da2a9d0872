"""Run one worker rehearsal: moto's SQS server, the producer, the old revision's tasks, the
rolling update round by round (:func:`rehearsal.rolling.schedule.plan`), the worker rollback
alarms evaluated live on the tasks' EMF, the rollback as ECS performs it, the drain, the
exactly-once check and the outputs."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from alarms import Evaluator, load_spec, synth, worker_rollback_alarm_names
from points import environment_variables as points_env
from points.domain import DEFAULT_RATE
from rehearsal.collector import Collector
from rehearsal.controller import INGEST_LAG_S, TICK_S, alarms_to_roll_back
from rehearsal.model import ROLLED_BACK, ROOT, SUCCEEDED, is_reported_transition
from rehearsal.progress import Progress
from rehearsal.rolling.exactly_once import ExactlyOnceReport, check_store, read_ledger
from rehearsal.rolling.model import Credits, RolloutDecision, RunData, WorkerOptions, WorkerOutcome
from rehearsal.rolling.producer import Producer
from rehearsal.rolling.report import write_outputs
from rehearsal.rolling.schedule import HEALTHY_AFTER_RUNNING_S, plan
from rehearsal.runner import (
    _clean_parent_env,
    _signals_ignored,
    fastest_alarm_s,
    free_port,
    wait_ready,
)
from rehearsal.supervisor import Interrupted, Supervisor, signals_raise
from telemetry import environment_variables as telemetry_env
from worker import environment_variables as worker_env
from worker import setup_queues

#: The queue the rehearsal creates on moto's server (and ``<name>-dlq``).
QUEUE_NAME = "points-orders"
#: As deploy/stack.yaml's queue: 5 receives, then the DLQ.
MAX_RECEIVE_COUNT = 5
#: A task that runs this long without writing one EMF line has no telemetry: the run stops.
EMF_GRACE_S = 15.0
#: Bounds of the drain after the deployment (queue empty, every order credited).
DRAIN_S = 90.0


def _sqs_client(region: str, endpoint: str) -> Any:
    """The rehearsal's own SQS client, for its local endpoint only (moto takes any key)."""
    import boto3

    return boto3.client(
        "sqs",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="rehearsal",
        aws_secret_access_key="rehearsal",
    )


def bake_seconds(defs: dict[str, Any], names: list[str]) -> float:
    """ECS computes the bake time from the alarms and does not document how; the rehearsal
    waits the longest evaluation window of the rollback alarms (period x EvaluationPeriods)."""
    longest = 0.0
    for alarm in defs.get("MetricAlarms", []):
        if alarm.get("AlarmName") not in names:
            continue
        periods = [alarm.get("Period")]
        periods += [q.get("MetricStat", {}).get("Period") for q in alarm.get("Metrics", [])]
        period = max((p for p in periods if isinstance(p, int | float)), default=0)
        longest = max(longest, float(period) * int(alarm.get("EvaluationPeriods") or 1))
    return longest


class _Fleet:
    """The tasks of both revisions: start, stop (SIGTERM, SIGKILL after stopTimeout) and count."""

    def __init__(self, supervisor: Supervisor, env: Callable[[str], dict[str, str]], on_line: Any,
                 stop_timeout_s: float) -> None:  # fmt: skip
        self.supervisor = supervisor
        self._env = env
        self._on_line = on_line
        self.stop_timeout_s = stop_timeout_s
        self.running: dict[str, list[str]] = {}  # version -> task names, oldest first
        self.started: dict[str, float] = {}  # task name -> epoch s
        self._stoppers: list[threading.Thread] = []
        self._serial = 0
        self.history: list[tuple[float, dict[str, int]]] = []
        self.exit_codes: dict[str, int | None] = {}  # task -> status (-9: SIGKILLed)

    def _record(self) -> None:
        self.history.append((time.time(), {v: len(n) for v, n in self.running.items()}))

    def start(self, version: str, count: int) -> None:
        for _ in range(count):
            self._serial += 1
            name = f"task{self._serial:02d}-{version}"
            self.supervisor.start(
                name,
                [sys.executable, "-m", "worker"],
                env=self._env(version),
                cwd=ROOT,
                on_line=self._on_line,
            )
            self.started[name] = time.time()
            self.running.setdefault(version, []).append(name)
        if count:
            self._record()

    def stop(
        self, version: str, count: int, newest_first: bool = False, record: bool = True
    ) -> None:
        """Stop ``count`` tasks of ``version`` in the background, as ECS stops them in parallel
        (``record``: part of the deployment, shown on its timeline)."""
        names = self.running.get(version, [])
        chosen = (names[::-1] if newest_first else names)[:count]
        for name in chosen:
            names.remove(name)
            t = threading.Thread(target=self._stop_one, args=(name,), daemon=True)
            t.start()
            self._stoppers.append(t)
        if chosen and record:
            self._record()

    def _stop_one(self, name: str) -> None:
        code = self.supervisor.stop(name, timeout_s=self.stop_timeout_s, first=signal.SIGTERM)
        self.exit_codes[name] = code

    def count(self, version: str) -> int:
        return len(self.running.get(version, []))

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for t in self._stoppers:
            t.join(max(0.0, deadline - time.monotonic()))


class _Rehearsal:
    def __init__(self, options: WorkerOptions) -> None:
        self.o = options
        out = options.out
        out.mkdir(parents=True, exist_ok=True)
        stale = [*out.glob("points.db*"), *out.glob("*.log"), *out.glob("logs/*.log")]
        stale += [out / n for n in ("run.json", "result.json", "report.html", "evaluations.jsonl")]
        for path in stale:
            path.unlink(missing_ok=True)
        self.spec = load_spec(str(options.spec))
        if self.spec.worker is None:
            raise ValueError(f"alarm spec {options.spec} has no worker section (worker: false)")
        self.defs = synth(self.spec, format="json", profile="rehearsal")
        self.rollback_names = worker_rollback_alarm_names(self.defs)
        (out / "alarms.json").write_text(json.dumps(self.defs, indent=2, default=str) + "\n")
        self.rounds = plan(options.tasks, options.min_healthy_percent, options.max_percent)
        self.healthy_s = round(HEALTHY_AFTER_RUNNING_S * options.time_scale, 3)
        self.bake_s = (
            bake_seconds(self.defs, self.rollback_names)
            if options.bake_s is None
            else round(options.bake_s * options.time_scale, 3)
        )
        self.old, self.new = self.spec.worker.versions.old, self.spec.worker.versions.new
        self.collector = Collector(out, Evaluator(self.defs))
        self.supervisor = Supervisor(out / "logs")
        self.progress = Progress(tty=options.progress)
        self.credits = Credits()
        self._credits_lock = threading.Lock()
        self.db_path = out / "points.db"
        self.t0: float | None = None
        self.monitoring = True
        self.transitions: list[str] = []

    # -- child output ---------------------------------------------------------------------------
    def on_line(self, name: str, line: str) -> None:
        """Route a task's stdout line: the collector (EMF, logs) and the per-order credits."""
        self.collector.on_line(name, line)
        if '"outcome"' not in line or not line.startswith("{"):
            return
        try:
            obj = json.loads(line)
        except ValueError:
            return
        outcome, order = obj.get("outcome"), obj.get("order_id")
        now = time.time()
        with self._credits_lock:
            c = self.credits
            if obj.get("dead_letter"):
                c.dead_lettered += 1
            if outcome == "credited" and isinstance(order, str):
                c.first.setdefault(order, now)
                c.credited_at.setdefault(order, now)
                version = name.rsplit("-", 1)[-1]
                c.by_version[version] = c.by_version.get(version, 0) + 1
            elif outcome == "duplicate" and isinstance(order, str):
                c.duplicates += 1
                c.first.setdefault(order, now)
            elif outcome in ("failed", "poison"):
                c.failed += 1

    def task_env(self, version: str) -> dict[str, str]:
        o, spec = self.o, self.spec
        assert spec.worker is not None
        env = {
            worker_env.QUEUE_URL: self.queue_url,
            points_env.AWS_ENDPOINT_URL: self.endpoint,
            points_env.AWS_ACCESS_KEY_ID: "rehearsal",  # moto accepts any
            points_env.AWS_SECRET_ACCESS_KEY: "rehearsal",
            points_env.AWS_REGION: spec.region,
            points_env.POINTS_STORE: "sqlite",
            points_env.POINTS_DB_PATH: str(self.db_path),
            points_env.POINTS_RATE: str(DEFAULT_RATE),
            telemetry_env.APP_VERSION: version,
            telemetry_env.OTEL_SERVICE_NAME: spec.worker.service,
            telemetry_env.OTEL_RESOURCE_ATTRIBUTES: f"service.version={version}",
            telemetry_env.AWS_EMF_NAMESPACE: spec.namespace,
            telemetry_env.AWS_EMF_ENVIRONMENT: "",
            telemetry_env.AWS_EMF_AGENT_ENDPOINT: "",
            telemetry_env.TELEMETRY_FLUSH_INTERVAL_S: "1",
            telemetry_env.TELEMETRY_STORAGE_RESOLUTION: "1",
            "PYTHONUNBUFFERED": "1",
            worker_env.WORKER_CONCURRENCY: str(o.concurrency),
            worker_env.WORKER_BATCH_SIZE: str(o.batch_size),
            worker_env.WORKER_WAIT_TIME_S: "2",
            worker_env.WORKER_VISIBILITY_TIMEOUT_S: str(o.visibility_timeout_s),
            worker_env.WORKER_QUEUE_POLL_S: "2",
            worker_env.WORKER_SIMULATED_WORK_MS: "0",
            worker_env.WORKER_SIMULATED_FAILURE_RATE: "0",
        }
        if version == self.new and o.scenario == "regression":
            # v2 calls a downstream service synchronously in every job (say, a fraud check
            # whose client makes a fresh TLS connection per call): each job takes this long.
            env[worker_env.WORKER_SIMULATED_WORK_MS] = str(o.new_work_ms)
        env.update(o.extra_env)
        return env

    # -- the alarms -----------------------------------------------------------------------------
    def tick(self, phase: str) -> list[str]:
        """Evaluations due, changes printed, progress updated; the rollback alarms in ALARM."""
        now = time.time()
        for ev in self.collector.advance(now - INGEST_LAG_S):
            if is_reported_transition(ev, self.rollback_names):
                msg = f"{self._since(ev.time):+6.0f}s alarm {ev.alarm}: {ev.previous_state} -> {ev.state}"
                self.progress.message(msg)
        states = self.collector.last_states
        firing = alarms_to_roll_back(states, self.rollback_names)
        shown = {n: states.get(n, "INSUFFICIENT_DATA") for n in self.rollback_names}
        counts = {s: list(shown.values()).count(s) for s in set(shown.values())}
        alarms = " ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
        line = (
            f"{self._since(now):+5.0f}s {phase:<10} | {self.old} {self.fleet.count(self.old)} tasks,"
            f" {self.new} {self.fleet.count(self.new)} tasks | produced {self.producer.count()}"
            f" | credited {len(self.credits.first)} | alarms {alarms}"
        )
        self.progress.update(line, line)
        return firing if self.monitoring else []

    def _since(self, epoch: float) -> float:
        return epoch - (self.t0 if self.t0 is not None else epoch)

    def wait(self, seconds: float, phase: str, *, decide: bool = True) -> list[str]:
        """Tick for ``seconds``; return the firing rollback alarms as soon as there are any."""
        end = time.monotonic() + seconds
        while True:
            firing = self.tick(phase)
            if decide and firing:
                return firing
            if time.monotonic() >= end:
                return []
            self._check_emf()
            time.sleep(min(TICK_S, max(0.0, end - time.monotonic())))

    def _check_emf(self) -> None:
        now = time.time()
        for names in self.fleet.running.values():
            for name in names:
                if self.collector.emf_lines.get(name):
                    continue
                child = self.supervisor.children.get(name)
                if child is not None and not child.alive():
                    raise RuntimeError(
                        f"worker task {name} exited with status {child.proc.returncode} "
                        f"(see {self.o.out / 'logs' / (name + '.stderr.log')})"
                    )
                if now - self.fleet.started[name] > EMF_GRACE_S:
                    raise RuntimeError(
                        f"worker task {name} wrote no EMF metrics to stdout within "
                        f"{EMF_GRACE_S:.0f} s, so no alarm could ever fire"
                    )

    # -- the deployment -------------------------------------------------------------------------
    def deploy(self) -> RolloutDecision:
        fleet, o = self.fleet, self.o
        states = self.collector.last_states
        already = alarms_to_roll_back(states, self.rollback_names)
        if already:
            # ECS does not watch alarms that are in ALARM when a deployment starts.
            self.monitoring = False
            self.progress.message(
                f"note: {', '.join(already)} in ALARM before the deployment: as ECS, the "
                "rehearsal does not monitor the alarms during this deployment"
            )
        self.t0 = time.time()
        replaced = 0
        for i, r in enumerate(self.rounds, 1):
            fleet.stop(self.old, r.stop)
            replaced += r.stop
            fleet.start(self.new, r.start)
            self.progress.message(
                f"{self._since(time.time()):+6.0f}s round {i}/{len(self.rounds)}: stopped {r.stop} "
                f"{self.old}, started {r.start} {self.new} -> {self.old} {fleet.count(self.old)}, "
                f"{self.new} {fleet.count(self.new)}"
            )
            # New tasks count as healthy 40 s (scaled) after RUNNING; a round that only stops
            # tasks needs no wait. The alarms are watched throughout.
            firing = self.wait(self.healthy_s if r.start else 0.0, f"round {i}")
            if firing:
                return self._decide_rollback(firing, i, replaced)
        self.progress.message(
            f"{self._since(time.time()):+6.0f}s all {o.tasks} tasks run {self.new}: bake "
            f"{self.bake_s:g} s, alarms still watched"
        )
        firing = self.wait(self.bake_s, "baking")
        if firing:
            return self._decide_rollback(firing, len(self.rounds), replaced)
        self.progress.message(
            f"{self._since(time.time()):+6.0f}s bake time over, no alarm: COMPLETED"
        )
        return RolloutDecision(SUCCEEDED, time.time(), new_tasks=fleet.count(self.new), replaced=replaced,
                               round=len(self.rounds))  # fmt: skip

    def _decide_rollback(self, firing: list[str], round_no: int, replaced: int) -> RolloutDecision:
        now = time.time()
        decision = RolloutDecision(
            ROLLED_BACK,
            now,
            tuple(firing),
            alarm_time_s=round(now - (self.t0 or now), 2),
            new_tasks=self.fleet.count(self.new),
            replaced=replaced,
            round=round_no,
        )
        self.progress.message(
            f"{self._since(now):+6.0f}s ROLLBACK: {', '.join(firing)} in ALARM during round "
            f"{round_no}/{len(self.rounds)} ({replaced} of {self.o.tasks} old tasks replaced, "
            f"{decision.new_tasks} {self.new} running) -> rolling back to {self.old}"
        )
        return decision

    def roll_back(self) -> list[list[int]]:
        """The rollback: a rolling update back to the old revision, same limits."""
        fleet, o = self.fleet, self.o
        rounds = plan(
            o.tasks,
            o.min_healthy_percent,
            o.max_percent,
            outgoing=fleet.count(self.new),
            incoming=fleet.count(self.old),
        )
        for i, r in enumerate(rounds, 1):
            fleet.stop(self.new, r.stop, newest_first=True)
            fleet.start(self.old, r.start)
            self.progress.message(
                f"{self._since(time.time()):+6.0f}s rollback round {i}/{len(rounds)}: stopped "
                f"{r.stop} {self.new}, started {r.start} {self.old}"
            )
            self.wait(self.healthy_s if r.start else 0.0, "rollback", decide=False)
        return [[r.stop, r.start] for r in rounds]

    def drain(self) -> dict[str, Any]:
        """Producer stopped: wait until the queue is empty and every order credited; messages in
        the DLQ are redriven to the queue (what docs/worker.md tells operators to do) on every
        pass of the drain (at most ``DRAIN_S``), so one that dead-letters again is redriven again."""
        produced = {p.order_id for p in self.producer.produced}
        redriven = 0
        dlq_seen = 0
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline:
            visible, hidden = self._depth(self.queue_url)
            dead = self._depth(self.dlq_url)[0]
            if dead:
                dlq_seen += dead
                redriven += self._redrive()
            with self._credits_lock:
                left = produced - self.credits.first.keys()
            if left and not (visible or hidden or dead):
                # The queue is empty yet some credits have no log line: a SIGKILLed task lost
                # them with its output buffer. The store says whether they are done.
                left -= self._credited_in_store()
            if not (visible or hidden or dead or left):
                break
            self.wait(0.5, "draining", decide=False)
        return {"dead_letter_queue_seen": dlq_seen, "redriven": redriven}

    def _credited_in_store(self) -> set[str]:
        """The orders the store's ledger has a grant for; none when it cannot be read (yet)."""
        try:
            entries, _ = read_ledger(self.db_path)
        except sqlite3.Error:
            return set()
        return {e.order_id for e in entries if e.kind == "grant"}

    def _depth(self, url: str) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def _redrive(self) -> int:
        moved = 0
        for _ in range(100):  # bounded: 1,000 messages at most per call
            msgs = self.sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not msgs:
                break
            self.sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(msgs)],
            )
            self.sqs.delete_message_batch(
                QueueUrl=self.dlq_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)
                ],
            )
            moved += len(msgs)
        return moved

    # -- the whole run --------------------------------------------------------------------------
    def run(self) -> WorkerOutcome:
        o = self.o
        _clean_parent_env()
        details: dict[str, Any] = {
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(o).items()},
            "rounds": [[r.stop, r.start] for r in self.rounds],
            "healthy_after_s": self.healthy_s,
            "bake_s": self.bake_s,
            "rollback_alarms": self.rollback_names,
            "versions": {"old": self.old, "new": self.new},
        }
        decision: RolloutDecision | None = None
        exactly: ExactlyOnceReport | None = None
        ledger_credits: dict[str, float | None] | None = None
        self.producer: Producer | None = None
        self.fleet = _Fleet(self.supervisor, self.task_env, self.on_line, o.stop_timeout_s)
        try:
            with signals_raise():
                port = free_port()
                self.endpoint = f"http://127.0.0.1:{port}"
                moto = self.supervisor.start(
                    "moto",
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    cwd=ROOT,
                )
                wait_ready(self.endpoint + "/moto-api/", moto.alive)
                self.sqs = _sqs_client(self.spec.region, self.endpoint)
                urls = setup_queues(
                    self.sqs,
                    QUEUE_NAME,
                    max_receive_count=MAX_RECEIVE_COUNT,
                    visibility_timeout_s=o.visibility_timeout_s,
                )
                self.queue_url, self.dlq_url = urls["queue_url"], urls["dlq_url"]
                details["endpoint"] = self.endpoint
                self.progress.message(
                    f"rehearsal: worker {o.scenario}, {o.tasks} tasks {self.old} -> {self.new}, "
                    f"minimum healthy {o.min_healthy_percent}%, maximum {o.max_percent}% "
                    f"(rounds {' '.join(f'-{r.stop}/+{r.start}' for r in self.rounds)}), "
                    f"healthy after {self.healthy_s:g} s, bake {self.bake_s:g} s; SQS {self.endpoint}"
                )
                fastest = fastest_alarm_s(self.defs, self.rollback_names)
                last_wait = self.healthy_s * sum(1 for r in self.rounds if r.start) + self.bake_s
                if fastest and last_wait < fastest + INGEST_LAG_S:
                    self.progress.message(
                        f"note: the rolling update completes {last_wait:g} s after the first new "
                        f"task starts, but no rollback alarm can fire before {fastest:g} s; raise "
                        "--time-scale or --bake to give the alarms a chance"
                    )
                self.producer = Producer(self.sqs, self.queue_url, o.rate, seed=o.seed).start()
                self.fleet.start(self.old, o.tasks)
                details["children"] = self.supervisor.pgids()
                (o.out / "run.json").write_text(json.dumps(details, indent=2, default=str) + "\n")
                # Warm-up: the old revision alone, every task reporting, before the deployment.
                end = time.monotonic() + max(o.warmup_s, 0.0)
                while time.monotonic() < end or not all(
                    self.collector.emf_lines.get(n) for n in self.fleet.running[self.old]
                ):
                    self.wait(TICK_S, "warm-up", decide=False)
                decision = self.deploy()
                details["rollback_rounds"] = self.roll_back() if decision.rolled_back else []
                self.producer.stop()
                details["drain"] = self.drain()
                details["children"] = self.supervisor.pgids()
                # Every task stops gracefully before the store is read.
                with _signals_ignored():
                    for version in list(self.fleet.running):
                        self.fleet.stop(version, self.fleet.count(version), record=False)
                    self.fleet.join(o.stop_timeout_s + 10)
                store = check_store(self.db_path, self.producer.produced)
                exactly, ledger_credits = store.report, store.credits
                if store.unreadable:
                    # No verdict without the store; the harm falls back to the tasks' log lines.
                    details["store_unreadable"] = store.unreadable
                details["dead_letter_depth_at_end"] = self._depth(self.dlq_url)[0]
        except Interrupted as exc:
            self.progress.close()
            print(
                f"\nrehearsal: interrupted ({exc}); stopping every child process", file=sys.stderr
            )
            raise
        finally:
            self.progress.close()
            with _signals_ignored():
                if self.producer is not None:
                    self.producer.stop()
                self.supervisor.stop_all(timeout_s=o.stop_timeout_s)
                self.collector.advance(time.time())
                self.collector.close()
        assert decision is not None and self.producer is not None
        details["task_exit_codes"] = dict(self.fleet.exit_codes)
        details["tasks_killed"] = sorted(
            n for n, c in self.fleet.exit_codes.items() if c == -signal.SIGKILL
        )
        details["tasks"] = [
            [round(t - (self.t0 or t), 2), counts] for t, counts in self.fleet.history
        ]
        data = RunData(
            options=o,
            versions=(self.old, self.new),
            rollback_alarms=self.rollback_names,
            healthy_s=self.healthy_s,
            bake_s=self.bake_s,
            t0=self.t0,
            monitoring=self.monitoring,
            produced=self.producer.produced,
            send_failures=self.producer.send_failures,
            credits=self.credits,
            evaluations=list(self.collector.evaluations),
            emf_lines=dict(self.collector.emf_lines),
            cloudwatch_rejects=self.collector.cloudwatch_rejects(),
            ledger_credits=ledger_credits,
        )
        return write_outputs(data, decision, exactly, details)


def run_worker(options: WorkerOptions) -> WorkerOutcome:
    """Run the worker rehearsal described by ``options``; every child is stopped on return."""
    return _Rehearsal(options).run()
