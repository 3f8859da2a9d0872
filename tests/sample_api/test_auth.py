"""Who may do what, over real HTTP: the service under gunicorn on 127.0.0.1 with the tests' local
issuer. Every answer is checked against the OpenAPI document, and every refusal against the
stored ledger (read straight from the SQLite file): a refused request writes nothing."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from werkzeug.wrappers import Response

from sample_api.dev_tokens import DevIssuer
from tests.sample_api.conftest import GRANTS, REDEMPTIONS, check_openapi, ledger_snapshot
from tests.support.issuer import ISSUER, ORDER_SERVICE, grant_token, jwks_server, user_token
from tests.support.processes import gunicorn

pytestmark = pytest.mark.slow

HISTORY = "/v1/users/alice/points"


def send(
    base: str, method: str, path: str, token: str | None, body: Any = None, **headers: str
) -> Response:
    """One request over HTTP; the answer as a werkzeug Response, checked against OpenAPI."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    if token is not None:
        headers.setdefault("Authorization", f"Bearer {token}")
    data = json.dumps(body) if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        raw = conn.getresponse()
        response = Response(raw.read(), status=raw.status, headers=raw.getheaders())
    finally:
        conn.close()
    check_openapi(method, path.split("?")[0], response)  # type: ignore[arg-type]
    return response


# -- tokens: the rightful ones and everything the service must refuse ---------------------------

_STRANGER = DevIssuer.create(ISSUER.directory / "stranger")  # the same claims, another key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_with_the_public_key() -> str:
    """Algorithm confusion: HMAC-signed with the issuer's public JWKS as the 'secret'."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": ISSUER.kid}).encode())
    now = int(time.time())
    claims = {"iss": ISSUER.issuer, "aud": ISSUER.audience, "sub": "alice", "iat": now,
              "exp": now + 600, "scope": "points:grant"}  # fmt: skip
    payload = _b64(json.dumps(claims).encode())
    secret = ISSUER.jwks_path.read_bytes()
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def _forged() -> str:
    """Signed by another key that claims the issuer's kid."""
    return jwt.encode(
        {"iss": ISSUER.issuer, "aud": ISSUER.audience, "sub": "alice",
         "iat": int(time.time()), "exp": int(time.time()) + 600, "scope": "points:grant"},
        _STRANGER.private_key, algorithm="ES256", headers={"kid": ISSUER.kid},
    )  # fmt: skip


def _unknown_kid() -> str:
    valid = jwt.decode(user_token("alice"), options={"verify_signature": False})
    return jwt.encode(valid, ISSUER.private_key, "ES256", headers={"kid": "nobody"})


def _unsigned() -> str:
    return jwt.encode(
        {"iss": ISSUER.issuer, "aud": ISSUER.audience, "sub": "alice", "iat": int(time.time()),
         "exp": int(time.time()) + 600}, None, algorithm="none",
    )  # fmt: skip


REFUSED_TOKENS: dict[str, Callable[[], str]] = {
    "forged signature": _forged,
    "expired": lambda: ISSUER.mint("alice", issued_at=time.time() - 7200, ttl_s=3600),
    "wrong audience": lambda: ISSUER.mint("alice", aud="another-service"),
    "wrong issuer": lambda: ISSUER.mint("alice", iss="https://evil.example/"),
    "not yet valid": lambda: ISSUER.mint("alice", nbf=int(time.time()) + 3600),
    "no subject": lambda: ISSUER.mint("alice", sub=None),
    "no expiry": lambda: ISSUER.mint("alice", exp=None),
    "alg none": _unsigned,
    "HS256 with the public key": _hs256_with_the_public_key,
    "unknown kid": lambda: _unknown_kid(),
    "not a JWT": lambda: "not.a.jwt",
    # NumericDate is a JSON number (RFC 7519 section 2); PyJWT alone accepts "1790000000"
    "expiry as a string": lambda: ISSUER.mint("alice", exp=str(int(time.time()) + 600)),
}

