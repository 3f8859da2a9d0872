"""Load shape arithmetic: rate -> users, settings validation, selection by LOAD_SHAPE.

Only ``loadtest.rates`` is imported here: importing Locust would monkey-patch this test process
with gevent. The shape classes themselves run in the real Locust in ``test_locustfile.py``.
"""

from __future__ import annotations

import sys

import pytest

from loadtest import rates


def test_users_for_rounds_up_and_zero_means_none() -> None:
    assert rates.users_for(40, 2) == 20
    assert rates.users_for(41, 2) == 21
    assert rates.users_for(0.5, 2) == 1
    assert rates.users_for(0, 2) == 0
    with pytest.raises(ValueError, match="LOAD_USER_RPS"):
        rates.users_for(10, 0)
    assert rates.users_for(rates.MAX_USERS * 2, 2) == rates.MAX_USERS
    for rps, user_rps in ((rates.MAX_USERS * 2 + 1, 2), (1e300, 1e-300), (40, 1e-300)):
        with pytest.raises(ValueError, match="users, more than 100,000"):
            rates.users_for(rps, user_rps)


@pytest.mark.parametrize(
    "env",
    [
        {"LOAD_RPS": "1e300"},
        {"LOAD_USER_RPS": "1e-300"},
        {"LOAD_RPS": "1e300", "LOAD_USER_RPS": "1e-300"},  # inf users
        {"LOAD_STEP_RPS": "200001", "LOAD_USER_RPS": "2"},
    ],
)
def test_a_rate_asking_for_more_users_than_locust_can_be_given_is_refused(
    env: dict[str, str],
) -> None:
    # LOAD_RPS=1e300 passed the check and asked Locust for ~5e299 users
    with pytest.raises(ValueError, match=r"^LOAD_(STEP_)?RPS must ask for at most 100,000 users"):
        rates.check(env)


@pytest.mark.parametrize("value", ["fast", "-1", "nan", "inf", "\uff15", "\u0663", "1_0"])
def test_bad_settings_name_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="LOAD_RPS"):
        rates.setting("LOAD_RPS", {"LOAD_RPS": value})


def test_shape_names() -> None:
    assert rates.shape_name(None) is None
    assert rates.shape_name(" ") is None
    assert rates.shape_name("Step") == "step"
    with pytest.raises(ValueError, match="LOAD_SHAPE must be one of steady, step, demo"):
        rates.shape_name("spike")


def test_steady_holds_the_rate_and_stops_after_the_duration() -> None:
    env = {"LOAD_RPS": "30", "LOAD_USER_RPS": "2", "LOAD_DURATION_S": "60", "LOAD_RAMP_S": "3"}
    assert rates.tick("steady", 0, env) == (15, 5.0)
    assert rates.tick("steady", 59.9, env) == (15, 5.0)
    assert rates.tick("steady", 60, env) is None


def test_step_moves_above_the_limit() -> None:
    env = {"LOAD_RPS": "10", "LOAD_STEP_RPS": "80", "LOAD_STEP_AFTER_S": "30", "LOAD_USER_RPS": "1"}
    assert rates.tick("step", 29, env)[0] == 10
    assert rates.tick("step", 31, env)[0] == 80
    assert rates.tick("demo", 31, env)[0] == 10


def test_defaults_run_until_stopped() -> None:
    assert rates.tick("demo", 10_000, {}) == (20, pytest.approx(20 / 3))


def test_this_module_did_not_import_locust() -> None:
    assert "locust" not in sys.modules


def test_locusts_run_time_ends_a_shape_that_runs_until_stopped() -> None:
    assert rates.tick("demo", 14.9, {}, limit_s=15) is not None
    assert rates.tick("demo", 15, {}, limit_s=15) is None
    assert rates.tick("demo", 10_000, {}, limit_s=None) is not None
    # Whichever comes first: LOAD_DURATION_S or --run-time.
    assert rates.tick("steady", 6, {"LOAD_DURATION_S": "5"}, limit_s=60) is None


BAD_SETTINGS = [
    *((name, value) for name in rates.DEFAULTS for value in ("fast", "-1", "nan", "inf", "1e999")),
    ("LOAD_USER_RPS", "0"),
    ("LOAD_USER_POOL", "0"),
    ("LOAD_USER_POOL", "2.5"),
    ("LOAD_RETRY_SHARE", "1.01"),
    ("LOAD_SHAPE", "spike"),
]


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS)
def test_every_bad_setting_is_refused_up_front_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must ") as info:
        rates.check({name: value})
    assert "\n" not in str(info.value)


def test_defaults_and_blank_values_pass_the_check() -> None:
    rates.check({})
    rates.check({name: " " for name in rates.DEFAULTS})
    rates.check({"LOAD_RPS": "200000", "LOAD_STEP_RPS": "200000", "LOAD_USER_RPS": "2"})
    assert rates.setting("LOAD_USER_POOL", {"LOAD_USER_POOL": ""}) == 500
    assert rates.setting("LOAD_RETRY_SHARE", {"LOAD_RETRY_SHARE": "1"}) == 1.0
    assert rates.setting("LOAD_RPS", {"LOAD_RPS": "0"}) == 0  # no load is a valid rate


@pytest.mark.parametrize(
    ("env", "users", "per_user"),
    [({"LOAD_RPS": "0.5"}, 1, 0.5), ({"LOAD_RPS": "3"}, 2, 1.5), ({"LOAD_RPS": "40"}, 20, 2.0),
     ({"LOAD_RPS": "2", "LOAD_USER_RPS": "1e20"}, 1, 2.0)],
)  # fmt: skip
def test_a_shapes_users_together_make_its_rate_not_more(
    env: dict[str, str], users: int, per_user: float
) -> None:
    # LOAD_RPS=0.5 started one user making LOAD_USER_RPS=2 requests/s: four times the rate.
    assert rates.tick("steady", 10, env)[0] == users
    assert rates.user_rps_at("steady", 10, env) == pytest.approx(per_user)
    assert rates.user_rps_at(None, 10, env) == rates.setting("LOAD_USER_RPS", env)


def test_the_step_shapes_users_share_each_stages_rate() -> None:
    env = {"LOAD_RPS": "1", "LOAD_STEP_RPS": "5", "LOAD_STEP_AFTER_S": "60"}
    assert rates.user_rps_at("step", 0, env) == 1.0  # one user
    assert rates.user_rps_at("step", 60, env) == pytest.approx(5 / 3)  # three users
