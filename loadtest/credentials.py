"""Bearer tokens for the load: minted here, per simulated customer, with a signing key the
service's issuer trusts. No Locust import (like ``rates.py``), so it can be checked up front.

The points service accepts grants only from a token with the ``points:grant`` scope (the order
system) and a customer's redemptions and history only with that customer's own token (``sub``).
A load over many customers therefore needs to mint tokens, not carry one:

* ``LOAD_AUTH_KEY_FILE``: PEM private key (EC P-256/P-384 -> ES256/ES384, RSA -> RS256) whose
  public half is in the service's JWKS (locally: ``python -m sample_api.dev_tokens init DIR``
  makes ``DIR/private.pem``; on AWS: a load-test key added to the stage's JWKS, never a
  production issuer's key);
* ``LOAD_AUTH_ISSUER``, ``LOAD_AUTH_AUDIENCE``: the service's ``AUTH_ISSUER`` and
  ``AUTH_AUDIENCE``; ``LOAD_AUTH_KID``: the key's ``kid`` in that JWKS (optional when the JWKS
  holds one key);
* ``LOAD_AUTH_GRANT_SUBJECT`` (default ``load-order-service``): the ``sub`` of grant tokens;
  ``LOAD_AUTH_TTL_S`` (default 900): token lifetime, re-minted a minute before expiry;
* ``LOAD_AUTH_MODE=off``: send no tokens (only for a service started with ``AUTH_MODE=off``).

Tokens are never written anywhere: they live in the Locust process's memory.
"""

from __future__ import annotations

import math
import os
import stat
import time
from collections.abc import Iterable, Mapping

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

GRANT_SCOPE = "points:grant"
_REFRESH_S = 60.0  # re-mint this long before expiry: a request never carries a dying token
_MAX_KEY_BYTES = 64 * 1024  # an RSA-16384 PEM is ~13 KB
_MAX_CACHED = 10_000  # tokens kept per process (a huge LOAD_USER_POOL must not grow memory)


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


def _read_key(path: str) -> bytes:
    """A key file's bytes: a regular file of at most ``_MAX_KEY_BYTES``. Opened without blocking
    and checked first, since reading a FIFO waited forever and ``/dev/zero`` filled memory."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        data = f.read(_MAX_KEY_BYTES + 1)
    if len(data) > _MAX_KEY_BYTES:
        raise ValueError(f"larger than {_MAX_KEY_BYTES} bytes, not a PEM key")
    return data


def _algorithm(key: object, path: str) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
    raise ValueError(f"LOAD_AUTH_KEY_FILE must hold an RSA or EC (P-256/384/521) key: {path!r}")


class Credentials:
    """Mints and caches tokens; :meth:`headers` gives a request's ``Authorization`` header."""

    def __init__(
        self,
        key: object | None,
        *,
        algorithm: str = "ES256",
        issuer: str = "",
        audience: str = "",
        kid: str | None = None,
        grant_subject: str = "load-order-service",
        ttl_s: float = 900.0,
    ) -> None:
        self._key = key
        self._algorithm = algorithm
        self._issuer, self._audience, self._kid = issuer, audience, kid
        self.grant_subject = grant_subject
        self._ttl_s = ttl_s
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        """Read the ``LOAD_AUTH_*`` settings; ``ValueError`` with one line naming the variable."""
        env = os.environ if env is None else env
        mode = (_text(env, "LOAD_AUTH_MODE") or "jwt").lower()
        if mode not in ("jwt", "off"):
            raise ValueError(
                f"LOAD_AUTH_MODE must be jwt or off, got {env.get('LOAD_AUTH_MODE')!r}"
            )
        if mode == "off":
            return cls(None)
        path = _text(env, "LOAD_AUTH_KEY_FILE")
        if path is None:
            raise ValueError(
                "LOAD_AUTH_KEY_FILE is required: a private key the service's issuer trusts "
                "(or LOAD_AUTH_MODE=off for a service with AUTH_MODE=off)"
            )
        try:
            key = serialization.load_pem_private_key(_read_key(path), password=None)
        except (OSError, ValueError, TypeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(
                f"LOAD_AUTH_KEY_FILE: cannot read a private key from {path!r}: {reason}"
            ) from None
        algorithm = _algorithm(key, path)
        for name in ("LOAD_AUTH_ISSUER", "LOAD_AUTH_AUDIENCE"):
            if _text(env, name) is None:
                raise ValueError(f"{name} is required with LOAD_AUTH_KEY_FILE")
        ttl_text = _text(env, "LOAD_AUTH_TTL_S") or "900"
        try:
            if not ttl_text.isascii() or "_" in ttl_text:
                raise ValueError  # float() also reads non-ASCII digits and '1_0'
            ttl_s = float(ttl_text)
        except ValueError:
            ttl_s = math.nan
        if not math.isfinite(ttl_s) or not 2 * _REFRESH_S <= ttl_s <= 86400:
            raise ValueError(
                f"LOAD_AUTH_TTL_S must be a number of seconds from {2 * _REFRESH_S:g} to 86400, "
                f"got {env.get('LOAD_AUTH_TTL_S')!r}"
            )
        return cls(
            key,
            algorithm=algorithm,
            issuer=_text(env, "LOAD_AUTH_ISSUER") or "",
            audience=_text(env, "LOAD_AUTH_AUDIENCE") or "",
            kid=_text(env, "LOAD_AUTH_KID"),
            grant_subject=_text(env, "LOAD_AUTH_GRANT_SUBJECT") or "load-order-service",
            ttl_s=ttl_s,
        )

    def token(self, subject: str, scopes: Iterable[str] = ()) -> str | None:
        """A valid token for ``subject`` (cached until a minute before it expires)."""
        if self._key is None:
            return None
        scope = " ".join(scopes)
        now = time.time()
        cached = self._cache.get((subject, scope))
        if cached is not None and cached[1] - _REFRESH_S > now:
            return cached[0]
        claims = {"iss": self._issuer, "aud": self._audience, "sub": subject,
                  "iat": int(now), "exp": int(now + self._ttl_s)}  # fmt: skip
        if scope:
            claims["scope"] = scope
        headers = {"kid": self._kid} if self._kid else None
        token = jwt.encode(claims, self._key, algorithm=self._algorithm, headers=headers)  # type: ignore[arg-type]
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[(subject, scope)] = (token, claims["exp"])
        return token

    def headers(self, subject: str, scopes: Iterable[str] = ()) -> dict[str, str]:
        """``{"Authorization": "Bearer ..."}`` for ``subject``, or ``{}`` with ``LOAD_AUTH_MODE=off``."""
        token = self.token(subject, scopes)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def grant_headers(self) -> dict[str, str]:
        """The order system's header: may grant points to any customer."""
        return self.headers(self.grant_subject, (GRANT_SCOPE,))
