"""The runner's pure helpers: each version's environment follows the alarm spec whatever the
caller's shell exports; the least time a rollback alarm needs to fire."""

from __future__ import annotations

from pathlib import Path

from alarms import Evaluation, load_spec, rollback_alarm_names, synth
from rehearsal.controller import alarms_to_roll_back
from rehearsal.model import is_reported_transition
from rehearsal.runner import DEFAULT_SPEC, Options, child_env, fastest_alarm_s


def test_service_namespace_and_version_are_the_specs_and_emf_goes_to_stdout(
    tmp_path: Path, monkeypatch
) -> None:
    # A shell set up for a real ECS service: EMF to an agent, another namespace.
    monkeypatch.setenv("AWS_EMF_NAMESPACE", "Elsewhere")
    monkeypatch.setenv("AWS_EMF_ENVIRONMENT", "ECS")
    monkeypatch.setenv("AWS_EMF_AGENT_ENDPOINT", "tcp://127.0.0.1:25888")
    options = Options(scenario="regression", out=tmp_path)
    env = child_env(options, "2.0.1", tmp_path / "p.db", 8123, True, "orders", "Shop")
    assert env["APP_VERSION"] == "2.0.1"
    assert env["OTEL_SERVICE_NAME"] == "orders"
    assert env["AWS_EMF_NAMESPACE"] == "Shop"
    assert env["AWS_EMF_ENVIRONMENT"] == "" and env["AWS_EMF_AGENT_ENDPOINT"] == ""
    assert env["BIND"] == "127.0.0.1:8123"
    assert env["RATE_LIMIT_ENABLED"] == "true" and float(env["RATE_LIMIT_RPS"]) == 2
    # The listener drains a version before it is stopped; gunicorn's own drain would only wait.
    assert env["GUNICORN_DRAIN_S"] == "0"


def test_numbers_reach_the_children_exactly_as_given(tmp_path: Path) -> None:
    options = Options(
        scenario="regression",
        out=tmp_path,
        green_limit_rps=40.0000001,
        green_limit_max_wait_s=1234567.5,
    )
    env = child_env(options, "v2", tmp_path / "p.db", 1, True)
    assert float(env["RATE_LIMIT_RPS"]) == 40.0000001
    assert float(env["RATE_LIMIT_MAX_WAIT_S"]) == 1234567.5


def test_the_healthy_green_has_no_limiter(tmp_path: Path) -> None:
    env = child_env(Options(scenario="healthy", out=tmp_path), "v2", tmp_path / "p.db", 1, False)
    assert env["RATE_LIMIT_ENABLED"] == "false" and "RATE_LIMIT_RPS" not in env


def test_fastest_alarm_is_m_periods_of_the_quickest_rollback_alarm() -> None:
    spec = load_spec(str(DEFAULT_SPEC))
    for profile, period in (("rehearsal", 10), ("production", 60)):
        defs = synth(spec, format="json", profile=profile)
        names = rollback_alarm_names(defs)
        # 2 of 3 periods (the spec's profiles); the ALB alarms' 60 s periods are slower.
        assert fastest_alarm_s(defs, names) == 2 * period
    assert fastest_alarm_s(defs, []) is None


def test_the_rollback_decision_is_any_rollback_alarm_in_alarm() -> None:
    watched = ["svc-green-latency-avg", "svc-green-error-rate"]
    assert (
        alarms_to_roll_back({"svc-green-latency-avg": "OK", "svc-latency-avg": "ALARM"}, watched)
        == []
    )
    states = {"svc-green-error-rate": "ALARM", "svc-green-latency-avg": "ALARM"}
    assert alarms_to_roll_back(states, watched) == ["svc-green-error-rate", "svc-green-latency-avg"]
    assert alarms_to_roll_back({"svc-green-latency-avg": "INSUFFICIENT_DATA"}, watched) == []


def test_a_reported_transition_is_a_watched_alarms_change_or_any_alarm_firing() -> None:
    def ev(alarm: str, prev: str, state: str) -> Evaluation:
        return Evaluation(0.0, alarm, state, prev, None, (), "")

    watched = {"w"}
    assert is_reported_transition(ev("w", "INSUFFICIENT_DATA", "OK"), watched)
    assert is_reported_transition(ev("other", "OK", "ALARM"), watched)
    assert not is_reported_transition(ev("other", "ALARM", "OK"), watched)
    assert not is_reported_transition(ev("w", "OK", "OK"), watched)
