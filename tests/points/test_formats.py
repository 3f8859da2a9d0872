"""The ledger format rules: declared formats, the stored representation, the one-way door."""

from __future__ import annotations

import pytest

from points.formats import (
    PRESETS,
    Formats,
    check_transition,
    decode_points,
    encode_points,
    formats_from,
    preset,
)
from points.settings import ConfigError


def test_defaults_are_v1_the_format_before_the_change() -> None:
    assert formats_from({}) == PRESETS["v1"] == Formats.of({1}, 1)
    assert formats_from({"POINTS_FORMATS_READ": " ", "POINTS_FORMAT_WRITE": ""}) == PRESETS["v1"]


@pytest.mark.parametrize(
    ("read", "write", "expected"),
    [("1,2", "1", PRESETS["v2"]), ("2, 1", "2", PRESETS["v3"]), ("1,1", "1", PRESETS["v1"])],
)
def test_declared_formats_are_parsed(read: str, write: str, expected: Formats) -> None:
    env = {"POINTS_FORMATS_READ": read, "POINTS_FORMAT_WRITE": write}
    assert formats_from(env) == expected
    assert formats_from(expected.to_env()) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"POINTS_FORMATS_READ": "1,x"},
            "POINTS_FORMATS_READ must be comma-separated ledger format numbers",
        ),
        (
            {"POINTS_FORMATS_READ": "1,,2"},
            "POINTS_FORMATS_READ must be comma-separated ledger format numbers",
        ),
        ({"POINTS_FORMAT_WRITE": "-1"}, "POINTS_FORMAT_WRITE must be a ledger format number"),
        ({"POINTS_FORMAT_WRITE": "1.0"}, "POINTS_FORMAT_WRITE must be a ledger format number"),
        ({"POINTS_FORMAT_WRITE": "\u0661"}, "POINTS_FORMAT_WRITE must be a ledger format number"),
        ({"POINTS_FORMAT_WRITE": "2"}, "POINTS_FORMAT_WRITE=2 must be one of POINTS_FORMATS_READ"),
        ({"POINTS_FORMATS_READ": "1,3"}, "^POINTS_FORMATS_READ: ledger format 3 is unknown to"),
        # formats are numbered from 1: 0 is no format, not an unknown one
        (
            {"POINTS_FORMATS_READ": "0", "POINTS_FORMAT_WRITE": "0"},
            "^POINTS_FORMATS_READ must be comma-separated ledger format numbers from 1 to 999",
        ),
        ({"POINTS_FORMAT_WRITE": "00"}, "^POINTS_FORMAT_WRITE must be a ledger format number"),
        ({"POINTS_FORMAT_WRITE": "7"}, "^POINTS_FORMAT_WRITE: ledger format 7 is unknown"),
        # a huge value is cut in the message, not echoed whole
        ({"POINTS_FORMAT_WRITE": "9" * 100_000}, "POINTS_FORMAT_WRITE must be a ledger format"),
        ({"POINTS_FORMATS_READ": "x" * 100_000}, "POINTS_FORMATS_READ must be comma-separated"),
    ],
)
def test_bad_declarations_are_one_line_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        formats_from(env)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


@pytest.mark.parametrize("name", ["POINTS_FORMATS_READ", "POINTS_FORMAT_WRITE"])
def test_a_huge_bad_declaration_is_quoted_briefly(name: str) -> None:
    """A task definition's value may be anything: the one-line error (the guard's, the app's at
    start-up) quotes its start, not 5,000 characters."""
    with pytest.raises(ConfigError, match=name) as info:
        formats_from({name: "1" * 5000 + "x"})
    assert len(str(info.value)) < 200


def test_presets_by_name() -> None:
    assert preset("v2") == Formats.of({1, 2}, 1)
    with pytest.raises(ConfigError, match="unknown version 'v4': expected one of v1, v2, v3"):
        preset("v4")


@pytest.mark.parametrize("points", [0, 1, 123, 10_000_000])
def test_each_format_round_trips_whole_points(points: int) -> None:
    assert encode_points(points, 1) == points
    assert encode_points(points, 2) == points * 1000  # milli-points
    for fmt in (1, 2):
        assert decode_points(encode_points(points, fmt), fmt) == points


def test_a_value_that_is_not_whole_points_or_an_unknown_format_does_not_decode() -> None:
    assert decode_points(2250, 2) is None  # 2.25 points: not representable in this build
    assert decode_points(5, 7) is None


V1, V2, V3 = PRESETS["v1"], PRESETS["v2"], PRESETS["v3"]


@pytest.mark.parametrize(
    ("running", "candidate", "ok"),
    [
        ("v1", "v2", True),  # prepare
        ("v2", "v3", True),  # activate
        ("v1", "v3", False),  # straight through the door
        ("v3", "v2", True),  # rollback after activation: safe
        ("v3", "v1", False),  # rollback across the door
        ("v2", "v1", True),  # rollback of the prepare version
        ("v1", "v1", True),
        ("v3", "v3", True),
    ],
)
def test_the_guard_decisions(running: str, candidate: str, ok: bool) -> None:
    decision = check_transition(
        PRESETS[running], PRESETS[candidate], running_name=running, candidate_name=candidate
    )
    assert decision.ok is ok
    assert "\n" not in decision.message
    assert decision.message.startswith("safe" if ok else "one-way door")


def test_deploying_across_the_door_names_the_prepare_version() -> None:
    decision = check_transition(V1, V3, running_name="v1", candidate_name="v3")
    assert decision.message == (
        "one-way door: v3 writes ledger format 2, which v1 (the rollback target; reads 1, "
        "writes 1) cannot read; deploy the prepare version first (reads 1,2, writes 1)"
    )


def test_rolling_back_across_the_door_says_roll_forward() -> None:
    decision = check_transition(V3, V1, running_name="v3", candidate_name="v1")
    assert not decision.ok
    assert "v3 writes ledger format 2" in decision.message
    assert "roll forward" in decision.message


def test_the_store_marker_counts_too() -> None:
    # v2 -> v1 is safe by declaration, not once v3 has written format 2 to the store.
    assert check_transition(V2, V1, store_formats=[1]).ok
    decision = check_transition(V2, V1, store_formats=[1, 2], candidate_name="v1")
    assert not decision.ok
    assert "the store holds ledger format 2, which v1" in decision.message
