"""Names of the environment variables the points service reads, defined once.

The ledger's own names (``POINTS_STORE``, ``POINTS_DB_PATH``, ``POINTS_TABLE``, ``POINTS_RATE``,
the AWS ones) are in :mod:`points.environment_variables`; telemetry's (``OTEL_*``) in telemetry.
Processes that start the service (the rehearsal, benchmarks, tests) import these too.
"""

#: The running version, reported by ``/version`` and on every metric and span (default ``dev``).
APP_VERSION = "APP_VERSION"

#: The request rate limiter (see :mod:`sample_api.ratelimit`): on/off (default off) ...
RATE_LIMIT_ENABLED = "RATE_LIMIT_ENABLED"
#: ... sustained requests per second per gunicorn worker (default 50) ...
RATE_LIMIT_RPS = "RATE_LIMIT_RPS"
#: ... requests admitted at once above the rate (default 10) ...
RATE_LIMIT_BURST = "RATE_LIMIT_BURST"
#: ... ``delay`` (wait for a turn, default) or ``reject`` (429 at once) ...
RATE_LIMIT_MODE = "RATE_LIMIT_MODE"
#: ... and in ``delay`` mode the longest wait in seconds before a 429 (default 5).
RATE_LIMIT_MAX_WAIT_S = "RATE_LIMIT_MAX_WAIT_S"

# gunicorn (read by sample_api/gunicorn.conf.py)

#: The port to listen on, on all interfaces (default 8080) ...
PORT = "PORT"
#: ... or the full address (``host:port``), which wins over ``PORT``.
BIND = "BIND"
#: gunicorn worker processes (default 2).
WEB_CONCURRENCY = "WEB_CONCURRENCY"
#: Threads per worker (default 8), each serving one request at a time.
GUNICORN_THREADS = "GUNICORN_THREADS"
#: Seconds a client has to send a request's headers and body, and to take each write of the
#: response (default 5; then 408, or the connection is dropped). See sample_api/serving.py.
GUNICORN_CLIENT_TIMEOUT = "GUNICORN_CLIENT_TIMEOUT"
#: Seconds an idle kept-alive connection stays open (default 65): above the load balancer's idle
#: timeout (ALB: 60 s by default), so the balancer always closes first.
GUNICORN_KEEPALIVE = "GUNICORN_KEEPALIVE"
#: On SIGTERM, seconds readiness answers 503 while the server still serves, before it stops
#: (default 5; 0 = stop at once). See sample_api/lifecycle.py.
GUNICORN_DRAIN_S = "GUNICORN_DRAIN_S"
#: Seconds before a worker whose main loop is stuck is restarted (default 30).
GUNICORN_TIMEOUT = "GUNICORN_TIMEOUT"
#: Seconds in-flight requests get to finish after the drain (default 20).
GUNICORN_GRACEFUL_TIMEOUT = "GUNICORN_GRACEFUL_TIMEOUT"
#: gunicorn's own log level (default ``info``).
GUNICORN_LOG_LEVEL = "GUNICORN_LOG_LEVEL"

# Authentication (see sample_api/tokens.py and docs/sample-api.md, "Authentication")

#: ``jwt`` (default: every points route needs a bearer token) or ``off`` (local experiments only).
AUTH_MODE = "AUTH_MODE"
#: The issuer whose tokens are accepted: the ``iss`` claim must equal it (required with ``jwt``).
AUTH_ISSUER = "AUTH_ISSUER"
#: This service's name in tokens: the ``aud`` claim must contain it (required with ``jwt``).
AUTH_AUDIENCE = "AUTH_AUDIENCE"
#: The issuer's public keys as a JWKS file (read at start) ...
AUTH_JWKS_FILE = "AUTH_JWKS_FILE"
#: ... or a JWKS URL (fetched when first needed, then cached); exactly one of the two.
AUTH_JWKS_URL = "AUTH_JWKS_URL"
#: Comma-separated signature algorithms accepted (default ``RS256,ES256``; asymmetric only).
AUTH_ALGORITHMS = "AUTH_ALGORITHMS"
#: Clock skew allowed on ``exp``, ``nbf`` and ``iat``, in seconds (default 30).
AUTH_LEEWAY_S = "AUTH_LEEWAY_S"
#: Seconds one JWKS fetch may take before the request gets 503 (default 2).
AUTH_JWKS_TIMEOUT_S = "AUTH_JWKS_TIMEOUT_S"
#: Seconds a fetched JWKS is reused before it is fetched again (default 300).
AUTH_JWKS_CACHE_S = "AUTH_JWKS_CACHE_S"
