"""``python -m worker`` / ``points-worker``: run the worker, publish sample events, create queues.

Exit status: 0 after a graceful stop (SIGTERM/SIGINT) or a successful command; 2 for bad
configuration or usage (one line on stderr); 1 when AWS/the local endpoint cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from botocore.exceptions import BotoCoreError, ClientError

from points.environment_variables import POINTS_DB_PATH
from points.settings import ConfigError, is_http_url, region_from
from worker._config import WorkerConfig, queue_url_from, sqs_endpoint_from
from worker.environment_variables import QUEUE_URL

PROG = "points-worker"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = 2 if "NonExistentQueue" in code or "QueueDoesNotExist" in code else 1
        return _fail(f"SQS {exc.operation_name} failed: {code}: {err.get('Message', '')}", status)
    except BotoCoreError as exc:
        return _fail(f"cannot reach SQS: {exc}", 1)


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return status


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit status 2 (argparse adds the usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.set_defaults(func=_run)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    sub.add_parser("run", help="process messages until SIGTERM/SIGINT (the default)").set_defaults(
        func=_run
    )

    s = sub.add_parser("send-sample", help="publish realistic order-completed events")
    s.add_argument("--count", type=_positive, default=100, help="orders to publish (default 100)")
    s.add_argument("--users", type=_positive, default=50, help="distinct users (default 50)")
    s.add_argument(
        "--duplicates", type=_positive, default=1, help="times each order is sent (default 1)"
    )
    s.add_argument("--poison", type=_non_negative, default=0, help="bad messages to add")
    s.add_argument("--seed", type=int, default=None, help="random seed (reproducible orders)")
    s.add_argument("--queue-url", default=None, help="default: $QUEUE_URL")
    s.set_defaults(func=_send_sample)

    q = sub.add_parser("setup-queues", help="create the queue and its DLQ with a redrive policy")
    q.add_argument("--name", default="points-events", help="queue name (default points-events)")
    q.add_argument("--max-receive-count", type=_positive, default=3, help="default 3")
    q.add_argument("--visibility-timeout", type=_positive, default=30, help="seconds (default 30)")
    q.set_defaults(func=_setup_queues)
    return p


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 0 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1,000,000, got {value}")
    return value


def _client() -> object:
    from worker._sqs import make_client

    return make_client(region_from(os.environ), sqs_endpoint_from(os.environ))


def _send_sample(args: argparse.Namespace) -> int:
    from worker._sample import send_sample

    if args.queue_url is not None and not is_http_url(args.queue_url):
        raise ConfigError(f"--queue-url must be an http(s) URL, got {args.queue_url!r}")
    url = args.queue_url or queue_url_from(os.environ)
    if not url:
        raise ConfigError(f"send-sample needs --queue-url or {QUEUE_URL}")
    summary = send_sample(
        _client(),
        url,
        count=args.count,
        users=args.users,
        poison=args.poison,
        duplicates=args.duplicates,
        seed=args.seed,
    )
    print(json.dumps({"queue_url": url, **summary}))
    return 0


def _setup_queues(args: argparse.Namespace) -> int:
    from worker._sqs import setup_queues

    urls = setup_queues(
        _client(),
        args.name,
        max_receive_count=args.max_receive_count,
        visibility_timeout_s=args.visibility_timeout,
    )
    print(f"QUEUE_URL={urls['queue_url']}")
    print(f"DLQ_URL={urls['dlq_url']}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from points import open_storage, rate_from
    from points.storage import backend_from
    from worker import _instrument as instrument
    from worker._runner import Worker

    config = WorkerConfig.from_env()
    rate = rate_from(os.environ)
    storage = open_storage()  # ConfigError for a bad POINTS_* variable
    if backend_from(os.environ) == "sqlite":
        # A local file that cannot be opened is configuration, not an outage: running on would
        # fail every job and send every message to the DLQ. (A remote store that is down at
        # start-up is left to the retries: it may come back.)
        try:
            storage.ping()
        except Exception as exc:
            raise ConfigError(f"{POINTS_DB_PATH}: {exc}") from None

    instrument.configure(slots=config.concurrency)
    worker = Worker(config, storage, rate=rate)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.start()
    except Exception:
        instrument.shutdown()
        raise
    clean = worker.wait()
    instrument.shutdown()
    if clean:
        storage.close()
    sys.stdout.flush()
    sys.stderr.flush()
    if any(t.name.startswith("job") and t.is_alive() for t in threading.enumerate()) and not clean:
        # A job still stuck in the store: its message is released already; do not let the
        # interpreter's exit wait for the thread (ECS would SIGKILL us at 30 s).
        os._exit(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
