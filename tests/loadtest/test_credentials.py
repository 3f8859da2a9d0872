"""Locust's tokens (loadtest/credentials.py), checked by the service's own verifier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from loadtest.credentials import Credentials
from sample_api.tokens import InvalidToken, Verifier, auth_settings_from
from tests.support.issuer import ISSUER

VERIFIER = Verifier(auth_settings_from(ISSUER.env()))


def test_tokens_are_the_customers_own_and_the_order_systems() -> None:
    creds = Credentials.from_env(ISSUER.load_env())
    user = VERIFIER.verify(creds.headers("u-000042")["Authorization"].removeprefix("Bearer "))
    assert (user.subject, user.scopes) == ("u-000042", frozenset())
    grant = VERIFIER.verify(creds.grant_headers()["Authorization"].removeprefix("Bearer "))
    assert grant.subject == "load-order-service" and "points:grant" in grant.scopes
    assert creds.token("u-1") == creds.token("u-1")  # cached, not re-signed per request
    assert creds.token("u-1") != creds.token("u-2")


def test_without_a_kid_a_single_key_jwks_still_verifies() -> None:
    env = {**ISSUER.load_env(), "LOAD_AUTH_KID": ""}
    token = Credentials.from_env(env).token("u-1")
    assert token is not None and VERIFIER.verify(token).subject == "u-1"


def test_another_audience_is_refused_by_the_service() -> None:
    creds = Credentials.from_env({**ISSUER.load_env(), "LOAD_AUTH_AUDIENCE": "elsewhere"})
    with pytest.raises(InvalidToken, match="aud"):
        VERIFIER.verify(creds.token("u-1") or "")


def test_off_sends_no_token() -> None:
    creds = Credentials.from_env({"LOAD_AUTH_MODE": "off"})
    assert creds.headers("u-1") == {} and creds.grant_headers() == {}


def test_a_key_of_another_kind_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ed25519.pem"
    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="LOAD_AUTH_KEY_FILE must hold an RSA or EC"):
        Credentials.from_env({**ISSUER.load_env(), "LOAD_AUTH_KEY_FILE": str(path)})


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_a_key_file_that_is_no_regular_small_file_is_refused_at_once(
    tmp_path: Path, kind: str
) -> None:
    # A FIFO blocked Locust's start-up forever; /dev/zero filled memory until the OOM killer.
    path = tmp_path / "key.pem"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        path.write_bytes(b"-" * (2 * 1024 * 1024))
    else:
        path = Path("/dev/zero")
    env = {"LOAD_AUTH_KEY_FILE": str(path), "LOAD_AUTH_ISSUER": "i", "LOAD_AUTH_AUDIENCE": "a"}
    with pytest.raises(ValueError, match="LOAD_AUTH_KEY_FILE: cannot read a private key"):
        Credentials.from_env(env)
