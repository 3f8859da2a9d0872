"""Locust load for the points service; works unchanged against any deployment.

    locust -f loadtest/locustfile.py --host https://<alb-dns-name> --headless \\
        --csv out/load --html out/load.html --run-time 10m

``LOAD_SHAPE=steady|step|demo`` picks a load shape from ``loadtest/shapes.py`` (rate-based, see
``LOAD_RPS``); without it, Locust's usual ``--users``/``--spawn-rate`` apply and each user still
paces itself at ``LOAD_USER_RPS`` requests per second.

The user behaves like the order system and the app: mostly grants for completed purchases, then
balance reads, then a few redemptions. Ids look real (``u-000042``, ``ord-<uuid>``). Idempotency is
respected: a small share of grants is re-sent with the same ``order_id`` and body (a client retry),
which must answer 200 with the original result. Answers the scenario expects are successes: 409
for a redemption above the balance, 429 from the rate limiter (``RATE_LIMIT_MODE=reject`` or a
delayed request that would wait too long). A 429 is not a failure of the test, but it is no
service either: it is reported under its own name, the route's plus ``THROTTLED_SUFFIX``
(``/v1/points/grants [429]``), so Locust's tables show refusals apart from real successes.

Every request carries a bearer token, as the service requires: grants the order system's
(``points:grant`` scope), balance reads and redemptions the customer's own. They are minted in
this process from ``LOAD_AUTH_KEY_FILE`` and friends (see ``loadtest/credentials.py`` and
docs/loadtest.md); ``LOAD_AUTH_MODE=off`` sends none.
"""

from __future__ import annotations

import csv
import os
import random
import sys
import uuid
from typing import Any, NoReturn

from locust import FastHttpUser, constant_throughput, events, task
from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

try:
    from loadtest import command_line, credentials, rates, shapes
except ImportError:  # copied elsewhere with its sibling modules beside it (Locust adds its dir)
    import command_line  # type: ignore[no-redef]
    import credentials  # type: ignore[no-redef]
    import rates  # type: ignore[no-redef]
    import shapes  # type: ignore[no-redef]


