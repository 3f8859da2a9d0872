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
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from points import StorageUnavailable
from points.environment_variables import POINTS_DB_PATH
from points.settings import ConfigError, one_line, region_from
from worker._config import (
    SETTINGS,
    WorkerConfig,
    check_queue_region,
    check_url,
    queue_url_from,
    sqs_endpoint_from,
)
from worker.environment_variables import QUEUE_URL

PROG = "points-worker"
COMMANDS = ("run", "send-sample", "setup-queues")

_AWS_ENV = """\
  AWS_REGION / AWS_DEFAULT_REGION      region of the SQS client (default us-east-1)
  AWS_ENDPOINT_URL_SQS                 SQS endpoint only; wins over AWS_ENDPOINT_URL (default: AWS)
  AWS_ENDPOINT_URL                     endpoint of every AWS client, e.g. moto (default: AWS)"""

_RUN_ENV_TAIL = """\
  POINTS_STORE                         store backend: sqlite or dynamodb (default sqlite)
  POINTS_DB_PATH                       SQLite file (default ./points.db)
  POINTS_TABLE                         DynamoDB table when POINTS_STORE=dynamodb
  POINTS_RATE                          points per JPY, 0 to 1 (default 0.01)
  OTEL_SERVICE_NAME                    metrics' Service dimension (default points-worker)
  APP_VERSION                          metrics' Version dimension (default dev)
  TELEMETRY_*, AWS_EMF_*, OTEL_*       metrics window, sinks, traces (see docs/telemetry.md)"""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = _parser()
    misplaced = _misplaced_option(argv, parser, commands)
    if misplaced:
        parser.error(misplaced)
    args = parser.parse_args(argv)
    if args.func is not _run:
        # run's options given before another subcommand would be silently ignored
        given = [s.option for s in SETTINGS if hasattr(args, s.field)]
        if given:
            parser.error(f"{given[0]} is an option of `run`, not of `{args.command}`")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = 2 if "NonExistentQueue" in code or "QueueDoesNotExist" in code else 1
        return _fail(f"SQS {exc.operation_name} failed: {code}: {err.get('Message', '')}", status)
    except (NoCredentialsError, PartialCredentialsError) as exc:
        # not the endpoint: no request was sent (a task role not yet available is worth a retry)
        return _fail(f"no usable AWS credentials for SQS: {exc}", 1)
    except BotoCoreError as exc:
        return _fail(f"cannot reach SQS: {exc}", 1)