CALLERS: dict[str, Callable[[], str | None]] = {
    "anonymous": lambda: None,
    "order service": grant_token,
    "alice": lambda: user_token("alice"),
    "bob": lambda: user_token("bob"),
    "bob with another scope": lambda: ISSUER.mint("bob", scopes=["points:read"]),
}

# (caller, operation) -> expected status and problem type; anything not listed: 403 forbidden.
OPERATIONS = ("grant to alice", "redeem alice's", "read alice's history")
ALLOWED = {
    ("order service", "grant to alice"): 201,
    ("alice", "redeem alice's"): 201,
    ("alice", "read alice's history"): 200,
}


def _expected(caller: str, operation: str) -> tuple[int, str | None]:
    if caller == "anonymous":
        return 401, "unauthorized"
    if (caller, operation) in ALLOWED:
        return ALLOWED[(caller, operation)], None
    if operation == "grant to alice":
        return 403, "insufficient-scope"
    return 403, "forbidden"


def _request(operation: str, n: int) -> tuple[str, str, Any]:
    if operation == "grant to alice":
        return "POST", GRANTS, {"user_id": "alice", "order_id": f"g-{n}", "amount_jpy": 1000}
    if operation == "redeem alice's":
        return "POST", REDEMPTIONS, {"user_id": "alice", "order_id": f"r-{n}", "points": 1}
    return "GET", HISTORY, None


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    db = tmp_path_factory.mktemp("auth") / "points.db"
    env = {**ISSUER.env(), "POINTS_DB_PATH": str(db), "WEB_CONCURRENCY": "1"}
    with gunicorn(env=env) as (base, _):
        # alice has points to redeem
        body = {"user_id": "alice", "order_id": "seed", "amount_jpy": 100_000}
        assert send(base, "POST", GRANTS, grant_token(), body).status_code == 201
        yield base, db


def _check_refusal(response: Response, status: int, slug: str | None) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == f"/problems/{slug}"
    challenge = response.headers.get("WWW-Authenticate", "")
    if status == 401:
        assert challenge.startswith('Bearer realm="points-service"'), challenge
    if slug == "insufficient-scope":
        assert 'error="insufficient_scope"' in challenge and 'scope="points:grant"' in challenge


MATRIX = [(c, o) for c in CALLERS for o in OPERATIONS]


@pytest.mark.parametrize(("caller", "operation"), MATRIX, ids=[f"{c}-{o}" for c, o in MATRIX])
def test_authorisation_matrix(service: tuple[str, Path], caller: str, operation: str) -> None:
    base, db = service
    status, slug = _expected(caller, operation)
    method, path, body = _request(operation, MATRIX.index((caller, operation)))
    before = ledger_snapshot(db)
    response = send(base, method, path, CALLERS[caller](), body)
    if slug is None:
        assert response.status_code == status, response.get_data(as_text=True)
        if method == "POST":
            assert ledger_snapshot(db) != before
    else:
        _check_refusal(response, status, slug)
        assert ledger_snapshot(db) == before


@pytest.mark.parametrize("kind", sorted(REFUSED_TOKENS))
@pytest.mark.parametrize("operation", OPERATIONS)
def test_refused_tokens_get_401_and_write_nothing(
    service: tuple[str, Path], kind: str, operation: str
) -> None:
    base, db = service
    method, path, body = _request(operation, 1000 + len(kind))
    before = ledger_snapshot(db)
    response = send(base, method, path, REFUSED_TOKENS[kind](), body)
    _check_refusal(response, 401, "unauthorized")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert ledger_snapshot(db) == before


@pytest.mark.parametrize(
    "header", ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer a b", "bearer", "Token abc"]
)
def test_malformed_authorization_headers_get_401(service: tuple[str, Path], header: str) -> None:
    base, db = service
    before = ledger_snapshot(db)
    body = {"user_id": "alice", "order_id": "m-1", "amount_jpy": 1000}
    response = send(base, "POST", GRANTS, None, body, Authorization=header)
    _check_refusal(response, 401, "unauthorized")
    assert ledger_snapshot(db) == before