# Every setting is checked before Locust starts anything: a bad one stops it with one line
# naming the variable (exit status 2), never a traceback or a run where every task fails.
def _refuse(exc: ValueError) -> NoReturn:
    print(f"loadtest: configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None


try:
    rates.check()
    SHAPE = rates.shape_name(os.environ.get("LOAD_SHAPE"))
    CREDENTIALS = credentials.Credentials.from_env()
except ValueError as _exc:
    _refuse(_exc)

USER_POOL = int(rates.setting("LOAD_USER_POOL"))  # distinct customer ids
RETRY_SHARE = rates.setting("LOAD_RETRY_SHARE")  # grants re-sent as client retries
EXPECTED = {429}  # throttled: not a failure of the test, the alarms are what judge latency
THROTTLED_SUFFIX = rates.THROTTLED_SUFFIX  # a 429's row: the route's name + " [429]"
BALANCE_ROUTE = "/v1/users/[user_id]/points"


_ENVIRONMENT: list[Any] = []  # Locust's Environment, for the final CSV


@events.init_command_line_parser.add_listener
def _check_options_early(parser: Any, **_kwargs: Any) -> None:
    # Locust's web UI binds to every interface by default, with no login.
    parser.set_defaults(web_host=command_line.WEB_HOST)
    # Locust opens (empties) the --csv files before its init event: a run refused there for a
    # bad option wiped the previous run's results. Its parser has every option by now, so the
    # command line, LOCUST_* variables and config files are read (and checked) here first;
    # options of other listeners, added later, are left to Locust.
    # (--help, --version or a value Locust's parser refuses end here as they would there).
    # Without abbreviations: another locustfile's own --user, added later, is not --users
    # here; an option that only abbreviates one of Locust's (--user, --hos) means what Locust's
    # whole parser makes of it, checked in the init event.
    abbrev, parser.allow_abbrev = parser.allow_abbrev, False
    try:
        options, unknown = parser.parse_known_args()
    finally:
        parser.allow_abbrev = abbrev
    known = tuple(getattr(parser, "_option_string_actions", ()))
    for arg in unknown:
        name = arg.split("=", 1)[0]
        if name.startswith("--") and any(option.startswith(name) for option in known):
            return
    try:
        command_line.check(options, SHAPE, worker=bool(getattr(options, "worker", False)))
    except ValueError as exc:
        _refuse(exc)


@events.init.add_listener
def _remember(environment: Any, **_kwargs: Any) -> None:
    """Check Locust's own options (``--host``, ``--users`` with a shape, ``--web-host``) before
    any user starts or the web UI binds; a bad one stops Locust like a bad ``LOAD_*`` setting."""
    _ENVIRONMENT[:] = [environment]
    options = getattr(environment, "parsed_options", None)
    if options is None:  # Locust used as a library: the caller's own environment
        return
    try:
        host = command_line.check(
            options, SHAPE, worker=isinstance(environment.runner, WorkerRunner)
        )
    except ValueError as exc:
        _refuse(exc)
    if host:
        environment.host = options.host = host


@events.quit.add_listener
def _final_csv(**_kwargs: Any) -> None:
    """Write ``--csv``'s ``<prefix>_stats.csv``, ``_failures.csv`` and ``_exceptions.csv`` once
    more from the final figures. Locust (2.47) rewrites them every second and not at the end,
    so the requests of the last second and those finished while the users stopped were missing
    from them (564 of 600 requests in a rehearsal), though its HTML report counts them."""
    env = _ENVIRONMENT[0] if _ENVIRONMENT else None
    prefix = getattr(getattr(env, "parsed_options", None), "csv_prefix", None)
    if not prefix or env.runner is None or isinstance(env.runner, WorkerRunner):
        return
    writer = StatsCSV(env, PERCENTILES_TO_REPORT)
    parts = (("stats", writer.requests_csv), ("failures", writer.failures_csv),
             ("exceptions", writer.exceptions_csv))  # fmt: skip
    try:
        for name, write in parts:
            with open(f"{prefix}_{name}.csv", "w", newline="", encoding="utf-8") as f:
                write(csv.writer(f))
    except OSError as exc:  # the periodic files stay as Locust left them
        print(f"loadtest: could not write the final {prefix}_*.csv: {exc}", file=sys.stderr)


def _amount_jpy(rng: random.Random) -> int:
    # Log-normal purchases, median ~3,000 JPY, skewed to small baskets, rounded like prices.
    return max(100, int(rng.lognormvariate(8.0, 0.9)) // 10 * 10)


class PointsUser(FastHttpUser):
    """One simulated client of the points API."""

    def wait_time(self) -> float:
        # Like constant_throughput(LOAD_USER_RPS), but with a shape each user makes its share of
        # the shape's rate (see rates.user_rps_at): a few users make the rate, not more.
        shape = getattr(self.environment, "shape_class", None)
        run_time = shape.get_run_time() if SHAPE and shape is not None else 0.0
        return constant_throughput(rates.user_rps_at(SHAPE, run_time))(self)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.last_grant: dict[str, object] | None = None

    @property
    def user_id(self) -> str:
        # Each request acts for one customer of the pool, as an app's many clients do.
        return f"u-{self.rng.randrange(USER_POOL):06d}"

    def _check(self, resp, ok: set[int]) -> None:
        if resp.status_code == 429:
            # Counted apart from the route's successes (Locust reports under request_meta's name).
            resp.request_meta["name"] = f"{resp.request_meta['name']}{THROTTLED_SUFFIX}"
        if resp.status_code in ok or resp.status_code in EXPECTED:
            resp.success()
        else:
            resp.failure(f"unexpected status {resp.status_code}")

    @task(6)
    def grant(self) -> None:
        retry = self.last_grant is not None and self.rng.random() < RETRY_SHARE
        if retry:
            body, ok = self.last_grant, {200, 201}
        else:
            body = {
                "user_id": self.user_id,
                "order_id": f"ord-{uuid.uuid4().hex}",
                "amount_jpy": _amount_jpy(self.rng),
            }
            ok = {201}
        name = "/v1/points/grants (retry)" if retry else "/v1/points/grants"
        with self.client.post(
            "/v1/points/grants",
            json=body,
            name=name,
            headers=CREDENTIALS.grant_headers(),
            catch_response=True,
        ) as resp:
            self._check(resp, ok)
            if resp.status_code == 201:
                self.last_grant = body

    @task(3)
    def balance(self) -> None:
        user_id = self.user_id
        with self.client.get(
            f"/v1/users/{user_id}/points?limit=10",
            name=BALANCE_ROUTE,
            headers=CREDENTIALS.headers(user_id),
            catch_response=True,
        ) as resp:
            self._check(resp, {200})

    @task(1)
    def redeem(self) -> None:
        body = {
            "user_id": self.user_id,
            "order_id": f"rdm-{uuid.uuid4().hex}",
            "points": self.rng.choice((10, 20, 50, 100)),
        }
        with self.client.post(
            "/v1/points/redemptions",
            json=body,
            name="/v1/points/redemptions",
            headers=CREDENTIALS.headers(body["user_id"]),
            catch_response=True,
        ) as resp:
            # 409: more points than the balance, an everyday answer for a new customer.
            self._check(resp, {201, 409})


_shape = shapes.pick(SHAPE)
if _shape is not None:
    # Locust runs the LoadTestShape subclass it finds in this module; bind only the chosen one.
    LoadShape = type("LoadShape", (_shape,), {"abstract": False})