def _fail(message: str, status: int) -> int:
    # One line even when the message quotes a peer's answer: an endpoint that is not SQS (a
    # mistyped AWS_ENDPOINT_URL) answers with an HTML error page, which botocore makes the message.
    print(f"{PROG}: {one_line(message)}", file=sys.stderr, flush=True)
    return status


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit status 2 (argparse adds the usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{PROG}: {' '.join(message.split())} (see {self.prog} --help)\n")


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    common = {
        "formatter_class": argparse.RawDescriptionHelpFormatter,
        "allow_abbrev": False,
    }
    run_options = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    group = run_options.add_argument_group("run options (each wins over its variable)")
    group.add_argument(
        "--queue-url",
        type=_option(check_url),
        default=argparse.SUPPRESS,
        metavar="URL",
        help="the queue to consume (env QUEUE_URL; required)",
    )
    for s in SETTINGS:
        group.add_argument(
            s.option,
            dest=s.field,
            type=_option(s.check_option),
            default=argparse.SUPPRESS,
            metavar="N",
            help=f"{s.help} (env {s.env}; {s.describe()})",
        )
    run_epilog = "environment variables:\n" + "\n".join(
        [f"  {QUEUE_URL:<36} the queue to consume (required)"]
        + [f"  {s.env:<36} {s.describe()}" for s in SETTINGS]
        + [_AWS_ENV, _RUN_ENV_TAIL]
    )
    p = _Parser(
        prog=PROG,
        description="The SQS points worker: consume order events (run, the default), "
        "publish sample events, or create the queues.",
        epilog=f"Without a subcommand, runs the worker.\n\n{run_epilog}",
        parents=[run_options],
        **common,
    )
    p.set_defaults(func=_run, command="run")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    r = sub.add_parser(
        "run",
        help="process messages until SIGTERM/SIGINT (the default)",
        description="Process messages until SIGTERM/SIGINT, then stop gracefully (exit 0).",
        epilog=run_epilog,
        parents=[run_options],
        **common,
    )
    r.set_defaults(func=_run)

    s = sub.add_parser(
        "send-sample",
        help="publish realistic order-completed events",
        description="Publish realistic order-completed events (each with its own trace) "
        "in batches of 10; print a JSON summary.",
        epilog=f"environment variables:\n  {QUEUE_URL:<36} default of --queue-url\n{_AWS_ENV}",
        **common,
    )
    s.add_argument("--count", type=_positive, default=100, help="orders to publish (default 100)")
    s.add_argument("--users", type=_positive, default=50, help="distinct users (default 50)")
    s.add_argument(
        "--duplicates", type=_positive, default=1, help="times each order is sent (default 1)"
    )
    s.add_argument(
        "--poison", type=_non_negative, default=0, help="bad messages to add (default 0)"
    )
    s.add_argument(
        "--seed",
        type=_seed,
        default=None,
        help="random seed for reproducible orders (default: random)",
    )
    s.add_argument(
        "--queue-url",
        type=_option(check_url),
        default=argparse.SUPPRESS,
        metavar="URL",
        help="the queue (env QUEUE_URL)",
    )
    s.set_defaults(func=_send_sample)

    q = sub.add_parser(
        "setup-queues",
        help="create the queue and its DLQ with a redrive policy",
        description="Create (or update) the queue and <name>-dlq with a redrive policy; "
        "print QUEUE_URL=... and DLQ_URL=... lines for eval.",
        epilog=f"environment variables:\n{_AWS_ENV}",
        **common,
    )
    q.add_argument("--name", type=_queue_name, default="points-events",
                   help="queue name (default points-events)")  # fmt: skip
    q.add_argument(
        "--max-receive-count",
        type=_receive_count,
        default=3,
        help="receives before SQS moves a message to the DLQ, 1 to 1,000 (default 3)",
    )
    q.add_argument(
        "--visibility-timeout",
        type=_visibility,
        default=30,
        help="the queue's visibility timeout, seconds, 0 to 43,200 (default 30)",
    )
    q.set_defaults(func=_setup_queues)
    return p, {"run": r, "send-sample": s, "setup-queues": q}


def _misplaced_option(
    argv: list[str], parser: argparse.ArgumentParser, commands: dict[str, argparse.ArgumentParser]
) -> str | None:
    """A clear error for an option given before (or without) the subcommand it belongs to.

    argparse would skip the unknown option and read its value as the subcommand ("invalid
    choice: '5'"). Options of ``run`` are accepted before or without the subcommand.
    """
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--" or token in commands:
            return None
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0]
            action = parser._option_string_actions.get(name)
            if action is None:
                owners = [c for c, sp in commands.items() if name in sp._option_string_actions]
                if owners:
                    return f"{name} is an option of `{owners[0]}`: put it after the subcommand"
                return f"unrecognized option {name!r:.60}"
            if action.nargs != 0 and "=" not in token:
                i += 1  # its value
        i += 1
    return None


