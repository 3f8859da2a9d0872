"""Bearer-token verification: JWTs signed by a configured issuer, checked with PyJWT.

No Flask here (:mod:`sample_api.auth` is the glue). :class:`AuthSettings` holds the settings,
:func:`auth_settings_from` reads them from the environment and :class:`Verifier` turns a token
into a :class:`Principal` or raises :class:`InvalidToken` (the client's fault: 401) or
:class:`KeysUnavailable` (the issuer's keys cannot be fetched: 503).

What a token must be (RFC 7519, RFC 9068 for ``scope``):

* a JWS signed with an algorithm of ``AUTH_ALGORITHMS`` (asymmetric only: ``none`` and the HMAC
  family are refused at start-up, so a public key can never be used as an HMAC secret), by a key
  of the issuer's JWKS whose own algorithm matches the header's (PyJWT checks this);
* ``kid`` naming a key of the JWKS (it may be left out only when the JWKS holds one key);
* claims ``iss`` = ``AUTH_ISSUER``, ``aud`` containing ``AUTH_AUDIENCE``, ``sub`` (a string),
  ``exp`` and ``iat`` (numbers); ``nbf`` is checked when present; ``AUTH_LEEWAY_S`` of clock skew.

Keys: ``AUTH_JWKS_FILE`` is read once at start (a bad file stops start-up);
``AUTH_JWKS_URL`` (https, or http to loopback) is fetched by PyJWT's ``PyJWKClient`` on first
use and reused for ``AUTH_JWKS_CACHE_S``; a request waits at most ``AUTH_JWKS_TIMEOUT_S`` for a
fetch in total; an unknown ``kid`` refetches at most once per 30 s, so forged ``kid`` values
cannot make the service hammer the issuer. A JWKS with private key material or two keys with
one ``kid`` is refused (file: at start; URL: 503).
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError, PyJWKSetError, PyJWTError

from points.settings import ConfigError, env_choice, env_float, env_url
from sample_api.environment_variables import (
    AUTH_ALGORITHMS,
    AUTH_AUDIENCE,
    AUTH_ISSUER,
    AUTH_JWKS_CACHE_S,
    AUTH_JWKS_FILE,
    AUTH_JWKS_TIMEOUT_S,
    AUTH_JWKS_URL,
    AUTH_LEEWAY_S,
    AUTH_MODE,
)

__all__ = [
    "ALLOWED_ALGORITHMS",
    "GRANT_SCOPE",
    "AuthMode",
    "AuthSettings",
    "InvalidToken",
    "KeysUnavailable",
    "Principal",
    "Verifier",
    "auth_settings_from",
]

#: The scope a token needs to grant points (the order system's tokens carry it).
GRANT_SCOPE = "points:grant"

#: Signature algorithms ``AUTH_ALGORITHMS`` may name: public-key ones only.
ALLOWED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
)
DEFAULT_ALGORITHMS = ("RS256", "ES256")
_KEY_TYPES = {"RSA", "EC"}  # what the allowed algorithms verify with; "oct" keys are skipped
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat")

AuthMode = Literal["jwt", "off"]


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """How requests are authenticated. The default (``jwt`` with no keys) refuses to start:
    build it with :func:`auth_settings_from` or name the issuer and its keys."""

    mode: AuthMode = "jwt"
    issuer: str | None = None
    audience: str | None = None
    jwks_file: str | None = None
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway_s: float = 30.0
    jwks_timeout_s: float = 2.0
    jwks_cache_s: float = 300.0

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the variable when ``jwt`` mode lacks what it needs."""
        if self.mode == "off":
            return
        if not self.issuer:
            raise ConfigError(f"{AUTH_ISSUER} is required (or {AUTH_MODE}=off for local use)")
        if not self.audience:
            raise ConfigError(f"{AUTH_AUDIENCE} is required (or {AUTH_MODE}=off for local use)")
        if bool(self.jwks_file) == bool(self.jwks_url):
            raise ConfigError(
                f"exactly one of {AUTH_JWKS_FILE} and {AUTH_JWKS_URL} is required "
                f"(or {AUTH_MODE}=off for local use)"
            )
        if self.jwks_url and not _trusted_transport(self.jwks_url):
            raise ConfigError(
                f"{AUTH_JWKS_URL} must be an https URL (plain http only on loopback: anyone on "
                f"the path could swap the keys); got {self.jwks_url!r}"
            )
        bad = [a for a in self.algorithms if a not in ALLOWED_ALGORITHMS]
        if bad or not self.algorithms:
            raise ConfigError(
                f"{AUTH_ALGORITHMS} must name some of {', '.join(ALLOWED_ALGORITHMS)}; "
                f"got {','.join(self.algorithms)!r}"
            )

    def to_dict(self) -> dict[str, object]:
        """What ``/version`` may show (nothing secret: the issuer's name and public keys' place)."""
        return {"mode": self.mode, "issuer": self.issuer, "audience": self.audience}


