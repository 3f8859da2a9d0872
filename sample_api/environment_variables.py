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