def _option(check: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse type from a check that raises ValueError("must be ...")."""

    def parse(text: str) -> str:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _positive(text: str) -> int:
    return _bounded(text, 1, 1_000_000)


def _non_negative(text: str) -> int:
    return _bounded(text, 0, 1_000_000)


def _receive_count(text: str) -> int:
    return _bounded(text, 1, 1_000)  # SQS's range for maxReceiveCount


def _visibility(text: str) -> int:
    return _bounded(text, 0, 43_200)  # SQS's range for VisibilityTimeout (12 hours)


def _seed(text: str) -> int:
    return _bounded(text, 0, 2**63 - 1)


def _bounded(text: str, low: int, high: int) -> int:
    stripped = text.strip()
    if not (stripped.isascii() and stripped.lstrip("+-").isdigit()):
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r:.40}")
    # no int() on arbitrary text: beyond 4,300 digits it fails with a message about Python
    value = int(stripped) if len(stripped) <= 30 else None
    if value is None or not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"must be between {low:,} and {high:,}, got {stripped:.40}"
        )
    return value


def _queue_name(text: str) -> str:
    # SQS: 1-80 characters of alphanumerics, hyphens and underscores; "-dlq" is added for the DLQ
    if not 1 <= len(text) <= 76 or not all(
        c.isascii() and (c.isalnum() or c in "-_") for c in text
    ):
        raise argparse.ArgumentTypeError(
            f"must be 1-76 characters of A-Z, a-z, 0-9, '-' or '_', got {text!r:.40}"
        )
    return text


def _client() -> object:
    from worker._sqs import make_client

    return make_client(region_from(os.environ), sqs_endpoint_from(os.environ))


def _send_sample(args: argparse.Namespace) -> int:
    from worker._sample import send_sample

    # --queue-url was checked by argparse; QUEUE_URL by queue_url_from (ConfigError naming it)
    url = getattr(args, "queue_url", None) or queue_url_from(os.environ)
    if not url:
        raise ConfigError(f"send-sample needs --queue-url or {QUEUE_URL}")
    if url.endswith(".fifo"):  # SQS would refuse every message: no MessageGroupId
        raise ConfigError(
            f"send-sample sends to a standard queue; {url[:80]!r} is a FIFO queue (.fifo)"
        )
    check_queue_region(url, region_from(os.environ))
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
    # Signals first: one that lands during start-up (imports, the store's ping, up to its 5 s
    # busy timeout on a locked file) is remembered and ends the run cleanly (exit 0), as it would
    # a moment later, instead of killing the process (SIGTERM: status 143) or printing a
    # KeyboardInterrupt traceback (SIGINT).
    # The handler takes no lock (no threading.Event): it may interrupt the main thread while it
    # holds one, even inside this very handler when a second signal lands (a signal to the
    # process and one to its group), and would then wait for itself forever.
    signals: list[int] = []  # list.append takes no Python-level lock
    started: list[Any] = []  # the Worker, once it exists

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)
        if started:
            started[0].request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    from points import open_storage, rate_from
    from points.storage import backend_from
    from worker import _instrument as instrument
    from worker._runner import Worker

    # an option wins over its variable; both go through the same checks
    env = dict(os.environ)
    if hasattr(args, "queue_url"):
        env[QUEUE_URL] = args.queue_url
    env.update({s.env: getattr(args, s.field) for s in SETTINGS if hasattr(args, s.field)})
    config = WorkerConfig.from_env(env)
    rate = rate_from(os.environ)
    storage = open_storage()  # ConfigError for a bad POINTS_* variable
    if backend_from(os.environ) == "sqlite":
        # A local file that cannot be opened is configuration, not an outage: running on would
        # fail every job and send every message to the DLQ. (A remote store that is down at
        # start-up is left to the retries: it may come back.)
        # A file locked by another process's write (SQLITE_BUSY/LOCKED past the busy timeout) is
        # not configuration either: it passes, so the worker starts and its jobs retry.
        try:
            storage.ping()
        except Exception as exc:
            if not (isinstance(exc, StorageUnavailable) and exc.transient):
                raise ConfigError(f"{POINTS_DB_PATH}: {exc}") from None

    if signals:  # stopped before anything was received: nothing to hand back
        storage.close()
        return 0
    instrument.configure(slots=config.concurrency)
    worker = Worker(config, storage, rate=rate)
    started.append(worker)
    if signals:  # the signal landed while telemetry or the client was set up
        worker.request_stop()
    try:
        started_up = worker.start()
    except Exception:
        instrument.shutdown()
        raise
    if not started_up:  # a signal while it waited on SQS or the store: nothing was received
        instrument.shutdown()
        storage.close()
        return 0
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