def test_a_bearer_scheme_in_any_case_is_accepted(service: tuple[str, Path]) -> None:
    base, _ = service
    response = send(base, "GET", HISTORY, None, Authorization=f"bEaReR {user_token('alice')}")
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/version", "/openapi.json"])
def test_health_readiness_version_and_openapi_stay_anonymous(
    service: tuple[str, Path], path: str
) -> None:
    assert send(service[0], "GET", path, None).status_code == 200


def test_refusal_comes_before_the_body_is_judged(service: tuple[str, Path]) -> None:
    # An anonymous caller learns nothing about validation: 401, not 400/413/415.
    base, _ = service
    for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/json"}):
        response = send(base, "POST", REDEMPTIONS, None, None, **headers)
        _check_refusal(response, 401, "unauthorized")


def test_order_service_subject_is_no_user(service: tuple[str, Path]) -> None:
    # The grant token's subject is the service; it does not make the service a customer whose
    # history another service could read (and a customer cannot act as the service).
    base, _ = service
    assert send(base, "GET", f"/v1/users/{ORDER_SERVICE}/points", grant_token()).status_code == 200
    response = send(base, "GET", f"/v1/users/{ORDER_SERVICE}/points", user_token("alice"))
    _check_refusal(response, 403, "forbidden")


# -- keys from a JWKS URL: cached, and a failure is a bounded 503 ------------------------------


def test_keys_from_a_jwks_url_are_fetched_once_and_cached(tmp_path: Path) -> None:
    with jwks_server() as jwks:
        env = {**ISSUER.env(), "AUTH_JWKS_FILE": "", "AUTH_JWKS_URL": jwks.url,
               "WEB_CONCURRENCY": "1", "POINTS_DB_PATH": str(tmp_path / "points.db")}  # fmt: skip
        with gunicorn(env=env) as (base, _):
            assert jwks.hits == 0  # start-up does not depend on the issuer
            for _ in range(3):
                assert send(base, "GET", HISTORY, user_token("alice")).status_code == 200
            _check_refusal(send(base, "GET", HISTORY, _forged()), 401, "unauthorized")
            assert jwks.hits == 1


def _drip(listener: socket.socket, stop: threading.Event) -> None:
    """An issuer that answers a JWKS a byte at a time, each within the per-operation timeout."""
    listener.settimeout(0.1)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:  # closed by the test
            return
        with conn:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not stop.wait(0.1):
                try:
                    conn.sendall(b" ")
                except OSError:
                    break


@pytest.mark.parametrize("issuer", ["refuses connections", "never answers", "drips its answer"])
def test_unreachable_keys_give_503_not_a_hang(tmp_path: Path, issuer: str) -> None:
    stop = threading.Event()
    with socket.socket() as silent, contextlib.ExitStack() as stack:
        stack.callback(stop.set)  # before the socket closes
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        if issuer == "never answers":
            silent.listen(8)  # accepted by the kernel, never read: the fetch must time out
        elif issuer == "drips its answer":  # every read succeeds: only a total deadline helps
            silent.listen(8)
            threading.Thread(target=_drip, args=(silent, stop), daemon=True).start()
        else:
            silent.close()
        env = {**ISSUER.env(), "AUTH_JWKS_FILE": "", "WEB_CONCURRENCY": "1",
               "AUTH_JWKS_URL": f"http://127.0.0.1:{port}/jwks.json",
               "AUTH_JWKS_TIMEOUT_S": "0.5", "POINTS_DB_PATH": str(tmp_path / "points.db")}  # fmt: skip
        with gunicorn(env=env) as (base, _):
            for _ in range(2):
                response = send(base, "GET", HISTORY, user_token("alice"))
                _check_refusal(response, 503, "auth-unavailable")
                assert response.headers["Retry-After"] == "1"
            assert send(base, "GET", "/readyz", None).status_code == 200


