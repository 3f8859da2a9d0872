"""The worker's spans as a real ``python -m worker`` writes them to ``TELEMETRY_TRACES_FILE``: every
SQS call a CLIENT span from OpenTelemetry's botocore instrumentation, every message a job span in
its producer's trace with the ledger call as its child. Read back with the reader the rehearsal
uses for its ``traces.jsonl`` (OTLP JSON lines)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from rehearsal import traces
from tests.support.processes import child
from tests.worker.conftest import WORKER_CMD, Ledger, depth, drained, wait_for, worker_env
from worker import make_event
from worker._instrument import JOB_NAME
from worker._sample import POISON_BODIES, message_entry

#: The attributes the installed instrumentation (opentelemetry-instrumentation-botocore 0.66b1,
#: ``_patched_api_call``) sets on every AWS call, and its span name ``<service id>.<operation>``.
RPC_SYSTEM, RPC_SERVICE, RPC_METHOD = "rpc.system", "rpc.service", "rpc.method"


def test_sqs_calls_are_client_spans_and_each_message_has_its_job_span(
    sqs: Any,
    queues: dict[str, str],
    db_path: Path,
    ledger: Ledger,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> None:
    queue_url = queues["queue_url"]
    orders = [(f"user-{i % 3}", f"span-{i}", 1_000 + 50 * i) for i in range(6)]
    entries = [message_entry(make_event(*o), i) for i, o in enumerate(orders)]
    # one poison message: released at once on each receive (ChangeMessageVisibilityBatch)
    entries.append(message_entry(POISON_BODIES[0], len(entries)))
    sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    producer = {  # order id (or "poison") -> the producer's W3C trace id
        (orders[i][1] if i < len(orders) else "poison"): e["MessageAttributes"]["traceparent"][
            "StringValue"
        ].split("-")[1]
        for i, e in enumerate(entries)
    }
    traces_file = tmp_path / "traces.jsonl"
    env = worker_env(
        aws_env,
        queue_url,
        db_path,
        TELEMETRY_TRACES_FILE=traces_file,
        WORKER_CONCURRENCY=3,
        WORKER_VISIBILITY_TIMEOUT_S=10,  # no redelivery of a good message, even on a slow day
    )
    with child(WORKER_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        wait_for(lambda: ledger.count() == len(orders), 20, "every order credited")
        wait_for(lambda: depth(sqs, queues["dlq_url"])[0] == 1, 20, "the poison in the DLQ")
        wait_for(lambda: drained(sqs, queue_url), 10, "the queue to drain")
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    stopped = [json.loads(x) for x in out.decode().splitlines() if '"worker stopped"' in x]
    assert len(stopped) == 1 and stopped[0]["deleted"] == len(orders)

    read = traces.read(traces_file)
    assert not read.missing and not read.error and read.unreadable_lines == 0
    spans = read.spans
    assert {s.service for s in spans} == {"points-worker"}

    # -- SQS calls: CLIENT spans of the botocore instrumentation ----------------------------
    aws = [s for s in spans if s.attributes.get(RPC_SYSTEM) == "aws-api"]
    assert aws, "no AWS call was traced: the botocore instrumentation is not active"
    for s in aws:
        assert s.kind == "CLIENT" and s.attributes[RPC_SERVICE] == "SQS", s
        assert s.name == f"SQS.{s.attributes[RPC_METHOD]}"
        assert not s.failed, s
    calls = Counter(s.attributes[RPC_METHOD] for s in aws)
    # every receive the worker made is one span (no more: moto answers each at once)
    assert calls["ReceiveMessage"] == stopped[0]["receive_calls"] >= 1
    assert calls["DeleteMessageBatch"] >= 1  # batched: fewer calls than messages is the point
    assert calls["ChangeMessageVisibilityBatch"] >= 1  # the poison message's releases
    assert calls["GetQueueAttributes"] >= 1  # the redrive policy at start, the depth polls
    for s in aws:
        if s.attributes[RPC_METHOD] in ("ReceiveMessage", "DeleteMessageBatch"):
            assert s.attributes["aws.queue_url"] == queue_url
            assert s.attributes["messaging.system"] == "aws.sqs"

    # -- one job span per receive, each in its producer's trace, the grant its child ---------
    jobs = [s for s in spans if s.name == JOB_NAME]
    assert all(j.kind == "CONSUMER" for j in jobs)
    by_order = {j.attributes.get("order_id"): j for j in jobs if "order_id" in j.attributes}
    assert set(by_order) == {o for _, o, _ in orders}
    for order_id, job in by_order.items():
        assert job.trace_id == producer[order_id], order_id
        assert job.parent_span_id, "the job continues the producer's span, it is not a root"
        assert not job.failed
        grants = [s for s in traces.children(spans, job) if s.name == "store.grant"]
        assert len(grants) == 1 and grants[0].trace_id == job.trace_id
        # at least once: the message is deleted only after the ledger committed the grant
        assert any(
            s.attributes[RPC_METHOD] == "DeleteMessageBatch" and s.start_ns >= grants[0].end_ns
            for s in aws
        ), order_id
    poisoned = [j for j in jobs if "order_id" not in j.attributes]
    assert len(poisoned) == 3 and all(j.failed for j in poisoned)  # maxReceiveCount receives
    assert {j.trace_id for j in poisoned} == {producer["poison"]}

    # A receive brings, and a batched delete or release settles, up to 10 messages of up to 10
    # traces in one call on the receiver's or the acknowledger's thread, outside any job: each
    # such call is the root span of a trace of its own, never a child in one job's trace.
    job_traces = {j.trace_id for j in jobs}
    for s in aws:
        assert s.parent_span_id == "" and s.trace_id not in job_traces, s


def test_an_xray_root_without_a_parent_is_continued_by_its_job_alone(
    sqs: Any,
    queues: dict[str, str],
    db_path: Path,
    ledger: Ledger,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> None:
    # three jobs at once (WORKER_CONCURRENCY=3) in the X-Ray traces their messages name without a
    # parent span (no Parent, as a load balancer's; Sampled=?), one whose valid traceparent has a
    # parent to continue, one without context: no job's trace may reach another's
    queue_url = queues["queue_url"]
    roots = [f"{random.getrandbits(128):032x}" for _ in range(4)]
    shapes = ["Root={}", "Root={};Sampled=?", "Root={};Parent=53995c3f42cd8ad8;Sampled=?"]
    entries = []
    for i, (root, shape) in enumerate(zip(roots, [*shapes, "Root={}"], strict=True)):
        entry = message_entry(make_event("u-1", f"root-{i}", 100 + i), i)
        xray = shape.format(f"1-{root[:8]}-{root[8:]}")
        entry["MessageSystemAttributes"] = {
            "AWSTraceHeader": {"DataType": "String", "StringValue": xray}
        }
        if i < len(shapes):
            del entry["MessageAttributes"]
        entries.append(entry)
    mixed = entries[-1]["MessageAttributes"]["traceparent"]["StringValue"].split("-")
    plain = message_entry(make_event("u-1", "plain", 200), len(entries), traced=False)
    entries.append(plain)
    for e in entries:  # one by one: moto's SendMessageBatch drops MessageSystemAttributes
        sqs.send_message(QueueUrl=queue_url, **{k: v for k, v in e.items() if k != "Id"})
    traces_file = tmp_path / "traces.jsonl"
    env = worker_env(
        aws_env, queue_url, db_path, TELEMETRY_TRACES_FILE=traces_file, WORKER_CONCURRENCY=3
    )
    with child(WORKER_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        wait_for(lambda: ledger.count() == len(entries), 20, "every order credited")
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    jobs = {
        j.attributes["order_id"]: j for j in traces.read(traces_file).spans if j.name == JOB_NAME
    }
    for i in range(len(shapes)):
        assert jobs[f"root-{i}"].trace_id == roots[i] and not jobs[f"root-{i}"].parent_span_id
    assert (jobs["root-3"].trace_id, jobs["root-3"].parent_span_id) == (mixed[1], mixed[2])
    assert jobs["plain"].trace_id not in roots and not jobs["plain"].parent_span_id