def _trusted_transport(url: str) -> bool:
    """https, or http to this host (127.0.0.0/8, ::1, localhost): local development and tests."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


def auth_settings_from(env: Mapping[str, str]) -> AuthSettings:
    """Read the ``AUTH_*`` variables (names in :mod:`sample_api.environment_variables`) and
    check them; raise :class:`ConfigError` naming the first bad one."""
    algorithms = tuple(
        a.strip().upper() for a in (_text(env, AUTH_ALGORITHMS) or "").split(",") if a.strip()
    )
    settings = AuthSettings(
        mode=env_choice(env, AUTH_MODE, "jwt", ("jwt", "off")),
        issuer=_text(env, AUTH_ISSUER),
        audience=_text(env, AUTH_AUDIENCE),
        jwks_file=_text(env, AUTH_JWKS_FILE),
        jwks_url=env_url(env, AUTH_JWKS_URL),
        algorithms=algorithms or DEFAULT_ALGORITHMS,
        leeway_s=env_float(env, AUTH_LEEWAY_S, 30.0, low=0, high=300),
        jwks_timeout_s=env_float(env, AUTH_JWKS_TIMEOUT_S, 2.0, low=0.1, high=30),
        jwks_cache_s=env_float(env, AUTH_JWKS_CACHE_S, 300.0, low=1, high=86400),
    )
    settings.check()
    return settings


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for: ``subject`` (``sub``: a user id, or a service's id) and
    the ``scope`` claim's space-separated scopes."""

    subject: str
    scopes: frozenset[str]


class InvalidToken(Exception):
    """The token cannot be accepted (401). ``str()`` is a short reason safe to show the client."""


class KeysUnavailable(Exception):
    """The issuer's keys cannot be had right now (503); the request may be retried."""


class _Keys(Protocol):
    def key_for(self, kid: str | None) -> PyJWK: ...


def _usable(keys: list[PyJWK]) -> list[PyJWK]:
    return [k for k in keys if k.key_type in _KEY_TYPES and k.public_key_use in ("sig", None)]


def _keys_problem(keys: list[PyJWK]) -> str | None:
    """Why a JWKS must not be used, or None. Private key material means the issuer's signing key
    has leaked (anyone could sign, and PyJWT cannot verify with an RSA private key); keys sharing
    a ``kid`` make the key a token names ambiguous (RFC 7517 section 4.5)."""
    seen: set[str | None] = set()
    for key in keys:
        if hasattr(key.key, "private_bytes"):  # cryptography's private key classes
            return f"key {key.key_id!r} holds private key material (publish only public keys)"
        if key.key_id is not None and key.key_id in seen:
            return f"several keys have the kid {key.key_id!r}"
        seen.add(key.key_id)
    return None


def _pick(keys: list[PyJWK], kid: str | None) -> PyJWK | None:
    if kid is None:
        return keys[0] if len(keys) == 1 else None
    return next((k for k in keys if k.key_id == kid), None)


class _FileKeys:
    """A JWKS file, read once (a rotation is a new task with a new file)."""

    def __init__(self, path: str) -> None:
        try:
            data = json.loads(Path(path).read_text("utf-8"))
            keys = _usable(PyJWKSet.from_dict(data).keys if isinstance(data, dict) else [])
        except (OSError, ValueError, PyJWTError) as exc:
            raise ConfigError(
                f"{AUTH_JWKS_FILE}: cannot read a JWKS from {path!r}: {exc}"
            ) from None
        problem = _keys_problem(keys)
        if problem:
            raise ConfigError(f"{AUTH_JWKS_FILE}: {path!r}: {problem}")
        if not keys:
            raise ConfigError(f"{AUTH_JWKS_FILE}: {path!r} holds no RSA or EC signing key")
        self._keys = keys

    def key_for(self, kid: str | None) -> PyJWK:
        key = _pick(self._keys, kid)
        if key is None:
            raise InvalidToken("the token's kid names no key of the issuer")
        return key


