"""Config.from_env: defaults, parsing, and one-line errors naming the variable."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal

import pytest

from points.formats import PRESETS
from sample_api import Config, ConfigError, RateLimitSettings, create_app
from tests.sample_api.conftest import AUTH
from tests.support.issuer import ISSUER
from tests.support.processes import ROOT

# Every variable a runnable service needs besides the defaults: its token issuer.
AUTH_ENV = ISSUER.env()


def test_defaults() -> None:
    cfg = Config.from_env(AUTH_ENV)
    assert cfg.version == "dev"
    assert cfg.store == "sqlite"
    assert cfg.db_path == "./points.db"
    assert cfg.points_rate == Decimal("0.01")
    assert cfg.rate_limit == RateLimitSettings()
    assert cfg.rate_limit.enabled is False
    assert cfg.max_body_bytes == 16 * 1024
    assert cfg.formats == PRESETS["v1"]  # reads ledger format 1, writes 1


def test_values_are_read() -> None:
    cfg = Config.from_env(
        {
            **AUTH_ENV,
            "APP_VERSION": "v2",
            "POINTS_DB_PATH": "/data/p.db",
            "POINTS_RATE": "0.05",
            "RATE_LIMIT_ENABLED": "TRUE",
            "RATE_LIMIT_RPS": "2.5",
            "RATE_LIMIT_BURST": "3",
            "RATE_LIMIT_MODE": "Reject",
            "RATE_LIMIT_MAX_WAIT_S": "0",
            "POINTS_TABLE": "t",
        }
    )
    assert (cfg.version, cfg.db_path, cfg.points_rate) == ("v2", "/data/p.db", Decimal("0.05"))
    assert cfg.rate_limit == RateLimitSettings(True, 2.5, 3, "reject", 0.0)
    assert cfg.storage_env()["POINTS_TABLE"] == "t"
    assert cfg.storage_env()["POINTS_DB_PATH"] == "/data/p.db"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT_RPS", "abc"),
        ("RATE_LIMIT_RPS", "0"),
        ("RATE_LIMIT_RPS", "-1"),
        ("RATE_LIMIT_RPS", "nan"),
        ("RATE_LIMIT_RPS", "inf"),
        ("RATE_LIMIT_BURST", "0"),
        ("RATE_LIMIT_BURST", "1.5"),
        ("RATE_LIMIT_MODE", "sometimes"),
        ("RATE_LIMIT_MAX_WAIT_S", "-1"),
        ("RATE_LIMIT_ENABLED", "maybe"),
        ("POINTS_RATE", "lots"),
        ("POINTS_RATE", "2"),
        ("POINTS_STORE", "postgres"),
        ("POINTS_FORMATS_READ", "1,two"),
        ("POINTS_FORMAT_WRITE", "x"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({**AUTH_ENV, name: value})
    message = str(info.value)
    assert name in message and repr(value) in message and "\n" not in message


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RATE_LIMIT_RPS", "abc", "RATE_LIMIT_RPS must be a number; got 'abc'"),
        ("POINTS_RATE", "2", "POINTS_RATE must be between 0 and 1, got '2'"),
        # gunicorn's own settings, read by sample_api/gunicorn.conf.py
        (
            "WEB_CONCURRENCY",
            "0",
            "WEB_CONCURRENCY must be between 1 and 64; got '0'",
        ),
        (
            "GUNICORN_TIMEOUT",
            "soon",
            "GUNICORN_TIMEOUT must be a whole number; got 'soon'",
        ),
        (
            "GUNICORN_CLIENT_TIMEOUT",
            "0",
            "GUNICORN_CLIENT_TIMEOUT must be between 1 and 3600; got '0'",
        ),
        (
            "GUNICORN_KEEPALIVE",
            "-5",
            "GUNICORN_KEEPALIVE must be between 1 and 3600; got '-5'",
        ),
        (
            "GUNICORN_DRAIN_S",
            "2.5",
            "GUNICORN_DRAIN_S must be a whole number; got '2.5'",
        ),
        (
            "GUNICORN_THREADS",
            "0",
            "GUNICORN_THREADS must be between 1 and 256; got '0'",
        ),
    ],
)
def test_gunicorn_stops_with_one_line_on_a_bad_variable(
    name: str, value: str, message: str
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "sample_api/gunicorn.conf.py",
            "sample_api.wsgi:app",
        ],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **AUTH_ENV, name: value, "BIND": "127.0.0.1:0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"points-service: configuration error: {message}"]


def test_wsgi_import_exits_with_gunicorns_app_load_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sample_api.wsgi"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **AUTH_ENV, "RATE_LIMIT_MODE": "later"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 4
    assert "RATE_LIMIT_MODE" in proc.stderr and "Traceback" not in proc.stderr


def test_backend_settings_are_checked_at_start_up_too() -> None:
    from sample_api.app import check_config

    with pytest.raises(ConfigError, match="POINTS_TABLE"):
        check_config({**AUTH_ENV, "POINTS_STORE": "dynamodb"})
    with pytest.raises(ConfigError, match="POINTS_TABLE"):
        create_app(Config(store="dynamodb", auth=AUTH))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "sample_api/gunicorn.conf.py",
            "sample_api.wsgi:app",
        ],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            **AUTH_ENV,
            "POINTS_STORE": "dynamodb",
            "BIND": "127.0.0.1:0",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "POINTS_TABLE" in proc.stderr


def _gunicorn_settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]):
    """Load sample_api/gunicorn.conf.py the way gunicorn does (its module-level names become
    settings) under exactly ``env``."""
    import runpy

    from gunicorn.config import Config as GunicornConfig

    names = ("PORT", "BIND", "WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_TIMEOUT")
    more = ("GUNICORN_CLIENT_TIMEOUT", "GUNICORN_KEEPALIVE", "GUNICORN_DRAIN_S")
    for name in (*names, *more, "GUNICORN_GRACEFUL_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**AUTH_ENV, **env}.items():
        monkeypatch.setenv(name, value)
    namespace = runpy.run_path(str(ROOT / "sample_api" / "gunicorn.conf.py"))
    cfg = GunicornConfig()
    for name, value in namespace.items():
        if name in cfg.settings:
            cfg.set(name, value)
    return cfg


def test_gunicorn_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _gunicorn_settings(monkeypatch, {})
    assert cfg.bind == ["0.0.0.0:8080"]
    assert cfg.workers == 2 and cfg.threads == 8
    assert cfg.graceful_timeout < 30  # ECS's default stopTimeout: in-flight requests drain first
    assert cfg.accesslog is None and cfg.errorlog == "-"  # JSON access lines come from telemetry
    assert cfg.worker_class.client_timeout_s == 5


def test_keepalive_outlasts_the_load_balancers_idle_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The balancer must close an idle connection first, or it may send on one the server is
    # closing (502): ALB's default idle timeout is 60 s; the stack sets its own.
    stack = (ROOT / "deploy" / "stack.yaml").read_text()
    alb_idle = int(re.search(r"idle_timeout\.timeout_seconds, Value: \"(\d+)\"", stack).group(1))
    cfg = _gunicorn_settings(monkeypatch, {})
    assert cfg.keepalive > max(60, alb_idle)
    # ...and the whole stop (drain + graceful) fits in ECS's stopTimeout in the same stack.
    stop_timeout = int(re.search(r"StopTimeout: (\d+)", stack).group(1))
    drain = int(cfg.when_ready.__globals__["drain_s"])
    assert drain + cfg.graceful_timeout < stop_timeout


def test_gunicorn_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _gunicorn_settings(monkeypatch, {"PORT": "9000", "WEB_CONCURRENCY": "5"})
    assert cfg.bind == ["0.0.0.0:9000"] and cfg.workers == 5
    cfg = _gunicorn_settings(monkeypatch, {"PORT": "9000", "BIND": "127.0.0.1:7000"})
    assert cfg.bind == ["127.0.0.1:7000"]


def test_gunicorn_post_fork_configures_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    import telemetry

    calls: list[tuple] = []
    monkeypatch.setattr(telemetry, "configure", lambda *a, **k: calls.append((a, k)))
    cfg = _gunicorn_settings(monkeypatch, {})
    cfg.post_fork(None, None)
    assert calls == [((), {})]  # bare configure(): the previous settings, fresh threads


# -- authentication settings ---------------------------------------------------------------------


def test_no_issuer_configured_refuses_to_start() -> None:
    # Safe by default: without an issuer and its keys the service does not run open.
    with pytest.raises(ConfigError, match="AUTH_ISSUER is required"):
        Config.from_env({})
    with pytest.raises(ConfigError, match="AUTH_ISSUER is required"):
        create_app(Config())
    off = Config.from_env({"AUTH_MODE": "off"})  # only by saying so
    assert off.auth.mode == "off"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"AUTH_MODE": "maybe"}, "AUTH_MODE must be one of jwt, off; got 'maybe'"),
        ({"AUTH_ISSUER": ""}, "AUTH_ISSUER is required (or AUTH_MODE=off for local use)"),
        ({"AUTH_AUDIENCE": " "}, "AUTH_AUDIENCE is required (or AUTH_MODE=off for local use)"),
        ({"AUTH_JWKS_FILE": ""}, "exactly one of AUTH_JWKS_FILE and AUTH_JWKS_URL is required"),
        ({"AUTH_JWKS_URL": "https://issuer.example/jwks"}, "exactly one of AUTH_JWKS_FILE"),
        (
            {"AUTH_JWKS_FILE": "", "AUTH_JWKS_URL": "issuer/jwks"},
            "AUTH_JWKS_URL must be an http(s) URL",
        ),
        (  # anyone on the path could swap the keys; plain http only on loopback
            {"AUTH_JWKS_FILE": "", "AUTH_JWKS_URL": "http://issuer.example/jwks.json"},
            "AUTH_JWKS_URL must be an https URL",
        ),
        (
            {"AUTH_JWKS_FILE": "", "AUTH_JWKS_URL": "http://10.0.0.1/jwks.json"},
            "AUTH_JWKS_URL must be an https URL",
        ),
        ({"AUTH_ALGORITHMS": "HS256"}, "AUTH_ALGORITHMS must name some of RS256"),
        ({"AUTH_ALGORITHMS": "none"}, "AUTH_ALGORITHMS must name some of RS256"),
        ({"AUTH_ALGORITHMS": "ES256,HS512"}, "got 'ES256,HS512'"),
        ({"AUTH_LEEWAY_S": "-1"}, "AUTH_LEEWAY_S must be between 0 and 300; got '-1'"),
        ({"AUTH_JWKS_TIMEOUT_S": "0"}, "AUTH_JWKS_TIMEOUT_S must be between 0.1 and 30"),
        ({"AUTH_JWKS_CACHE_S": "x"}, "AUTH_JWKS_CACHE_S must be a number; got 'x'"),
    ],
)
def test_bad_auth_settings_name_the_variable(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env({**AUTH_ENV, **changes})
    assert message in str(info.value) and "\n" not in str(info.value)


def _ec_jwk(kid: str, *, private: bool = False) -> dict:
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key if private else key.public_key()))
    return {**jwk, "kid": kid, "alg": "ES256", "use": "sig"}


def _rsa_private_jwk(kid: str) -> dict:
    # An RSA private key used to get past start-up and then fail every request with a 500.
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {**json.loads(RSAAlgorithm.to_jwk(key)), "kid": kid, "alg": "RS256"}


_JWKS_FILES = {
    "private": lambda: [_ec_jwk("k0"), _rsa_private_jwk("k1")],
    "duplicate kid": lambda: [_ec_jwk("k1"), _ec_jwk("k1")],
}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read a JWKS"),
        ("{not json", "cannot read a JWKS"),
        ('{"keys": []}', "cannot read a JWKS"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "holds no RSA or EC signing key"),
        ("[1, 2]", "holds no RSA or EC signing key"),
        ("private", "holds private key material"),
        ("duplicate kid", "several keys have the kid 'k1'"),
    ],
)
def test_unusable_jwks_file_stops_start_up(tmp_path, content: str | None, reason: str) -> None:
    from sample_api.app import check_config

    path = tmp_path / "jwks.json"
    if content in _JWKS_FILES:
        content = json.dumps({"keys": _JWKS_FILES[content]()})
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as info:
        check_config({**AUTH_ENV, "AUTH_JWKS_FILE": str(path)})
    assert str(info.value).startswith("AUTH_JWKS_FILE: ") and reason in str(info.value)
    assert "\n" not in str(info.value)


def test_gunicorn_without_an_issuer_stops_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "sample_api/gunicorn.conf.py",
         "sample_api.wsgi:app"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "BIND": "127.0.0.1:0"},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "points-service: configuration error: AUTH_ISSUER is required (or AUTH_MODE=off for "
        "local use)"
    ]
