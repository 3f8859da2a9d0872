"""gunicorn settings for the points service (``gunicorn -c sample_api/gunicorn.conf.py ...``).

Environment: PORT (default 8080) or BIND (full address, overrides PORT), WEB_CONCURRENCY
(workers, default 2), GUNICORN_THREADS (threads per worker, default 1 = sync workers),
GUNICORN_TIMEOUT (default 30 s), GUNICORN_GRACEFUL_TIMEOUT (default 20 s: below ECS's default
30 s stopTimeout, so in-flight requests drain before SIGKILL).
"""

from __future__ import annotations

import os
import sys

from points.settings import ConfigError as _ConfigError
from points.settings import env_int as _env_int
from sample_api import environment_variables as _names
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
    threads = _env_int(_env, _names.GUNICORN_THREADS, 1, low=1, high=64)  # > 1: gthread worker
    timeout = _env_int(_env, _names.GUNICORN_TIMEOUT, 30, low=1, high=3600)
    graceful_timeout = _env_int(_env, _names.GUNICORN_GRACEFUL_TIMEOUT, 20, low=1, high=3600)
except _ConfigError as _exc:
    print(f"points-service: configuration error: {_exc}", file=sys.stderr)
    raise SystemExit(2) from None
keepalive = 5  # the ALB keeps connections open; its idle timeout (60 s) is longer than this

# Access logs come from telemetry (JSON lines with trace ids); gunicorn's own log goes to stderr.
accesslog = None
errorlog = "-"
loglevel = _env.get(_names.GUNICORN_LOG_LEVEL, "info")

# gunicorn >= 25 opens a control socket under $HOME by default: several servers on one host would
# share its path, and a read-only container root cannot create it. Nothing here uses it.
control_socket_disable = True

# The worker heartbeat file: on a RAM disk where there is one (containers' /tmp may be overlayfs).
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"


def post_fork(server, worker) -> None:
    from sample_api.lifecycle import post_fork as _post_fork

    _post_fork()
