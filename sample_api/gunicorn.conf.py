"""gunicorn settings for the points service (``gunicorn -c sample_api/gunicorn.conf.py ...``).

Environment variables:

* PORT (default 8080) or BIND (full address, overrides PORT);
* WEB_CONCURRENCY: worker processes (default 2);
* GUNICORN_THREADS: threads per worker (default 8), each serving one request at a time;
* GUNICORN_CLIENT_TIMEOUT: seconds a client has to send a request's headers and body, and to take
  each write of the response (default 5; then 408, or the connection is dropped). Slow peers hold
  at most GUNICORN_THREADS slots per worker, each for at most this long (``sample_api/serving.py``);
* GUNICORN_KEEPALIVE: seconds an idle kept-alive connection stays open (default 65). It must
  exceed the load balancer's idle timeout (ALB: ``idle_timeout.timeout_seconds``, 60 s by
  default, 30 s in ``deploy/stack.yaml``), so the balancer always closes first: if the server
  closed first, the balancer could send a request on a connection being closed and answer 502;
* GUNICORN_DRAIN_S: on SIGTERM, seconds readiness answers 503 while the server still accepts and
  serves, before gunicorn's graceful stop (default 5; 0 = stop at once). ``sample_api/lifecycle.py``;
* GUNICORN_GRACEFUL_TIMEOUT: seconds in-flight requests get after the drain (default 20). With the
  drain, 25 s: below ECS's default 30 s stopTimeout, so nothing is cut by SIGKILL;
* GUNICORN_TIMEOUT: seconds before a worker whose main loop stops answering is killed (default 30);
* GUNICORN_LOG_LEVEL: gunicorn's own log level (default info).
"""

from __future__ import annotations

import os
import sys

from points.settings import ConfigError as _ConfigError
from points.settings import env_int as _env_int
from sample_api import environment_variables as _names
from sample_api import lifecycle as _lifecycle
from sample_api import serving as _serving
from sample_api.app import check_config as _check_config

_env = os.environ

# Check the app's settings (and ours) once in the master, so a bad variable stops start-up with
# one line instead of every worker failing to boot.
try:
    _check_config()
    bind = (
        _env.get(_names.BIND) or f"0.0.0.0:{_env_int(_env, _names.PORT, 8080, low=1, high=65535)}"
    )
    workers = _env_int(_env, _names.WEB_CONCURRENCY, 2, low=1, high=64)
    threads = _env_int(_env, _names.GUNICORN_THREADS, 8, low=1, high=256)
    # Threads, with every wait for a client bounded: slow peers cannot take the whole pool.
    worker_class = _serving.worker_class(
        client_timeout_s=_env_int(_env, _names.GUNICORN_CLIENT_TIMEOUT, 5, low=1, high=3600)
    )
    timeout = _env_int(_env, _names.GUNICORN_TIMEOUT, 30, low=1, high=3600)
    graceful_timeout = _env_int(_env, _names.GUNICORN_GRACEFUL_TIMEOUT, 20, low=1, high=3600)
    # The server's idle timeout must be LONGER than the load balancer's, never shorter (above).
    keepalive = _env_int(_env, _names.GUNICORN_KEEPALIVE, 65, low=1, high=3600)
    drain_s = _env_int(_env, _names.GUNICORN_DRAIN_S, 5, low=0, high=3600)
except _ConfigError as _exc:
    print(f"points-service: configuration error: {_exc}", file=sys.stderr)
    raise SystemExit(2) from None

# Access logs come from telemetry (JSON lines with trace ids); gunicorn's own log goes to stderr.
accesslog = None
errorlog = "-"
# ... through a non-blocking buffer: a stderr nobody reads must not stop the service (drops counted).
logger_class = _serving.NonBlockingLogger
loglevel = _env.get(_names.GUNICORN_LOG_LEVEL, "info")

# gunicorn >= 25 opens a control socket under $HOME by default: several servers on one host would
# share its path, and a read-only container root cannot create it. Nothing here uses it.
control_socket_disable = True

# The worker heartbeat file: on a RAM disk where there is one (containers' /tmp may be overlayfs).
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"


def when_ready(server) -> None:
    _lifecycle.drain_on_sigterm(server, drain_s)


def post_fork(server, worker) -> None:
    _lifecycle.post_fork()
