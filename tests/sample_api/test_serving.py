"""When the worker's main thread hands a request to a thread (``request_complete``).

A thread must never take a request whose body is still on its way: it would wait for it (up to
``GUNICORN_CLIENT_TIMEOUT``), and enough such peers hold every thread, health checks included.
"""

from __future__ import annotations

import pytest

from sample_api.serving import MAX_GATHERED_BODY, expects_continue, request_complete

HEAD = b"POST /v1/points/grants HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
CHUNKED = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"2\r\n{}\r\n0\r\n\r\n", id="one chunk"),
        pytest.param(b"1\r\n{\r\n1\r\n}\r\n0\r\n\r\n", id="two chunks"),
        pytest.param(b"2;name=value\r\n{}\r\n0\r\n\r\n", id="chunk extension"),
        pytest.param(b"2\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n", id="trailer"),
        pytest.param(b"02\r\n{}\r\n00\r\n\r\n", id="leading zeros"),
        pytest.param(b"0\r\n\r\n", id="empty body"),
        # gunicorn refuses these at once: a thread answers 400 without waiting
        pytest.param(b"zz\r\n{}\r\n0\r\n\r\n", id="bad size"),
        pytest.param(b"2\r\n{}XX0\r\n\r\n", id="data longer than its size"),
    ],
)
def test_whole_or_refusable_chunked_bodies_are_handed_over(body: bytes) -> None:
    assert request_complete(CHUNKED + body)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"5\r\nab", id="chunk not whole"),
        pytest.param(b"2\r\n{}\r\n", id="no last chunk"),
        pytest.param(b"2\r\n{}\r\n0\r\n", id="last chunk without the empty line"),
        pytest.param(b"2\r\n{}\r\n0\r\nX-Trailer: 1\r\n", id="trailers not ended"),
        # each looked whole to a substring check ("0" then CRLF CRLF at the end) while a thread
        # then waited for the rest: 24 such peers delayed a health check by 4.5 s
        pytest.param(b"ffffffffff\r\nabc\r\n0\r\n\r\n", id="huge chunk size"),
        pytest.param(b"9\r\n{\r\n0\r\n\r\n\r\n", id="chunk data that looks like the end"),
        pytest.param(b"010\r\n{}\r\n\r\n", id="size with a leading zero"),
        pytest.param(b"5\r\n\r\n0\r\n\r\n", id="data holding CRLF 0"),
    ],
)
def test_chunked_bodies_still_on_their_way_are_gathered(body: bytes) -> None:
    assert not request_complete(CHUNKED + body)


def test_a_chunked_body_over_the_gathering_limit_is_handed_over() -> None:
    # the app refuses bodies over 16 KiB as it reads them: no wait for the rest
    body = b"fffff\r\n" + b" " * (MAX_GATHERED_BODY + 1)
    assert request_complete(CHUNKED + body)


EXPECTING = HEAD + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n"


def test_a_body_behind_expect_100_continue_is_gathered_like_any_other() -> None:
    # a thread took the request at the end of its head and waited for a body that may never come
    assert expects_continue(EXPECTING)
    assert not request_complete(EXPECTING)
    assert request_complete(EXPECTING + b"{}")


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(EXPECTING[:-2], id="head not whole"),
        pytest.param(EXPECTING.replace(b"HTTP/1.1", b"HTTP/1.0"), id="HTTP/1.0 ignores it"),
        pytest.param(EXPECTING.replace(b"100-continue", b"200-ok"), id="another expectation"),
    ],
)
def test_no_100_continue_is_due(head: bytes) -> None:
    assert not expects_continue(head)


def test_another_expectation_is_handed_over_for_gunicorn_to_refuse() -> None:
    assert request_complete(EXPECTING.replace(b"100-continue", b"200-ok"))