class _BoundedJWKClient(PyJWKClient):
    """PyJWT's client with a deadline on the whole fetch, not only on each network operation.

    urllib's ``timeout`` bounds each socket operation, so an issuer that drips its answer a byte
    at a time held request threads without end (all of a worker's, health checks included). The
    fetch runs in one daemon thread per process (single flight: concurrent requests share it);
    a caller waits at most ``deadline_s`` for it and then gets PyJWKClientConnectionError (503).
    A fetch that never ends holds that one thread only, never a request's.
    """

    def __init__(self, url: str, *, deadline_s: float, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._deadline_s = deadline_s
        self._flight_lock = threading.Lock()
        self._flight: Future[Any] | None = None

    def _run(self, future: Future[Any]) -> None:
        try:
            future.set_result(super().fetch_data())
        except BaseException as exc:  # handed to the waiting requests
            future.set_exception(exc)

    def fetch_data(self) -> Any:
        with self._flight_lock:
            future = self._flight
            if future is None or future.done():
                future = self._flight = Future()
                threading.Thread(
                    target=self._run, args=(future,), name="jwks-fetch", daemon=True
                ).start()
        try:
            return future.result(timeout=self._deadline_s)
        except FutureTimeout:
            raise PyJWKClientConnectionError(
                f"the JWKS did not arrive within {self._deadline_s:g} s"
            ) from None


#: Least time between two refetches for an unknown kid (PyJWT's default cooldown).
REFRESH_COOLDOWN_S = 30.0


class _UrlKeys:
    """A JWKS URL through PyJWT's client: cached, each fetch bounded in total, refetch on an
    unknown kid at most once per :data:`REFRESH_COOLDOWN_S` (successful or not)."""

    def __init__(self, url: str, timeout_s: float, cache_s: float) -> None:
        self._client = _BoundedJWKClient(
            url, deadline_s=timeout_s, cache_jwk_set=True, lifespan=cache_s, timeout=timeout_s
        )
        self._refresh_lock = threading.Lock()
        self._last_refresh = float("-inf")

    def _may_refresh(self) -> bool:
        # Never waits (PyJWT's own refresh holds a lock across the fetch, which queued every
        # request thread behind a slow issuer).
        with self._refresh_lock:
            now = time.monotonic()
            if now - self._last_refresh < REFRESH_COOLDOWN_S:
                return False
            self._last_refresh = now
            return True

    def _keys(self, *, refresh: bool) -> list[PyJWK]:
        keys = _usable(self._client.get_jwk_set(refresh=refresh).keys)
        problem = _keys_problem(keys)
        if problem:
            raise KeysUnavailable(f"the issuer's JWKS is unusable: {problem}")
        return keys

    def key_for(self, kid: str | None) -> PyJWK:
        try:
            key = _pick(self._keys(refresh=False), kid)
            if key is None and kid is not None and self._may_refresh():
                key = _pick(self._keys(refresh=True), kid)
        except PyJWKClientConnectionError as exc:
            raise KeysUnavailable(f"the issuer's keys cannot be fetched: {exc}") from None
        except (PyJWKSetError, PyJWKClientError) as exc:
            raise KeysUnavailable(f"the issuer's JWKS is unusable: {exc}") from None
        if key is None:
            raise InvalidToken("the token's kid names no key of the issuer")
        return key


class Verifier:
    """Checks bearer tokens against :class:`AuthSettings` (``jwt`` mode).

    Raises :class:`ConfigError` at construction for a JWKS file that cannot be used.
    """

    def __init__(self, settings: AuthSettings) -> None:
        settings.check()
        self.settings = settings
        self._keys: _Keys = (
            _FileKeys(settings.jwks_file)
            if settings.jwks_file
            else _UrlKeys(settings.jwks_url or "", settings.jwks_timeout_s, settings.jwks_cache_s)
        )

    def verify(self, token: str) -> Principal:
        """The principal of a valid ``token``; :class:`InvalidToken` or :class:`KeysUnavailable`."""
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:
            raise InvalidToken("the token is not a well-formed JWT") from None
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the token's kid is not a string")
        if header.get("alg") not in s.algorithms:
            raise InvalidToken("the token's signature algorithm is not accepted")
        key = self._keys.key_for(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(s.algorithms),
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_s,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token is not meant for this service (aud)") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token is from another issuer (iss)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the token lacks the {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except (PyJWTError, ValueError, TypeError):  # e.g. a claim of a JSON type PyJWT rejects
            raise InvalidToken("the token is invalid") from None
        for name in ("exp", "iat", "nbf"):  # NumericDate (RFC 7519 section 2); PyJWT takes "123"
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise InvalidToken(f"the token's {name} claim is not a number")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the token's sub claim is not a string")
        scope = claims.get("scope", "")
        scopes = frozenset(scope.split()) if isinstance(scope, str) else frozenset()
        return Principal(subject=subject, scopes=scopes)
