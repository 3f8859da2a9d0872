"""gunicorn settings for the points service (``gunicorn -c sample_api/gunicorn.conf.py ...``).

Environment: PORT (default 8080) or BIND (full address, overrides PORT), WEB_CONCURRENCY
(workers, default 2), GUNICORN_THREADS (threads per worker, default 1 = sync workers),
GUNICORN_TIMEOUT (default 30 s), GUNICORN_GRACEFUL_TIMEOUT (default 20 s: below ECS's default
30 s stopTimeout, so in-flight requests drain before SIGKILL).
"""

from __future__ import annotations

import os
import sys

from sample_api.app import check_config as _check_config
from sample_api.config import ConfigError as _ConfigError


def _int(name: str, default: int, low: int, high: int) -> int:
    text = (os.environ.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        print(
            f"points-service: configuration error: {name} must be a whole number between {low} "
            f"and {high}; got {os.environ[name]!r}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return value


# Check the app's settings once in the master, so a bad variable stops start-up with one line
# instead of every worker failing to boot.
try:
    _check_config()
except _ConfigError as _exc:
    print(f"points-service: configuration error: {_exc}", file=sys.stderr)
    raise SystemExit(2) from None

bind = os.environ.get("BIND") or f"0.0.0.0:{_int('PORT', 8080, 1, 65535)}"
workers = _int("WEB_CONCURRENCY", 2, 1, 64)
threads = _int("GUNICORN_THREADS", 1, 1, 64)  # > 1 switches to the gthread worker
timeout = _int("GUNICORN_TIMEOUT", 30, 1, 3600)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 20, 1, 3600)
keepalive = 5  # the ALB keeps connections open; its idle timeout (60 s) is longer than this

# Access logs come from telemetry (JSON lines with trace ids); gunicorn's own log goes to stderr.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# gunicorn >= 25 opens a control socket under $HOME by default: several servers on one host would
# share its path, and a read-only container root cannot create it. Nothing here uses it.
control_socket_disable = True

# The worker heartbeat file: on a RAM disk where there is one (containers' /tmp may be overlayfs).
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"


def post_fork(server, worker) -> None:
    from sample_api.lifecycle import post_fork as _post_fork

    _post_fork()
