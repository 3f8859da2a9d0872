"""The deployment controller, and the rollback decision: warm-up on blue, the traffic steps of the
deployment configuration, the bake time; roll back as soon as any rollback alarm is in ALARM
(:func:`alarms_to_roll_back`), as CodeDeploy does with ``DEPLOYMENT_STOP_ON_ALARM``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from rehearsal.collector import Collector
from rehearsal.explain import alarm_line
from rehearsal.judge import what_fired
from rehearsal.listener import WeightedListener
from rehearsal.model import ROLLED_BACK, SUCCEEDED, Decision, Options, is_reported_transition
from rehearsal.progress import Progress, format_line
from rehearsal.progress import offset as offset_text
from rehearsal.schedule import Schedule
from rehearsal.supervisor import Supervisor
from rehearsal.timeline import Timeline

#: Evaluate an alarm period only once its last one-second EMF window has surely arrived: the
#: services flush every second, so data for ``[T-1, T)`` is on our pipe shortly after ``T``.
#: The services flush 2 ms after each window ends; 1 s covers a busy machine's scheduling delays
#: (CloudWatch has an ingestion delay of its own, undocumented).
INGEST_LAG_S = 1.0
#: How often the controller looks at the alarm states (CodeDeploy's polling interval is not
#: documented).
TICK_S = 0.25
#: The longest wait for a version's in-flight requests before it is stopped (the ALB's
#: deregistration delay, 300 s by default, shortened). A regressed green at 100 % has a long
#: queue in front of its limiter: ~20 s of requests at the defaults.
DRAIN_S = 30.0
#: A version that has served traffic this long without writing one EMF line has no telemetry.
EMF_GRACE_S = 10.0
_NO_EMF = (
    "{name} wrote no EMF metrics to stdout within {seconds:.0f} s of serving traffic, so no "
    "alarm could ever fire; is telemetry configured in the app (telemetry.configure + "
    "telemetry.flask.instrument)?"
)


#: Another rollback trigger beside the alarms (the judge): called with the time (epoch s) at every
#: tick, returns the names of what fires (empty: nothing).
Trigger = Callable[[float], list[str]]


def alarms_to_roll_back(states: Mapping[str, str], rollback_alarms: Collection[str]) -> list[str]:
    """The rollback decision: the rollback alarms in ALARM, sorted; roll back when not empty."""
    return sorted(n for n in rollback_alarms if states.get(n) == "ALARM")


class Controller:
    """Drives one deployment through the listener's weights and decides its outcome."""

    def __init__(
        self,
        rollback_alarms: Collection[str],
        listener: WeightedListener,
        supervisor: Supervisor,
        collector: Collector,
        timeline: Timeline,
        progress: Progress,
        alarm_defs: Mapping[str, Any] | None = None,
        triggers: Sequence[Trigger] = (),
    ) -> None:
        """``alarm_defs``: the ``alarms.synth`` JSON document, to explain a rollback."""
        self.rollback_alarms = frozenset(rollback_alarms)
        self.alarm_defs = alarm_defs or {}
        #: epoch seconds each version was stopped at (after its drain)
        self.stopped_at: dict[str, float] = {}
        self.triggers = tuple(triggers)
        self.listener = listener
        self.supervisor = supervisor
        self.collector = collector
        self.timeline = timeline
        self.progress = progress

    def tick(self, phase: str, green_percent: int) -> dict[str, str]:
        """Run the evaluations due, print the changes that matter, update the progress line;
        return the alarm states."""
        now = time.time()
        timeline, progress = self.timeline, self.progress
        for ev in self.collector.advance(now - INGEST_LAG_S):
            if is_reported_transition(ev, self.rollback_alarms):
                progress.message(
                    f"{offset_text(timeline.since_t0(ev.time), 6)} alarm {ev.alarm}: "
                    f"{ev.previous_state} -> {ev.state}"
                )
        states = self.collector.last_states
        t = timeline.since_t0(now)
        shown = {n: s for n, s in states.items() if n in self.rollback_alarms}
        window = timeline.window(now, 5.0)
        progress.update(
            format_line(t, phase, green_percent, window, shown),
            format_line(t, phase, green_percent, window, shown, compact=True),
        )
        return states

    def deploy(self, options: Options, plan: Schedule) -> tuple[Decision, threading.Thread]:
        """Warm-up, traffic steps and bake; returns the decision and the thread that drains and
        stops the version that lost (join it before reading the final state)."""
        listener, timeline, collector, progress = (
            self.listener,
            self.timeline,
            self.collector,
            self.progress,
        )
        # Warm-up: blue alone, production as it was, until load arrives (bounded).
        warm_end = time.monotonic() + options.warmup_s
        timeline.planned_t0 = time.time() + options.warmup_s
        hard_end = warm_end + 30
        timeline.set_traffic(time.time(), 0)
        while time.monotonic() < warm_end or (
            sum(listener.counts.values()) == 0 and time.monotonic() < hard_end
        ):
            self.tick("warm-up", 0)
            time.sleep(TICK_S)
        if sum(listener.counts.values()) == 0:
            raise RuntimeError("Locust sent no traffic through the listener during the warm-up")
        # Without the versions' metrics the alarms would never see anything: say so, do not
        # "pass".
        emf_end = time.monotonic() + EMF_GRACE_S
        while not collector.emf_lines.get("blue") and time.monotonic() < emf_end:
            self.tick("warm-up", 0)
            time.sleep(TICK_S)
        if not collector.emf_lines.get("blue"):
            raise RuntimeError(_NO_EMF.format(name="blue", seconds=options.warmup_s + EMF_GRACE_S))

        t0 = time.time()
        timeline.t0 = t0
        current = -1
        deadline = t0 + plan.total_s
        while True:
            now = time.time()
            offset = now - t0
            percent = plan.percent_at(offset)
            if percent != current:
                listener.set_weights({"blue": 100 - percent, "green": percent})
                timeline.set_traffic(now, percent)
                progress.message(
                    f"{offset_text(offset, 6)} traffic: green {percent}%, blue {100 - percent}%"
                )
                current = percent
            if offset > EMF_GRACE_S and not collector.emf_lines.get("green"):
                raise RuntimeError(_NO_EMF.format(name="green", seconds=EMF_GRACE_S))
            phase = "shifting" if offset < plan.shift_s else "baking"
            firing = alarms_to_roll_back(self.tick(phase, percent), self.rollback_alarms)
            firing += [name for trigger in self.triggers for name in trigger(time.time())]
            if firing:
                decided = time.time()
                listener.set_weights({"blue": 100, "green": 0})
                timeline.set_traffic(decided, 0)
                progress.message(
                    f"{offset_text(decided - t0, 6)} ROLLBACK: {'; '.join(map(what_fired, firing))} at green "
                    f"{percent}% -> all traffic to blue, stopping green"
                )
                for name in firing:  # why, in one line per alarm (the report's first line)
                    progress.message(f"        why: {self._why(name, collector, t0, decided)}")
                decision = Decision(
                    ROLLED_BACK,
                    decided,
                    tuple(firing),
                    alarm_time_s=round(decided - t0, 2),
                    green_percent_at_alarm=percent,
                )
                # Green drains its in-flight requests (some wait in its limiter) in the
                # background, as an ECS task set does; the controller keeps watching meanwhile.
                return decision, self._stop_in_background(decision.stopped)
            if now >= deadline:
                progress.message(
                    f"{offset_text(offset, 6)} bake time over, no alarm: terminating blue (original task set)"
                )
                decision = Decision(SUCCEEDED, time.time())
                return decision, self._stop_in_background(decision.stopped)
            time.sleep(TICK_S)

    def observe(self, seconds: float, decision: Decision) -> None:
        """Keep watching (and showing) for ``seconds`` after the decision."""
        end = time.monotonic() + seconds
        percent = 0 if decision.rolled_back else 100
        while time.monotonic() < end:
            self.tick("after", percent)
            time.sleep(TICK_S)

    def _why(self, name: str, collector: Collector, t0: float, decided: float) -> str:
        """One line on why ``name`` fired: a trigger's own explanation (the judge's verdict), or
        the alarm's metric, value, threshold and periods."""
        for trigger in self.triggers:
            explain = getattr(trigger, "explain", None)
            found = explain() if getattr(trigger, "name", None) == name and explain else None
            if found:
                return found[0]
        return alarm_line(name, self.alarm_defs, collector.evaluations, t0, decided)

    def _stop_in_background(self, name: str) -> threading.Thread:
        stopper = threading.Thread(target=self._drain_and_stop, args=(name,), daemon=True)
        stopper.start()
        return stopper

    def _drain_and_stop(self, name: str) -> None:
        """Let the requests already sent to ``name`` finish (bounded), then stop it: stopping it
        at once would reset them, which clients of an ALB (deregistration delay) never see."""
        self.listener.drain(name, DRAIN_S)
        self.listener.close_idle(name)
        self.supervisor.stop(name)
        self.stopped_at[name] = time.time()
