"""Who may do what, in Flask: bearer tokens on the points routes (RFC 6750).

:func:`authenticate` runs before every points route (before the rate limiter and before the body
is read) and leaves the caller's :class:`~sample_api.tokens.Principal` in ``flask.g.principal``.
The views then call :func:`require_scope` (grants) or :func:`require_owner` (redemptions and
history: object-level, before anything is read or written).

Answers: no or an unusable token -> 401 with ``WWW-Authenticate: Bearer`` (``error="invalid_token"``
when a token was sent); a valid token without the scope -> 403 ``insufficient_scope``; a valid
token for another user's points -> 403 ``/problems/forbidden`` (not 404: every user id "exists",
an unknown user just has balance 0, so hiding it would protect nothing); the issuer's keys
unreachable -> 503. With ``AUTH_MODE=off`` nobody is checked (local experiments only).
"""

from __future__ import annotations

from flask import current_app, g, request

import telemetry
from sample_api.state import current_state
from sample_api.tokens import GRANT_SCOPE, InvalidToken, KeysUnavailable, Principal

__all__ = ["GRANT_SCOPE", "AuthError", "authenticate", "require_owner", "require_scope"]

REALM = "points-service"


class AuthError(Exception):
    """A refused request: ``status`` 401/403/503 with a problem ``slug`` and, for 401 and the
    scope's 403, the ``WWW-Authenticate`` challenge."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        error: str | None = None,
        scope: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.challenge: str | None = None
        if status in (401, 403) and (status == 401 or error):
            params = [f'realm="{REALM}"']
            if error:
                params.append(f'error="{error}"')
                # RFC 6750 section 3: the description is quoted text without '"' or '\'.
                params.append(f'error_description="{_quotable(detail)}"')
            if scope:
                params.append(f'scope="{scope}"')
            self.challenge = "Bearer " + ", ".join(params)


def _quotable(text: str) -> str:
    return "".join(c for c in text if c.isprintable() and c not in '"\\')[:200]


def _bearer() -> str | None:
    """The token of ``Authorization: Bearer <token>`` (scheme case-insensitive), None if absent."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise AuthError(
            401,
            "unauthorized",
            "Unauthorized",
            "the Authorization header must be 'Bearer <token>'",
            error="invalid_request",
        )
    return token


def authenticate() -> None:
    """``before_request`` of the points routes: set ``g.principal`` or refuse with 401/503."""
    state = current_state()
    g.principal = None
    if state.verifier is None:  # AUTH_MODE=off
        return
    token = _bearer()
    if token is None:
        raise AuthError(401, "unauthorized", "Unauthorized", "a bearer token is required")
    try:
        g.principal = state.verifier.verify(token)
        # who called, on the server span and the access line (a refused request keeps it too)
        telemetry.annotate(caller=g.principal.subject)
    except InvalidToken as exc:
        raise AuthError(
            401, "unauthorized", "Unauthorized", str(exc), error="invalid_token"
        ) from None
    except KeysUnavailable as exc:
        current_app.logger.warning("auth: %s", exc)
        raise AuthError(
            503,
            "auth-unavailable",
            "Authentication unavailable",
            "the token issuer's keys cannot be fetched; try again later",
        ) from None


def _principal() -> Principal | None:
    return g.get("principal")


def require_scope(scope: str) -> None:
    """403 ``insufficient_scope`` unless the caller's token carries ``scope``."""
    principal = _principal()
    if principal is None or scope in principal.scopes:
        return  # None: AUTH_MODE=off
    raise AuthError(
        403,
        "insufficient-scope",
        "Insufficient scope",
        f"this operation needs a token with the {scope} scope",
        error="insufficient_scope",
        scope=scope,
    )


def require_owner(user_id: str) -> None:
    """403 ``/problems/forbidden`` unless the caller's token is the user's own (``sub``)."""
    principal = _principal()
    if principal is None or principal.subject == user_id:
        return  # None: AUTH_MODE=off
    raise AuthError(
        403, "forbidden", "Forbidden", "a user's points are only for the user's own token"
    )
