"""The locustfile against the real service under gunicorn, through the weighted listener."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from rehearsal.listener import Record, WeightedListener
from tests.support.issuer import ISSUER
from tests.support.processes import ROOT
from tests.support.processes import gunicorn as _gunicorn


def gunicorn(*, env: dict[str, str]):
    """The service, trusting the session's local issuer (whose key Locust signs with)."""
    return _gunicorn(env={**ISSUER.env(), **env})


def _locust(host: str, out: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"),
        "--headless", "--host", host, "--csv", str(out / "load"), "--html", str(out / "load.html"),
        "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "5", *extra,
    ]  # fmt: skip
    run_env = {"PATH": "/usr/bin:/bin", "LOAD_SHAPE": "steady", "LOAD_DURATION_S": "6",
               **ISSUER.load_env(), **env}  # fmt: skip
    return subprocess.run(args, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=90)


def _rows(path: Path) -> dict[str, dict[str, str]]:
    import csv

    with path.open(newline="") as fh:
        return {row["Name"]: row for row in csv.DictReader(fh)}


@pytest.mark.slow
@pytest.mark.parametrize("limiter", ["off", "reject"])
def test_locustfile_drives_every_route_and_expected_answers_are_not_failures(
    tmp_path: Path, limiter: str
) -> None:
    env = {"POINTS_DB_PATH": str(tmp_path / "points.db"), "WEB_CONCURRENCY": "1"}
    if limiter == "reject":
        env.update({"RATE_LIMIT_ENABLED": "true", "RATE_LIMIT_RPS": "5",
                    "RATE_LIMIT_BURST": "1", "RATE_LIMIT_MODE": "reject"})  # fmt: skip
    statuses: Counter[tuple[str, int]] = Counter()

    def observe(record: Record, body: bytes) -> None:
        statuses[(record.path.split("?")[0].rsplit("/", 2)[-1], record.status)] += 1

    with gunicorn(env=env) as (base, _proc):
        port = int(base.rsplit(":", 1)[1])
        with WeightedListener({"blue": ("127.0.0.1", port)}, observer=observe) as lb:
            proc = _locust(lb.url, tmp_path, LOAD_RPS="20", LOAD_RETRY_SHARE="0.5")
    failures = (tmp_path / "load_failures.csv").read_text()
    assert proc.returncode == 0, proc.stderr[-3000:] + failures
    rows = _rows(tmp_path / "load_stats.csv")
    for name in ("/v1/points/grants", "/v1/users/[user_id]/points", "/v1/points/redemptions"):
        # 429s are reported in a row of their own (`<name> [429]`); with the limiter on, every
        # one of a rare route's requests may have been refused, leaving only that row.
        own = [rows[n] for n in (name, f"{name} [429]") if n in rows]
        assert sum(int(r["Request Count"]) for r in own) > 0, name
        assert all(int(r["Failure Count"]) == 0 for r in own), failures
        if limiter == "off":
            assert name in rows and f"{name} [429]" not in rows, sorted(rows)
    assert int(rows["/v1/points/grants (retry)"]["Request Count"]) > 0
    # the CSV holds the final figures: every request the service answered, the last second's too
    # (Locust rewrites it every second only; it lacked up to a second of requests)
    assert int(rows["Aggregated"]["Request Count"]) == sum(statuses.values())
    assert (tmp_path / "load.html").stat().st_size > 1000
    # What the service really answered: idempotent replays (200), insufficient points (409),
    # and in reject mode 429s, none of which Locust counted as failures.
    assert statuses[("grants", 201)] > 0
    if limiter == "off":
        # With the limiter rejecting 3 requests in 4, a retry of an acknowledged grant is itself
        # most often refused, so replays (200) are only certain without it.
        assert statuses[("grants", 200)] > 0
    # Redemptions are rare; with the limiter on, all of them may have been refused with 429.
    answered = (201, 409) if limiter == "off" else (201, 409, 429)
    assert sum(statuses[("redemptions", status)] for status in answered) > 0
    if limiter == "reject":
        assert sum(n for (_, status), n in statuses.items() if status == 429) > 0
    assert not [k for k in statuses if k[1] >= 500]


def test_bad_load_shape_is_one_clear_error(tmp_path: Path) -> None:
    proc = _locust("http://127.0.0.1:9", tmp_path, LOAD_SHAPE="spike")
    assert proc.returncode != 0
    assert "LOAD_SHAPE must be one of steady, step, demo" in proc.stderr


