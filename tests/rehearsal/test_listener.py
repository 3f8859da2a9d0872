"""The weighted listener: per-request split by weight, keep-alive, headers, failures."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rehearsal.listener import SERVED_BY, STATUS_PATH, Record, WeightedListener
from tests.support.processes import free_port


class _Echo(BaseHTTPRequestHandler):
    """A tiny target: answers with its name, the method, path and body it received."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        payload = json.dumps(
            {
                "name": self.server.name,  # type: ignore[attr-defined]
                "method": self.command,
                "path": self.path,
                "body": body,
                "forwarded_for": self.headers.get("X-Forwarded-For"),
                "trace": self.headers.get("X-Amzn-Trace-Id"),
            }
        ).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer


@pytest.fixture
def targets() -> Iterator[dict[str, tuple[str, int]]]:
    servers = {}
    for name in ("blue", "green"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
        server.daemon_threads = True
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
    yield {name: ("127.0.0.1", s.server_address[1]) for name, s in servers.items()}
    for server in servers.values():
        server.shutdown()
        server.server_close()


def _get(conn: http.client.HTTPConnection, path: str = "/x") -> tuple[int, dict, str | None]:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, json.loads(body), resp.getheader(SERVED_BY)


@pytest.mark.parametrize("green", [10, 50, 90])
def test_split_matches_the_weights_per_request_on_one_connection(targets, green: int) -> None:
    n = 1500
    with WeightedListener(targets, weights={"blue": 100 - green, "green": green}, seed=7) as lb:
        conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
        served = [_get(conn)[2] for _ in range(n)]
        conn.close()
    share = served.count("green") / n
    # Binomial standard deviation at n=1500 is at most 1.3 points; allow about 4 of them.
    assert abs(share - green / 100) < 0.05, share
    assert set(served) == {"blue", "green"}


def test_zero_weight_gets_nothing_and_weights_change_live(targets) -> None:
    with WeightedListener(targets, weights={"blue": 100}) as lb:
        conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
        assert {_get(conn)[2] for _ in range(200)} == {"blue"}
        lb.set_weights({"green": 100})
        assert {_get(conn)[2] for _ in range(200)} == {"green"}
        assert lb.counts == {"blue": 200, "green": 200}


def test_the_served_by_header_names_the_target_that_answered(targets) -> None:
    with WeightedListener(targets, weights={"blue": 50, "green": 50}, seed=1) as lb:
        conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
        for _ in range(50):
            _, body, served_by = _get(conn)
            assert body["name"] == served_by


def test_body_method_path_and_forwarding_headers_reach_the_target(targets) -> None:
    seen: list[Record] = []
    with WeightedListener(
        targets, weights={"green": 1}, observer=lambda r, b: seen.append(r)
    ) as lb:
        conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
        payload = json.dumps({"user_id": "u-1", "order_id": "o-1", "amount_jpy": 1200})
        conn.request(
            "POST", "/v1/points/grants?x=1", body=payload,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        resp = conn.getresponse()
        echoed = json.loads(resp.read())
    assert resp.status == 201
    assert echoed["method"] == "POST"
    assert echoed["path"] == "/v1/points/grants?x=1"
    assert echoed["body"] == payload
    assert echoed["forwarded_for"] == "127.0.0.1"
    assert echoed["trace"].startswith("Root=1-")
    assert [(r.target, r.method, r.status) for r in seen] == [("green", "POST", 201)]
    # the record carries the trace id the target got: the report joins it with the spans
    assert seen[0].trace_id == echoed["trace"].removeprefix("Root=")


@pytest.mark.parametrize(
    ("sent", "recorded"),
    [
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
         "1-5759e988-bd862e3fe1be46a994272793"),
        ("Self=1-1-1;Root=1-5759e988-bd862e3fe1be46a994272793", "1-5759e988-bd862e3fe1be46a994272793"),
        ("Root=garbage", None),  # forwarded as sent (the service decides), not recorded
    ],
)  # fmt: skip
def test_a_clients_own_trace_header_is_kept_and_recorded(targets, sent, recorded) -> None:
    seen: list[Record] = []
    with WeightedListener(
        targets, weights={"green": 1}, observer=lambda r, b: seen.append(r)
    ) as lb:
        conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
        conn.request("GET", "/x", headers={"X-Amzn-Trace-Id": sent})
        echoed = json.loads(conn.getresponse().read())
    assert echoed["trace"] == sent
    assert seen[0].trace_id == recorded


def test_a_dead_target_gives_502_not_a_hang(targets) -> None:
    dead = {"blue": targets["blue"], "green": ("127.0.0.1", free_port())}
    with WeightedListener(dead, weights={"green": 100}) as lb:
        conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
        conn.request("GET", "/x")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 502
        assert resp.getheader("Content-Type") == "application/problem+json"
        assert "green" in body["title"]
        assert lb.errors == 1


def test_no_weight_anywhere_gives_503(targets) -> None:
    with WeightedListener(targets, weights={"blue": 0, "green": 0}) as lb:
        conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
        conn.request("GET", "/x")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 503


def test_status_path_reports_weights_and_counts(targets) -> None:
    with WeightedListener(targets, weights={"blue": 90, "green": 10}) as lb:
        conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
        _get(conn)
        conn.request("GET", STATUS_PATH)
        resp = conn.getresponse()
        status = json.loads(resp.read())
    assert status["weights"] == {"blue": 90, "green": 10}
    assert sum(status["served"].values()) == 1


def test_bad_weights_are_refused(targets) -> None:
    lb = WeightedListener(targets)
    try:
        with pytest.raises(ValueError, match="unknown target"):
            lb.set_weights({"purple": 1})
        with pytest.raises(ValueError, match=">= 0"):
            lb.set_weights({"blue": -1})
    finally:
        lb.stop()


def test_drain_waits_for_the_requests_in_flight() -> None:
    release = threading.Event()

    class _Held(_Echo):
        def _answer(self) -> None:
            release.wait(30)
            super()._answer()

        do_GET = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Held)
    server.daemon_threads = True
    server.name = "green"  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answers: list[int] = []
    try:
        with WeightedListener({"green": ("127.0.0.1", server.server_address[1])}) as lb:

            def client() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=30)
                answers.append(_get(conn)[0])

            thread = threading.Thread(target=client)
            thread.start()
            # Wait (bounded) until the request is held by the target.
            for _ in range(200):
                if lb.in_flight("green"):
                    break
                threading.Event().wait(0.05)
            assert lb.in_flight("green") == 1
            assert lb.drain("green", timeout_s=0.2) is False
            release.set()
            assert lb.drain("green", timeout_s=30) is True
            thread.join(30)
            assert answers == [200]
            assert lb.in_flight("green") == 0
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def _non_loopback_ipv4() -> str | None:
    """An address of this machine other than loopback, if it has one (no traffic is sent)."""
    import socket

    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        infos = []
    addresses = {info[4][0] for info in infos}
    return next((a for a in sorted(addresses) if not a.startswith("127.")), None)


def test_listener_and_status_endpoint_bind_loopback_only(
    targets: dict[str, tuple[str, int]],
) -> None:
    # The rehearsal's own surfaces (traffic and /_rehearsal/status) are never on the network.
    import socket

    with WeightedListener(targets) as lb:
        assert lb._server.server_address[0] == "127.0.0.1"
        conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
        conn.request("GET", STATUS_PATH)
        assert conn.getresponse().status == 200
        conn.close()
        other = _non_loopback_ipv4()
        if other is not None:  # a machine with a network address: not reachable there
            with pytest.raises(OSError), socket.create_connection((other, lb.port), timeout=5):
                pass
