"""Settings from the environment, and the CLI's one-line errors with exit status 2."""

from __future__ import annotations

import subprocess

import pytest

from tests.worker.conftest import WORKER_CMD
from worker import ConfigError, WorkerConfig

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
        (["setup-queues", "--max-receive-count", "0"], {}, "must be at least 1"),
        (["frobnicate"], {}, "invalid choice: 'frobnicate'"),
        (["send-sample"], {"QUEUE_URL": ""}, "send-sample needs --queue-url or QUEUE_URL"),
        (["send-sample"], {"QUEUE_URL": "my-queue"}, "QUEUE_URL must be an http(s) URL"),
        (["send-sample", "--queue-url", "q"], {}, "--queue-url must be an http(s) URL, got 'q'"),
        ([], {"POINTS_STORE": "dynamodb"}, "POINTS_TABLE is required when POINTS_STORE=dynamodb"),
        ([], {"AWS_ENDPOINT_URL": "notaurl"}, "AWS_ENDPOINT_URL must be an http(s) URL"),
        ([], {"POINTS_DB_PATH": "/nonexistent-dir/points.db"}, "POINTS_DB_PATH: SQLite at"),
        (["setup-queues"], {"AWS_ENDPOINT_URL": "notaurl"}, "AWS_ENDPOINT_URL must be an http"),
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
