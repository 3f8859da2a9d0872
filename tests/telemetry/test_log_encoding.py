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


def test_a_record_larger_than_the_output_buffer_is_cut_not_dropped(tel: Tel) -> None:
    """A record whose fields are megabytes long (a 10 MB string, a long list of long strings, a
    huge message) used to be dropped whole by the output buffer (4 MiB): it is written, its
    longest fields cut, within ``MAX_LINE_BYTES``."""
    import os
    import threading

    from telemetry import _logging, _output

    read_fd, write_fd = os.pipe()
    chunks: list[bytes] = []

    def read() -> None:
        while chunk := os.read(read_fd, 1 << 20):
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stream = os.fdopen(write_fd, "w")
    tel.out = stream  # type: ignore[assignment]
    telemetry.configure("test-svc", "v9", sink=tel.sink, log_stream=stream)
    dropped = telemetry.counts().get("output_dropped", 0)
    log = telemetry.get_logger("big")
    log.warning(
        "huge %s",
        "m" * 5_000_000,
        extra={
            "big": "y\n\u2028" * 4_000_000,
            "many": ["z" * 100_000] * 60,
            "wide": {f"k{i}": "w" * 1000 for i in range(900)},
            "ok": 1,
        },
    )
    log.warning("small", extra={"ok": 2})
    assert _output.flush(10)
    stream.close()
    reader.join(10)
    os.close(read_fd)
    lines = b"".join(chunks).decode().splitlines()
    assert len(lines) == 2
    assert all(len(line) <= _logging.MAX_LINE_BYTES for line in lines)
    big, small = (strict_loads(line) for line in lines)
    assert big["ok"] == 1 and small["ok"] == 2
    assert big["message"].startswith("huge mmm") and "<cut:" in big["message"]
    assert big["big"].startswith("y\n\u2028y") and "<cut:" in big["big"]
    assert big["level"] == "WARNING" and big["logger"] == "big"
    assert telemetry.counts().get("output_dropped", 0) == dropped


def test_a_record_with_too_many_long_fields_keeps_its_core_fields(tel: Tel) -> None:
    from telemetry import _logging

    extra = {f"field{i}": "v" * 1000 for i in range(2000)}
    extra["k" * 1_000_000] = 1  # a key longer than any line
    telemetry.get_logger("wide").warning("wide", extra=extra)
    (line,) = tel.out.getvalue().splitlines()
    assert len(line) <= _logging.MAX_LINE_BYTES
    doc = strict_loads(line)
    assert doc["message"] == "wide" and doc["logger"] == "wide"
    assert doc["fields_cut"] == 2001
