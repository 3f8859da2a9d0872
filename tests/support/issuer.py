"""One local token issuer for the whole test session (sample_api.dev_tokens), whose keys live in
a temporary directory outside every test's output, deleted when the session ends.

Processes that run the service get ``ISSUER.env()``; Locust gets ``ISSUER.load_env()``.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile

from sample_api.dev_tokens import DevIssuer
from sample_api.tokens import GRANT_SCOPE

_DIR = tempfile.mkdtemp(prefix="points-issuer-")
atexit.register(shutil.rmtree, _DIR, True)
ISSUER = DevIssuer.create(_DIR)
#: The order system's id: the subject of grant tokens.
ORDER_SERVICE = "order-service"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def grant_token() -> str:
    """The order system's token: may grant points to anyone."""
    return ISSUER.mint(ORDER_SERVICE, scopes=[GRANT_SCOPE])


def user_token(user_id: str) -> str:
    """A customer's own token."""
    return ISSUER.mint(user_id)
