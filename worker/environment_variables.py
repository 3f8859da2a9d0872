"""Names of the environment variables the SQS worker reads, defined once (see docs/worker.md).

The store's names (``POINTS_STORE``, ``POINTS_DB_PATH``, ``POINTS_TABLE``, ``POINTS_RATE``) and
the AWS region and endpoint are in :mod:`points.environment_variables`.
"""

#: The SQS queue URL (required for ``run``; ``setup-queues`` prints one).
QUEUE_URL = "QUEUE_URL"
#: An SQS-only endpoint (botocore's name); wins over ``AWS_ENDPOINT_URL`` for SQS.
AWS_ENDPOINT_URL_SQS = "AWS_ENDPOINT_URL_SQS"

#: Jobs run at once, 1-256 (default 10).
WORKER_CONCURRENCY = "WORKER_CONCURRENCY"
#: Messages per ReceiveMessage, 1-10 (default 10).
WORKER_BATCH_SIZE = "WORKER_BATCH_SIZE"
#: Long-poll wait in seconds, 0-20 (default 10).
WORKER_WAIT_TIME_S = "WORKER_WAIT_TIME_S"
#: Visibility timeout the heartbeat keeps extending, in seconds (default 30).
WORKER_VISIBILITY_TIMEOUT_S = "WORKER_VISIBILITY_TIMEOUT_S"
#: Seconds between queue depth polls (default 10).
WORKER_QUEUE_POLL_S = "WORKER_QUEUE_POLL_S"
#: Seconds a graceful stop may take, above ``WORKER_WAIT_TIME_S`` (default 20).
WORKER_STOP_TIMEOUT_S = "WORKER_STOP_TIMEOUT_S"
#: Seconds one job may run before its message is released (default 300).
WORKER_JOB_TIMEOUT_S = "WORKER_JOB_TIMEOUT_S"
#: Fault injection: extra milliseconds of work per job (default 0) ...
WORKER_SIMULATED_WORK_MS = "WORKER_SIMULATED_WORK_MS"
#: ... and the share of jobs that fail, 0-1 (default 0).
WORKER_SIMULATED_FAILURE_RATE = "WORKER_SIMULATED_FAILURE_RATE"