@pytest.mark.slow
def test_the_documented_command_with_a_shape_stops_at_run_time(tmp_path: Path) -> None:
    # LOAD_SHAPE=demo runs until stopped; --run-time must stop it (it hung before). The
    # subprocess timeout only guards against a hang.
    env = {"POINTS_DB_PATH": str(tmp_path / "points.db"), "WEB_CONCURRENCY": "1"}
    with gunicorn(env=env) as (base, _proc):
        proc = _locust(base, tmp_path, "--run-time", "4s", LOAD_SHAPE="demo", LOAD_RPS="10",
                       LOAD_DURATION_S="0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(tmp_path / "load_stats.csv")
    assert int(rows["Aggregated"]["Request Count"]) > 0
    assert (tmp_path / "load.html").exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [("LOAD_USER_POOL", "0"), ("LOAD_USER_RPS", "0"), ("LOAD_RETRY_SHARE", "abc"),
     ("LOAD_RPS", "-5"), ("LOAD_DURATION_S", "soon"), ("LOAD_RPS", "1e300")],
)  # fmt: skip
def test_a_bad_load_setting_stops_locust_at_start_with_one_line(
    tmp_path: Path, name: str, value: str
) -> None:
    # LOAD_USER_POOL=0 used to run the whole test with every task raising.
    proc = _locust("http://127.0.0.1:9", tmp_path, "--run-time", "30s", **{name: value})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"loadtest: configuration error: {name} must " + proc.stderr.split(" must ", 1)[1].strip()
    ]
    assert not (tmp_path / "load_stats.csv").exists()  # no load was started


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"LOAD_AUTH_KEY_FILE": ""}, "LOAD_AUTH_KEY_FILE is required"),
        ({"LOAD_AUTH_KEY_FILE": "/nonexistent/key.pem"}, "LOAD_AUTH_KEY_FILE: cannot read"),
        ({"LOAD_AUTH_ISSUER": " "}, "LOAD_AUTH_ISSUER is required with LOAD_AUTH_KEY_FILE"),
        ({"LOAD_AUTH_AUDIENCE": ""}, "LOAD_AUTH_AUDIENCE is required with LOAD_AUTH_KEY_FILE"),
        ({"LOAD_AUTH_MODE": "sometimes"}, "LOAD_AUTH_MODE must be jwt or off"),
        ({"LOAD_AUTH_TTL_S": "5"}, "LOAD_AUTH_TTL_S must be a number of seconds"),
    ],
)
def test_bad_credentials_stop_locust_at_start_with_one_line(
    tmp_path: Path, changes: dict[str, str], message: str
) -> None:
    proc = _locust("http://127.0.0.1:9", tmp_path, "--run-time", "30s", **changes)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadtest: configuration error: "), lines
    assert message in lines[0]
    assert not (tmp_path / "load_stats.csv").exists()


@pytest.mark.parametrize(
    ("host", "extra", "message"),
    [("", (), "--host is required"),  # was a traceback per user, exit 0, nothing sent
     ("127.0.0.1:9", (), "--host must be an http:// or https:// URL"),  # every request failed
     ("http://127.0.0.1:99999", (), "--host must have a port from 1 to 65535"),
     ("http://127.0.0.1:9", ("-u", "50", "-r", "5"), "--users/--spawn-rate cannot be used"),  # ignored
     ("http://127.0.0.1:9", ("--tags", "grant"), "--tags grant: no task"),  # tracebacks, nothing sent
    ],
)  # fmt: skip
def test_a_bad_locust_option_stops_locust_at_start_with_one_line(
    tmp_path: Path, host: str, extra: tuple[str, ...], message: str
) -> None:
    # a previous run's results, as --csv left them: a refused run must not touch them (Locust
    # opens, and so empties, its --csv files before its init event)
    earlier = {f"load_{k}.csv": f"{k} of the run before\n" for k in ("stats", "failures")}
    for name, text in earlier.items():
        (tmp_path / name).write_text(text)
    proc = _locust(host, tmp_path, "--run-time", "30s", *extra)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadtest: configuration error: "), lines
    assert message in lines[0]
    assert {name: (tmp_path / name).read_text() for name in earlier} == earlier


def test_another_locustfile_s_option_is_not_read_as_a_locust_option(tmp_path: Path) -> None:
    # the options are checked before the other locustfile added its own: its --user (or --run)
    # was read as an abbreviation of Locust's --users (--run-time) and refused
    other = tmp_path / "other.py"
    other.write_text(
        "import sys\n"
        "from locust import events\n"
        "@events.init_command_line_parser.add_listener\n"
        "def _options(parser, **_kwargs):\n"
        "    parser.add_argument('--user', default='nobody')\n"
        "    parser.add_argument('--run', default='never')\n"
        "@events.init.add_listener\n"
        "def _seen(environment, **_kwargs):\n"
        "    o = environment.parsed_options\n"
        "    print(f'user={o.user} run={o.run} users={o.num_users}', flush=True)\n"
        "    sys.exit(0)\n"
    )
    args = [sys.executable, "-m", "locust", "-f", f"{ROOT / 'loadtest' / 'locustfile.py'},{other}",
            "--headless", "--host", "http://127.0.0.1:9", "--user", "5", "--run", "now"]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "LOAD_AUTH_MODE": "off", "LOAD_SHAPE": "steady"}
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "user=5 run=now users=None" in proc.stdout


def test_an_abbreviated_locust_option_is_checked_as_locust_reads_it(tmp_path: Path) -> None:
    # Locust takes --hos for --host: refused for its value, not as a missing --host
    proc = _locust("", tmp_path, "--run-time", "30s", "--hos", "ftp://x")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--host must be an http:// or https:// URL" in lines[0], lines


@pytest.mark.parametrize("web_host", ["*", "0.0.0.0", "::"])
def test_the_web_ui_is_refused_beyond_loopback(tmp_path: Path, web_host: str) -> None:
    # Locust's web UI (no login) bound to every interface by default; now 127.0.0.1.
    args = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"),
            "--web-host", web_host, "--web-port", "0", "--loglevel", "WARNING"]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "LOAD_AUTH_MODE": "off"}
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "loadtest: configuration error: --web-host must be a loopback address such as "
        f"127.0.0.1 (the web UI has no login), got {web_host!r}; use --headless to run without it"
    ]
