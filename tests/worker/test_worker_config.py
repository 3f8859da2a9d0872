"""Settings from the environment, and the CLI's one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import child
from tests.worker.conftest import WORKER_CMD, worker_env
from worker import ConfigError, WorkerConfig
from worker.__main__ import COMMANDS, main
from worker._config import SETTINGS

URL = "http://127.0.0.1:1/123456789012/q"


def test_defaults() -> None:
    cfg = WorkerConfig.from_env({"QUEUE_URL": URL})
    assert (cfg.concurrency, cfg.batch_size, cfg.wait_time_s) == (10, 10, 10)
    assert (cfg.visibility_timeout_s, cfg.queue_poll_s, cfg.stop_timeout_s) == (30, 10.0, 20.0)
    assert cfg.region == "us-east-1" and cfg.endpoint_url is None


def test_values_are_read() -> None:
    cfg = WorkerConfig.from_env(
        {
            "QUEUE_URL": URL,
            "AWS_DEFAULT_REGION": "ap-northeast-1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
            "WORKER_CONCURRENCY": "3",
            "WORKER_BATCH_SIZE": "7",
            "WORKER_WAIT_TIME_S": "0",
            "WORKER_VISIBILITY_TIMEOUT_S": "5",
            "WORKER_QUEUE_POLL_S": "2.5",
        }
    )
    assert cfg.region == "ap-northeast-1" and cfg.endpoint_url == "http://127.0.0.1:5000"
    assert (cfg.concurrency, cfg.batch_size, cfg.wait_time_s) == (3, 7, 0)
    assert (cfg.visibility_timeout_s, cfg.queue_poll_s) == (5, 2.5)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"QUEUE_URL": " "}, "QUEUE_URL is required"),
        ({"QUEUE_URL": "my-queue"}, "QUEUE_URL must be an http(s) URL"),
        ({"AWS_ENDPOINT_URL": "localhost:5000"}, "AWS_ENDPOINT_URL must be an http(s) URL"),
        ({"AWS_ENDPOINT_URL_SQS": "http://"}, "AWS_ENDPOINT_URL_SQS must be an http(s) URL"),
        ({"WORKER_BATCH_SIZE": "11"}, "WORKER_BATCH_SIZE must be between 1 and 10"),
        ({"WORKER_BATCH_SIZE": "ten"}, "WORKER_BATCH_SIZE must be a whole number"),
        ({"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY must be between"),
        ({"WORKER_WAIT_TIME_S": "21"}, "WORKER_WAIT_TIME_S must be between 0 and 20"),
        ({"WORKER_QUEUE_POLL_S": "nan"}, "WORKER_QUEUE_POLL_S must be between"),
        ({"WORKER_SIMULATED_FAILURE_RATE": "2"}, "WORKER_SIMULATED_FAILURE_RATE"),
        (
            {"WORKER_WAIT_TIME_S": "20", "WORKER_STOP_TIMEOUT_S": "15"},
            "must be greater than WORKER_WAIT_TIME_S",
        ),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        WorkerConfig.from_env({"QUEUE_URL": URL, **env})
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        ([], {"WORKER_BATCH_SIZE": "11"}, "WORKER_BATCH_SIZE must be between 1 and 10"),
        ([], {"POINTS_STORE": "oracle"}, "POINTS_STORE must be one of"),
        ([], {"POINTS_RATE": "lots"}, "POINTS_RATE must be a decimal number"),
        (["send-sample", "--count", "x"], {}, "--count: must be an integer"),
        (["setup-queues", "--max-receive-count", "0"], {}, "must be between 1 and 1,000"),
        (["--concurrency", "5"], {"WORKER_WAIT_TIME_S": "30"}, "WORKER_WAIT_TIME_S must be"),
        (["run", "--wait-time", "20", "--stop-timeout", "5"], {}, "--stop-timeout (5) must be"),
        (["frobnicate"], {}, "invalid choice: 'frobnicate'"),
        (["send-sample"], {"QUEUE_URL": ""}, "send-sample needs --queue-url or QUEUE_URL"),
        (["send-sample"], {"QUEUE_URL": "my-queue"}, "QUEUE_URL must be an http(s) URL"),
        (
            ["send-sample", "--queue-url", "q"],
            {},
            "argument --queue-url: must be an http(s) URL, got 'q'",
        ),
        ([], {"POINTS_STORE": "dynamodb"}, "POINTS_TABLE is required when POINTS_STORE=dynamodb"),
        ([], {"AWS_ENDPOINT_URL": "notaurl"}, "AWS_ENDPOINT_URL must be an http(s) URL"),
        ([], {"POINTS_DB_PATH": "/nonexistent-dir/points.db"}, "POINTS_DB_PATH: SQLite at"),
        (["setup-queues"], {"AWS_ENDPOINT_URL": "notaurl"}, "AWS_ENDPOINT_URL must be an http"),
        ([], {"AWS_REGION": "bad region!"}, "AWS_REGION must be a region name"),
        (["send-sample"], {"AWS_REGION": "us_east_1"}, "AWS_REGION must be a region name"),
        (
            ["send-sample", "--queue-url", "http://127.0.0.1:1/123456789012/orders.fifo"],
            {},
            "is a FIFO queue (.fifo)",
        ),
        (
            ["setup-queues"],
            {"AWS_REGION": "", "AWS_DEFAULT_REGION": "-x"},
            "AWS_DEFAULT_REGION must",
        ),
        # a queue of another region: SQS would call it missing, though it exists
        (
            [],
            {"QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/q"},
            "names region eu-west-1, but the SQS client's region is us-east-1",
        ),
        (
            ["--queue-url", "https://sqs.ap-northeast-1.amazonaws.com/123456789012/q"],
            {"AWS_REGION": "", "AWS_DEFAULT_REGION": "us-west-2"},
            "set AWS_REGION=ap-northeast-1",
        ),
        (
            ["send-sample", "--queue-url", "https://eu-central-1.queue.amazonaws.com/1/q"],
            {"AWS_REGION": "us-east-1"},
            "names region eu-central-1",
        ),
    ],
)
def test_cli_bad_config_is_one_line_and_exit_2(
    args: list[str], env: dict[str, str], needle: str, aws_env: dict[str, str]
) -> None:
    full = {**aws_env, "QUEUE_URL": URL, **env}
    proc = subprocess.run(
        [*WORKER_CMD, *args], env=full, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("telemetry:")]
    assert len(lines) == 1, proc.stderr  # one line: no argparse usage block, no traceback
    assert needle in lines[0]


@pytest.mark.parametrize(
    ("url", "region", "ok"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", "eu-west-1", True),
        ("https://SQS.EU-WEST-1.amazonaws.com/123456789012/q", "eu-west-1", True),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", "eu-west-2", False),
        ("https://sqs-fips.us-gov-west-1.amazonaws.com/1/q", "us-gov-west-1", True),
        ("https://sqs-fips.us-gov-west-1.amazonaws.com/1/q", "us-east-1", False),
        ("https://sqs.cn-north-1.amazonaws.com.cn/1/q", "cn-north-1", True),
        ("https://sqs.cn-north-1.amazonaws.com.cn/1/q", "cn-northwest-1", False),
        ("https://ap-south-1.queue.amazonaws.com/1/q", "ap-south-1", True),
        ("https://ap-south-1.queue.amazonaws.com/1/q", "us-east-1", False),
        ("https://queue.amazonaws.com/1/q", "us-east-1", True),  # legacy: us-east-1
        ("https://queue.amazonaws.com/1/q", "eu-west-1", False),
        # not AWS's hosts: whatever region the local endpoint takes
        ("http://127.0.0.1:5000/123456789012/q", "eu-west-1", True),
        ("http://sqs.eu-west-1.localhost.localstack.cloud:4566/1/q", "us-east-1", True),
        ("https://sqs.eu-west-1.amazonaws.com.example.org/1/q", "us-east-1", True),
    ],
)
def test_a_queue_url_of_another_aws_region_is_refused(url: str, region: str, ok: bool) -> None:
    env = {"QUEUE_URL": url, "AWS_REGION": region}
    if ok:
        assert WorkerConfig.from_env(env).region == region
    else:
        with pytest.raises(ConfigError, match=r"set AWS_REGION=[a-z0-9-]+$"):
            WorkerConfig.from_env(env)


def test_cli_without_credentials_says_so_in_one_line_and_exit_1(
    aws_env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in aws_env.items() if not k.startswith("AWS_")}
    env.update(
        QUEUE_URL=f"{aws_env['AWS_ENDPOINT_URL']}/123456789012/q",
        AWS_ENDPOINT_URL=aws_env["AWS_ENDPOINT_URL"],
        POINTS_DB_PATH=str(tmp_path / "p.db"),
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        HOME=str(tmp_path),
    )
    proc = subprocess.run(WORKER_CMD, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("telemetry:")]
    assert lines == [
        "points-worker: no usable AWS credentials for SQS: Unable to locate credentials"
    ]


def test_cli_missing_queue_is_exit_2(aws_env: dict[str, str], tmp_path) -> None:
    env = {
        **aws_env,
        "QUEUE_URL": f"{aws_env['AWS_ENDPOINT_URL']}/123456789012/no-such-queue",
        "POINTS_DB_PATH": str(tmp_path / "p.db"),
    }
    proc = subprocess.run(WORKER_CMD, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "NonExistentQueue" in proc.stderr or "QueueDoesNotExist" in proc.stderr


# -- the CLI's options, help and usage errors (in-process: they end before any I/O) -----------


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        status = main(args)
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["-h"]])
def test_run_help_lists_every_option_and_variable_with_its_default(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _cli(args, capsys)
    assert status == 0
    assert "`" not in out  # no reStructuredText markup
    flat = " ".join(out.split())
    for s in SETTINGS:
        assert s.option in out and s.env in out, s
        assert f"{s.env} {s.describe()}" in flat  # the variable, its default and range
    for name in ("--queue-url", "QUEUE_URL", "AWS_ENDPOINT_URL", "POINTS_DB_PATH", "POINTS_RATE"):
        assert name in out


@pytest.mark.parametrize(
    ("command", "names"),
    [
        ("send-sample", ["--count", "--users", "--duplicates", "--poison", "--seed", "--queue-url",
                         "QUEUE_URL", "AWS_ENDPOINT_URL", "AWS_REGION"]),
        ("setup-queues", ["--name", "--max-receive-count", "--visibility-timeout",
                          "AWS_ENDPOINT_URL", "AWS_REGION"]),
    ],
)  # fmt: skip
def test_every_subcommand_help_lists_its_options_and_variables(
    command: str, names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _cli([command, "--help"], capsys)
    assert status == 0 and "`" not in out
    for name in names:
        assert name in out, name
    assert out.count("(default") >= 3


def _bad_values(kind: type) -> list[str]:
    return ["x", "", " ", "1e999" if kind is int else "nan", "9" * 5000, "-1", "999999999999"]


@pytest.mark.parametrize(
    ("option", "value"),
    [(s.option, v) for s in SETTINGS for v in _bad_values(s.kind)]
    + [("--queue-url", v) for v in ("", "queue", "http://", "ftp://x/q", "http://[::1")],
)
def test_a_bad_option_value_is_one_line_naming_the_option_and_exit_2(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in ([option, value], ["run", option, value], [f"{option}={value}"]):
        status, _, err = _cli(args, capsys)
        assert status == 2, args
        assert len(err.strip().splitlines()) == 1, err
        assert f"argument {option}: must" in err, err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--count", "5"], "--count is an option of `send-sample`: put it after the subcommand"),
        (["--count=5", "send-sample"], "--count is an option of `send-sample`"),
        (["--name", "q", "setup-queues"], "--name is an option of `setup-queues`"),
        (["--frobnicate", "5"], "unrecognized option '--frobnicate'"),
        (["--conc", "5"], "unrecognized option '--conc'"),  # no abbreviations
        (["--concurrency", "5", "send-sample"], "--concurrency is an option of `run`, not of"),
        (["5"], "invalid choice: '5'"),
        (["send-sample", "--concurrency", "5"], "unrecognized arguments: --concurrency 5"),
        (["setup-queues", "--name", "a.b"], "argument --name: must be 1-76 characters"),
        (["setup-queues", "--visibility-timeout", "43201"], "must be between 0 and 43,200"),
        (["send-sample", "--count", "9" * 5000], "argument --count: must be between"),
        (["send-sample", "--seed", "-1"], "argument --seed: must be between"),
    ],
)
def test_options_in_the_wrong_place_or_unknown_are_one_line_and_exit_2(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = _cli(args, capsys)
    assert status == 2
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err


def test_commands_are_the_documented_ones() -> None:
    assert COMMANDS == ("run", "send-sample", "setup-queues")


@pytest.mark.parametrize("args", [["--concurrency", "3", "--batch-size", "2"],
                                  ["run", "--concurrency=3", "--batch-size", "2"]])  # fmt: skip
def test_run_options_work_with_or_without_the_subcommand_and_win_over_variables(
    args: list[str], sqs: Any, queues: dict[str, str], tmp_path: Path, aws_env: dict[str, str]
) -> None:
    env = worker_env(aws_env, "", tmp_path / "p.db", WORKER_CONCURRENCY=7, WORKER_BATCH_SIZE=9)
    del env["QUEUE_URL"]
    cmd = [*WORKER_CMD, *args, "--queue-url", queues["queue_url"]]
    with child(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline().decode())  # "worker started"
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert first["message"] == "worker started"
    assert (first["concurrency"], first["batch_size"]) == (3, 2)
    assert first["queue_url"] == queues["queue_url"]


def test_an_endpoint_that_is_not_sqs_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """AWS_ENDPOINT_URL pointing at some other web server (a typo, the wrong port): botocore's
    error message is that server's HTML error page; the worker still says it in one line."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        http.server.SimpleHTTPRequestHandler,  # POST: 501 with an HTML page
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        aws = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_REGION": "us-east-1"}
        env = worker_env(
            {**aws, "AWS_ENDPOINT_URL": endpoint},
            f"{endpoint}/123456789012/q",
            tmp_path / "p.db",
        )
        proc = subprocess.run(WORKER_CMD, env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("telemetry:")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("points-worker: SQS ") and "501" in lines[0]
    assert len(lines[0]) <= 400
