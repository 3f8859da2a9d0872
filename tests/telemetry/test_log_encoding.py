"""Every log record is exactly one valid JSON object on one line, whatever ``extra`` holds
(issue #11.10): no NaN/Infinity tokens, no dropped records; a field that cannot be encoded is
replaced by a readable stand-in."""

from __future__ import annotations

import json
import logging
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import telemetry

from .conftest import Tel


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class StrReturnsNonStr:
    def __str__(self):  # type: ignore[override]
        return 42


def strict_loads(line: str) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    assert line.isascii()  # escaped by construction: no raw U+2028, no raw control character
    doc = json.loads(line, parse_constant=refuse)
    assert isinstance(doc, dict)
    valid_unicode(doc)
    return doc


def valid_unicode(v: object) -> None:
    """No lone surrogate (an escape strict JSON readers refuse) in any key or string."""
    if isinstance(v, str):
        v.encode("utf-8", "strict")
    elif isinstance(v, dict):
        for k, x in v.items():
            valid_unicode(k)
            valid_unicode(x)
    elif isinstance(v, list):
        for x in v:
            valid_unicode(x)


def records(tel: Tel) -> list[dict]:
    text = tel.out.getvalue()
    assert text.endswith("\n") or not text
    return [strict_loads(line) for line in text.splitlines()]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**30, max_value=10**60),
    st.floats(),
    st.text(alphabet=st.characters(codec=None, exclude_categories=())),
    st.text(alphabet=st.sampled_from('a\n"\\\u2028\x00\ud800\udfff\U0001f600')),
    st.binary(max_size=20),
    st.builds(Unprintable),
    st.builds(StrReturnsNonStr),
    st.builds(object),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=4),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=12,
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(st.sampled_from(["a", "b", "field", "x_y"]), values, max_size=3))
def test_any_extra_values_give_one_valid_line(tel: Tel, extra: dict) -> None:
    tel.out.seek(0)
    tel.out.truncate()
    telemetry.get_logger("enc").warning("with extras", extra=extra)
    (doc,) = records(tel)
    assert doc["message"] == "with extras"
    assert set(extra) <= set(doc)


def _quiet_pytest_capture(monkeypatch) -> None:
    # pytest's own capture handler sits on the root logger too and fails the test when a record
    # cannot be formatted (it re-raises under logging.raiseExceptions); these records are bad on
    # purpose, and what is checked is that telemetry's handler still writes them.
    monkeypatch.setattr(logging, "raiseExceptions", False)


def test_hard_cases_have_readable_stand_ins(tel: Tel, monkeypatch) -> None:
    _quiet_pytest_capture(monkeypatch)
    cyclic: list = [1]
    cyclic.append(cyclic)
    nested: dict = {}
    cursor = nested
    for _ in range(50):
        cursor["n"] = {}
        cursor = cursor["n"]
    telemetry.get_logger("enc").info(
        "hard %s",
        Unprintable(),  # the message argument itself fails to format
        extra={
            "nan": math.nan,
            "inf": [math.inf, -math.inf],
            "huge": 10**5000,
            "big": 2**70,
            "cyclic": cyclic,
            "deep": nested,
            "bytes": b"\xff\x00ok",
            "surrogate": "a\ud800b",
            "obj": Unprintable(),
            "weird": StrReturnsNonStr(),
        },
    )
    (doc,) = records(tel)
    assert doc["message"].startswith("hard %s <arguments not formatted")
    assert doc["nan"] == "nan" and doc["inf"] == ["inf", "-inf"]
    assert doc["huge"].startswith("<int of about 5001 digits")
    assert doc["big"] == str(2**70)
    assert doc["cyclic"][0] == 1 and doc["cyclic"][1].startswith("<circular")
    assert doc["bytes"] == "\\xff\x00ok"
    assert doc["surrogate"] == "a\ufffdb"
    assert doc["obj"] == "<unprintable Unprintable>"
    assert doc["weird"].startswith("<")  # repr of the object, as str() gave no string


def test_records_logged_through_other_loggers_are_never_dropped(tel: Tel, monkeypatch) -> None:
    _quiet_pytest_capture(monkeypatch)
    log = logging.getLogger("plain.app")
    log.error("count %d", "not a number")  # a formatting error in the application's call
    log.info(Unprintable())  # a message object that cannot be printed
    docs = records(tel)
    assert len(docs) == 2
    assert "arguments not formatted" in docs[0]["message"]
    assert "unprintable" in docs[1]["message"] or "arguments not formatted" in docs[1]["message"]
