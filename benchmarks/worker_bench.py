"""Worker throughput at batch size 10 against the local SQS endpoint, next to that endpoint's
own ceiling measured in the same run.

* ceiling: one plain boto3 loop doing ReceiveMessage(10) + DeleteMessageBatch with no work, the
  most any consumer can get out of this endpoint one request at a time;
* worker: a real ``python -m worker`` process (SQLite store, JSON logs and EMF to a file, batch
  size 10, default concurrency) draining the same number of messages.

Both rates are measured between the first and the last message handled (start-up excluded), on
a queue pre-loaded with the same number of messages; rounds alternate the two so that load from
other processes on the machine hits both alike, and the headline is the median of the per-round
ratios. Target: worker >= 80 % of the ceiling. ``WORKER_BENCH_MESSAGES`` (default 300: moto's
receive cost grows with the backlog) and ``WORKER_BENCH_ROUNDS`` (default 5) size it.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.environment_variables import WORKER_BENCH_MESSAGES, WORKER_BENCH_ROUNDS
from points.environment_variables import AWS_ENDPOINT_URL, POINTS_DB_PATH
from telemetry.environment_variables import OTEL_SERVICE_NAME
from tests.conftest import FAKE_AWS_ENV
from tests.support.processes import child, moto_server
from worker import make_client, make_event, setup_queues
from worker._sample import send_bodies
from worker.environment_variables import QUEUE_URL, WORKER_BATCH_SIZE, WORKER_WAIT_TIME_S

MESSAGES = int(os.environ.get(WORKER_BENCH_MESSAGES, "300"))
ROUNDS = int(os.environ.get(WORKER_BENCH_ROUNDS, "5"))
TIME_LIMIT_S = 120.0


def _load(client: Any, url: str, n: int, tag: str) -> float:
    bodies = [make_event(f"user-{i % 97}", f"{tag}-{i}", 100 + i) for i in range(n)]
    t0 = time.perf_counter()
    send_bodies(client, url, bodies)
    return n / (time.perf_counter() - t0)


def _ceiling(client: Any, url: str, n: int) -> float:
    """Messages/s of receive(10) + delete_batch in one loop, first receive to last delete."""
    done = 0
    first: float | None = None
    deadline = time.monotonic() + TIME_LIMIT_S
    while done < n and time.monotonic() < deadline:
        msgs = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30
        ).get("Messages", [])
        if not msgs:
            continue
        if first is None:
            first = time.perf_counter()
        client.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)
            ],
        )
        done += len(msgs)
    assert first is not None and done == n, f"ceiling loop handled {done} of {n}"
    # the first batch's receive is not inside the interval: count it out
    return (n - 10) / (time.perf_counter() - first)


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _worker(endpoint: str, url: str, n: int, workdir: Path) -> dict[str, Any]:
    """A real worker process: msg/s from its first to its last "order credited" line, SQS calls
    per message and its CPU time per message (start-up and shutdown included)."""
    out_path = workdir / f"worker-{uuid.uuid4().hex[:6]}.log"
    env = {
        **FAKE_AWS_ENV,
        AWS_ENDPOINT_URL: endpoint,
        QUEUE_URL: url,
        POINTS_DB_PATH: str(workdir / f"{uuid.uuid4().hex[:6]}.db"),
        WORKER_BATCH_SIZE: "10",
        WORKER_WAIT_TIME_S: "1",
        OTEL_SERVICE_NAME: "points-worker",
    }
    times: list[float] = []
    outcomes: dict[str, int] = {}
    stopped: dict[str, Any] = {}
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with out_path.open("wb") as out, child([sys.executable, "-m", "worker"], env=env, stdout=out):
        deadline = time.monotonic() + TIME_LIMIT_S
        while time.monotonic() < deadline:
            time.sleep(0.5)
            text = out_path.read_text(errors="replace")
            if text.count('"outcome": "credited"') + text.count('"outcome": "duplicate"') >= n:
                break
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for line in out_path.read_text().splitlines():
        if not line.startswith("{") or '"logger": "worker"' not in line:
            continue
        doc = json.loads(line)
        if doc.get("message") == "worker stopped":
            stopped = doc
        if doc.get("outcome"):
            outcomes[doc["outcome"]] = outcomes.get(doc["outcome"], 0) + 1
            if doc["outcome"] in ("credited", "duplicate"):
                times.append(_ts(doc["time"]))
    assert len(times) == n, f"worker handled {len(times)} of {n}: {outcomes}"
    cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {
        # log times have millisecond resolution; the first batch is not inside the interval
        "rate": (n - 10) / (max(times) - min(times)),
        "outcomes": outcomes,
        "calls_per_msg": (stopped.get("receive_calls", 0) + stopped.get("ack_calls", 0)) / n,
        "cpu_ms_per_msg": cpu_s * 1000 / n,
    }


def main() -> None:
    for key, value in FAKE_AWS_ENV.items():
        os.environ.setdefault(key, value)
    print(f"messages per run: {MESSAGES}, rounds: {ROUNDS} (alternating ceiling / worker)")
    ceilings: list[float] = []
    workers: list[float] = []
    sends: list[float] = []
    cpu: list[float] = []
    calls: list[float] = []
    with moto_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        client = make_client("us-east-1", endpoint)
        for r in range(ROUNDS):
            q = setup_queues(client, f"bench-c-{r}-{uuid.uuid4().hex[:6]}")["queue_url"]
            sends.append(_load(client, q, MESSAGES, f"c{r}"))
            ceilings.append(_ceiling(client, q, MESSAGES))
            q = setup_queues(client, f"bench-w-{r}-{uuid.uuid4().hex[:6]}")["queue_url"]
            sends.append(_load(client, q, MESSAGES, f"w{r}"))
            got = _worker(endpoint, q, MESSAGES, Path(tmp))
            workers.append(got["rate"])
            cpu.append(got["cpu_ms_per_msg"])
            calls.append(got["calls_per_msg"])
            print(
                f"round {r + 1}: ceiling {ceilings[-1]:7.1f} msg/s   worker {got['rate']:7.1f} "
                f"msg/s   ratio {got['rate'] / ceilings[-1]:6.1%}   outcomes {got['outcomes']}"
            )
    c, w = statistics.median(ceilings), statistics.median(workers)
    print(f"send_message_batch(10) rate (loading): {statistics.median(sends):7.0f} msg/s")
    print(f"endpoint ceiling, receive(10)+delete_batch, no work: {c:7.0f} msg/s (median)")
    print(f"worker, batch 10, concurrency 10, SQLite + telemetry: {w:7.0f} msg/s (median)")
    print(
        f"worker SQS calls per message: {statistics.median(calls):.3f} "
        f"(ceiling loop: 0.200); worker CPU per message: {statistics.median(cpu):.2f} ms "
        "(whole process: start-up, telemetry, SQLite, boto3)"
    )
    ratios = sorted(wr / cr for wr, cr in zip(workers, ceilings, strict=True))
    print(
        f"worker / ceiling: median of rounds {statistics.median(ratios):.1%} "
        f"(range {ratios[0]:.0%}-{ratios[-1]:.0%}); of medians {w / c:.1%}  (target >= 80 %)"
    )


if __name__ == "__main__":
    main()