@pytest.mark.parametrize("problem", ["private key material", "several keys have the kid"])
def test_an_unusable_jwks_from_the_url_gives_503(problem: str) -> None:
    # In process: what the issuer publishes decides. A private RSA key used to reach PyJWT's
    # verify and fail with AttributeError (a 500).
    from sample_api.tokens import AuthSettings, KeysUnavailable, Verifier

    public = json.loads(ISSUER.jwks_path.read_text())["keys"][0]
    if problem == "private key material":
        keys = [{**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ISSUER.private_key)),
                 "kid": ISSUER.kid, "alg": "ES256"}]  # fmt: skip
    else:
        keys = [public, {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(
            _STRANGER.private_key.public_key())), "kid": ISSUER.kid, "alg": "ES256"}]  # fmt: skip
    body = json.dumps({"keys": keys}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        verifier = Verifier(
            AuthSettings(
                issuer=ISSUER.issuer,
                audience=ISSUER.audience,
                jwks_url=f"http://127.0.0.1:{server.server_port}/jwks.json",
                jwks_timeout_s=5,
            )
        )
        with pytest.raises(KeysUnavailable, match=problem):
            verifier.verify(user_token("alice"))
    finally:
        server.shutdown()
        server.server_close()


# -- the local issuer's command line (python -m sample_api.dev_tokens) ---------------------------


def test_dev_tokens_init_again_keeps_the_issuer_unless_new(tmp_path: Path, capsys) -> None:
    """The README's init line run again (another shell) must not swap the keys under a running
    service: tokens minted afterwards would all be refused."""
    from sample_api import dev_tokens

    assert dev_tokens.main(["init", str(tmp_path)]) == 0
    jwks = (tmp_path / "jwks.json").read_text()
    first = capsys.readouterr().out
    assert dev_tokens.main(["init", str(tmp_path)]) == 0
    assert (tmp_path / "jwks.json").read_text() == jwks and capsys.readouterr().out == first
    assert dev_tokens.main(["init", str(tmp_path), "--new"]) == 0
    assert (tmp_path / "jwks.json").read_text() != jwks


@pytest.mark.parametrize(
    "args",
    [
        ["mint", "{dir}", "--sub", "a", "--ttl", "nan"],
        ["mint", "{dir}", "--sub", "a", "--ttl", "-5"],
        ["mint", "{dir}", "--sub", "a", "--ttl", "1e300"],
        ["mint", "{dir}", "--sub", "a", "--ttl", "soon"],
        ["mint", "{dir}", "--sub", " "],
        ["init", "{dir}/jwks.json"],  # a file, not a directory
        ["init", "{dir}/no/such\0dir"],
    ],
)
def test_dev_tokens_bad_input_is_one_line_exit_2(tmp_path: Path, capsys, args: list[str]) -> None:
    from sample_api import dev_tokens

    assert dev_tokens.main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        dev_tokens.main([a.replace("{dir}", str(tmp_path)) for a in args])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("dev_tokens: ") and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "jwks",
    [
        "[]",
        "nope",
        '{"keys": []}',
        '{"keys": [{}]}',
        '{"keys": [{"kid": 5}]}',  # PyJWT refuses a kid that is not a string, with a traceback
        "another issuer's key",  # jwks.json of another key pair: every token would be refused
    ],
)
@pytest.mark.parametrize("command", ["mint", "init"])
def test_dev_tokens_a_damaged_issuer_directory_is_one_line_exit_2(
    tmp_path: Path, capsys, jwks: str, command: str
) -> None:
    """A jwks.json that is not this tool's, or not the public half of private.pem (found by
    review r24: tracebacks in mint, and init printed settings whose keys refuse every token)."""
    from sample_api import dev_tokens

    if jwks == "another issuer's key":
        jwks = DevIssuer.create(tmp_path / "other").jwks_path.read_text()
    assert dev_tokens.main(["init", str(tmp_path)]) == 0
    (tmp_path / "jwks.json").write_text(jwks)
    capsys.readouterr()
    args = ["mint", str(tmp_path), "--sub", "a"] if command == "mint" else ["init", str(tmp_path)]
    with pytest.raises(SystemExit) as info:
        dev_tokens.main(args)
    out, err = capsys.readouterr()
    assert info.value.code == 2 and err.startswith("dev_tokens: ") and err.count("\n") == 1, err
    assert "jwks.json" in err and out == ""
