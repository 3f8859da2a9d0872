"""One local token issuer for the whole test session (sample_api.dev_tokens), whose keys live in
a temporary directory outside every test's output, deleted when the session ends.

Processes that run the service get ``ISSUER.env()``; Locust gets ``ISSUER.load_env()``.
"""

from __future__ import annotations

import atexit
import contextlib
import http.server
import shutil
import tempfile
import threading
from collections.abc import Iterator

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


class JwksServer:
    """The issuer's JWKS over HTTP on 127.0.0.1, as an identity provider serves it; ``hits``
    counts the fetches."""

    def __init__(self) -> None:
        body = ISSUER.jwks_path.read_bytes()
        owner = self
        self.hits = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/.well-known/jwks.json"


@contextlib.contextmanager
def jwks_server() -> Iterator[JwksServer]:
    """A :class:`JwksServer` serving while in the block."""
    jwks = JwksServer()
    thread = threading.Thread(target=jwks._server.serve_forever, daemon=True)
    thread.start()
    try:
        yield jwks
    finally:
        jwks._server.shutdown()
        jwks._server.server_close()
