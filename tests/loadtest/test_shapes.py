"""Load shapes: rate -> users, settings validation, selection by LOAD_SHAPE."""

from __future__ import annotations

import pytest

from loadtest import shapes


def _concrete(cls: type) -> object:
    return type("Concrete", (cls,), {"abstract": False})()


def test_users_for_rounds_up_and_zero_means_none() -> None:
    assert shapes.users_for(40, 2) == 20
    assert shapes.users_for(41, 2) == 21
    assert shapes.users_for(0.5, 2) == 1
    assert shapes.users_for(0, 2) == 0
    with pytest.raises(ValueError, match="LOAD_USER_RPS"):
        shapes.users_for(10, 0)


@pytest.mark.parametrize("value", ["fast", "-1", "nan", "inf"])
def test_bad_settings_name_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="LOAD_RPS"):
        shapes.setting("LOAD_RPS", {"LOAD_RPS": value})


def test_pick_by_name() -> None:
    assert shapes.pick(None) is None
    assert shapes.pick("") is None
    assert shapes.pick("Step") is shapes.StepShape
    with pytest.raises(ValueError, match="LOAD_SHAPE must be one of steady, step, demo"):
        shapes.pick("spike")


def test_shapes_are_abstract_so_locust_only_runs_the_chosen_one() -> None:
    for cls in shapes.SHAPES.values():
        assert cls.abstract is True


def test_steady_shape_holds_the_rate_and_stops_after_the_duration(monkeypatch) -> None:
    monkeypatch.setenv("LOAD_RPS", "30")
    monkeypatch.setenv("LOAD_USER_RPS", "2")
    monkeypatch.setenv("LOAD_DURATION_S", "60")
    shape = _concrete(shapes.SteadyShape)
    users, rate = shape.tick()
    assert users == 15 and rate >= 1
    shape.start_time -= 61  # as if 61 s had passed
    assert shape.tick() is None


def test_step_shape_moves_above_the_limit(monkeypatch) -> None:
    monkeypatch.setenv("LOAD_RPS", "10")
    monkeypatch.setenv("LOAD_STEP_RPS", "80")
    monkeypatch.setenv("LOAD_STEP_AFTER_S", "30")
    monkeypatch.setenv("LOAD_USER_RPS", "1")
    shape = _concrete(shapes.StepShape)
    assert shape.tick()[0] == 10
    shape.start_time -= 31
    assert shape.tick()[0] == 80
