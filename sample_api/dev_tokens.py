"""A local token issuer for development, tests and the rehearsal: never for production.

It makes an ES256 key pair in a directory (``private.pem``, mode 0600, and ``jwks.json``, the
public half as a JWKS) and mints tokens the service accepts when started with :meth:`env`'s
variables. In production the issuer is your identity provider (Cognito, Auth0, Okta, ...), the
service gets its JWKS URL, and the order system gets its ``points:grant`` tokens from it.

    python -m sample_api.dev_tokens init KEYDIR          # prints the AUTH_* lines to export
                                                         # (reuses KEYDIR's issuer; --new replaces it)
    python -m sample_api.dev_tokens mint KEYDIR --sub alice
    python -m sample_api.dev_tokens mint KEYDIR --sub order-service --scope points:grant

Keep ``KEYDIR`` outside anything you publish (the rehearsal uses a temporary directory that it
deletes at the end, never its ``out`` directory).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from sample_api.environment_variables import (
    AUTH_AUDIENCE,
    AUTH_ISSUER,
    AUTH_JWKS_FILE,
    AUTH_MODE,
)

__all__ = ["DEV_AUDIENCE", "DEV_ISSUER", "DevIssuer"]

DEV_ISSUER = "urn:safe-deploy-ecs:dev-issuer"
DEV_AUDIENCE = "points-service"
PRIVATE_KEY = "private.pem"
JWKS = "jwks.json"
ALGORITHM = "ES256"


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start (no window where another user could read it); an existing file
    # is narrowed to 0600 too before it is overwritten.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class DevIssuer:
    """A key pair in ``directory`` and the claims the service is configured to expect."""

    directory: Path
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    issuer: str = DEV_ISSUER
    audience: str = DEV_AUDIENCE

    @property
    def private_key_path(self) -> Path:
        return self.directory / PRIVATE_KEY

    @property
    def jwks_path(self) -> Path:
        return self.directory / JWKS

    @classmethod
    def create(cls, directory: Path | str) -> DevIssuer:
        """A new key pair in ``directory`` (created 0700 if missing; files replaced)."""
        directory = Path(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        kid = f"dev-{secrets.token_hex(6)}"
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(directory / PRIVATE_KEY, pem)
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
        (directory / JWKS).write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n")
        return cls(directory, kid, key)

    @classmethod
    def load(cls, directory: Path | str) -> DevIssuer:
        """The issuer :meth:`create` made in ``directory``. Raises ``OSError`` (a file cannot be
        read) or ``ValueError`` naming the file that is not what :meth:`create` wrote (including
        a ``jwks.json`` that is not the public half of ``private.pem``: the service would refuse
        every token minted with it)."""
        directory = Path(directory)
        key_path, jwks_path = directory / PRIVATE_KEY, directory / JWKS
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # TypeError: encrypted
            raise ValueError(f"{key_path} is not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        try:
            jwk = json.loads(jwks_path.read_text("utf-8"))["keys"][0]
            kid = jwk["kid"]
        except (ValueError, LookupError, TypeError):  # JSON errors are ValueErrors
            kid = None
        if not isinstance(kid, str) or not kid:
            raise ValueError(f"{jwks_path} is not this tool's JWKS (one key with a string kid)")
        public = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        if any(jwk.get(name) != public[name] for name in ("kty", "crv", "x", "y")):
            raise ValueError(f"{jwks_path} does not hold the public half of {key_path}")
        return cls(directory, kid, key)

    def mint(
        self,
        subject: str,
        *,
        scopes: Iterable[str] = (),
        ttl_s: float = 3600,
        issued_at: float | None = None,
        **claims: Any,
    ) -> str:
        """A signed token for ``subject`` (a user id, or a service's id with ``scopes``).
        ``claims`` add or override claims (``aud``, ``iss``, ``nbf``, ...); a ``None`` value
        removes one (tests use these for tokens the service must refuse)."""
        now = time.time() if issued_at is None else issued_at
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": int(now),
            "exp": int(now + ttl_s),
        }
        scope = " ".join(scopes)
        if scope:
            payload["scope"] = scope
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def env(self) -> dict[str, str]:
        """The service's ``AUTH_*`` variables for this issuer."""
        return {
            AUTH_MODE: "jwt",
            AUTH_ISSUER: self.issuer,
            AUTH_AUDIENCE: self.audience,
            AUTH_JWKS_FILE: str(self.jwks_path),
        }

    def load_env(self) -> dict[str, str]:
        """Locust's ``LOAD_AUTH_*`` variables (see docs/loadtest.md) for this issuer."""
        return {
            "LOAD_AUTH_KEY_FILE": str(self.private_key_path),
            "LOAD_AUTH_ISSUER": self.issuer,
            "LOAD_AUTH_AUDIENCE": self.audience,
            "LOAD_AUTH_KID": self.kid,
        }


#: The longest --ttl the CLI mints (a year): a dev token that never expires is not a test of anything.
MAX_TTL_S = 366 * 86400


def _ttl(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_TTL_S:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"must be seconds above 0, at most {MAX_TTL_S}; got {text!r:.40}"
        )
    return value


def _subject(text: str) -> str:
    if not text.strip():  # the service refuses a token whose sub is empty
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _existing(directory: Path) -> DevIssuer | None:
    """The issuer already in ``directory``, None when it holds none (no key file yet)."""
    if not (directory / PRIVATE_KEY).exists():
        return None
    try:
        return DevIssuer.load(directory)
    except ValueError as exc:
        raise ValueError(f"{exc}; use --new") from None


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations ("--min" for "--min-healthy-percent"), in subcommands too (they
        # are this class): a typo or a later option must not silently change the meaning.
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"dev_tokens: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m sample_api.dev_tokens", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="make a key pair; print the service's AUTH_* lines")
    init.add_argument("directory", type=Path)
    init.add_argument(
        "--new",
        action="store_true",
        help="replace the directory's key pair (tokens minted before, and services started "
        "with its jwks.json, then no longer match)",
    )
    mint = commands.add_parser("mint", help="print a token")
    mint.add_argument("directory", type=Path)
    mint.add_argument("--sub", required=True, type=_subject, help="a user id, or a service's id")
    mint.add_argument("--scope", action="append", default=[], help="e.g. points:grant")
    mint.add_argument("--ttl", type=_ttl, default=3600, help="seconds (default 3600)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "init":
        # Running the README's init line again (a second shell) must not swap the keys under a
        # service that read jwks.json at start: every token minted afterwards would be refused.
        try:
            issuer = None if args.new else _existing(args.directory)
            if issuer is None:
                issuer = DevIssuer.create(args.directory)
        except (OSError, ValueError) as exc:
            parser.error(f"cannot make an issuer in {args.directory}: {exc}")
        for name, value in issuer.env().items():
            print(f"export {name}={shlex.quote(value)}")
        return 0
    try:
        issuer = DevIssuer.load(args.directory)
    except (OSError, ValueError) as exc:
        parser.error(f"no dev issuer in {args.directory} ({exc}); run 'init' first")
    print(issuer.mint(args.sub, scopes=args.scope, ttl_s=args.ttl))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
