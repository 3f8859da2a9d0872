"""Names of the environment variables the benchmarks read, defined once (the packages' own are
in their ``environment_variables`` modules: ``telemetry``, ``points``, ``sample_api``, ``worker``).
"""

from __future__ import annotations

#: ``benchmarks.gunicorn_app``'s variant: ``bare`` (the default), ``red`` or ``full``; set by
#: ``gunicorn_bench`` for each server it starts.
BENCH_VARIANT = "BENCH_VARIANT"
#: ``rehearsal_bench``: regression runs (default 3) and healthy runs (default 10).
REHEARSAL_BENCH_REGRESSION_RUNS = "REHEARSAL_BENCH_REGRESSION_RUNS"
REHEARSAL_BENCH_HEALTHY_RUNS = "REHEARSAL_BENCH_HEALTHY_RUNS"
#: ``worker_bench``: messages per run (default 300) and rounds (default 5).
WORKER_BENCH_MESSAGES = "WORKER_BENCH_MESSAGES"
WORKER_BENCH_ROUNDS = "WORKER_BENCH_ROUNDS"
#: ``worker_rollout_bench``: regression runs (default 3) and healthy runs (default 5).
WORKER_ROLLOUT_BENCH_REGRESSION_RUNS = "WORKER_ROLLOUT_BENCH_REGRESSION_RUNS"
WORKER_ROLLOUT_BENCH_HEALTHY_RUNS = "WORKER_ROLLOUT_BENCH_HEALTHY_RUNS"
