"""Per-entry failures of SQS batch calls (HTTP 200 with ``Failed`` entries): one checked path.

Unit level over recording fakes (``BatchSender``, the heartbeat with a stub client, as in the
field report), then over HTTP against moto: a message deleted by another consumer while its job
runs makes the extension fail with ``ReceiptHandleIsInvalid``.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

import telemetry
from points.storage import open_storage
from telemetry.sinks import MemorySink
from tests.worker.conftest import Ledger, drained, running_worker, wait_for
from worker import Worker, WorkerConfig, make_event
from worker._batch import BatchSender, Target
from worker._sample import send_bodies

TARGETS = [Target(f"m{i}", f"rh{i}") for i in range(3)]


class ScriptedSQS:
    """Answers each batch call from a script: a list of {index: failed-entry} per call."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[list[dict[str, Any]]] = []

    def _answer(self, Entries: list[dict[str, Any]]) -> Any:
        self.calls.append(Entries)
        answer = self.answers.pop(0) if self.answers else {}
        if isinstance(answer, BaseException):
            raise answer
        if not isinstance(answer, dict):
            return answer  # an odd answer, as is
        failed = [{"Id": Entries[i]["Id"], **entry} for i, entry in answer.items()]
        return {"Successful": [], "Failed": failed}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        return self._answer(Entries)

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        return self._answer(Entries)


INVALID = {"Code": "ReceiptHandleIsInvalid", "Message": "expired", "SenderFault": True}
INTERNAL = {"Code": "InternalError", "Message": "try again", "SenderFault": False}


def _sender(client: ScriptedSQS, caplog: pytest.LogCaptureFixture) -> BatchSender:
    caplog.set_level(logging.DEBUG, logger="test-batch")
    return BatchSender(
        client, "http://q", log=lambda: logging.getLogger("test-batch"), retry_pause_s=0
    )


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("action", ["delete", "release", "extend"])
def test_permanent_failures_are_not_retried_and_are_logged_and_counted(
    action: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = ScriptedSQS({1: INVALID})
    sender = _sender(client, caplog)
    result = sender.send(action, TARGETS, attempts=3)
    assert [f is None for f in result] == [True, False, True]
    assert (
        result[1] is not None and result[1].permanent and result[1].code == "ReceiptHandleIsInvalid"
    )
    assert len(client.calls) == 1
    assert (sender.count(action, "ok"), sender.count(action, "permanent")) == (2, 1)
    [record] = _warnings(caplog)
    assert record.message_id == "m1" and record.permanent is True  # type: ignore[attr-defined]
    assert record.action == action and "ReceiptHandleIsInvalid" in record.getMessage()  # type: ignore[attr-defined]


def test_transient_failures_are_retried_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    # m0 fails once then succeeds; m2 fails on every one of the 3 attempts
    client = ScriptedSQS({0: INTERNAL, 2: INTERNAL}, {1: INTERNAL}, {0: INTERNAL})
    sender = _sender(client, caplog)
    result = sender.send("delete", TARGETS, attempts=3)
    assert [[e["ReceiptHandle"] for e in c] for c in client.calls] == [
        ["rh0", "rh1", "rh2"],
        ["rh0", "rh2"],
        ["rh2"],
    ]
    assert [f is None for f in result] == [True, True, False]
    assert (sender.count("delete", "ok"), sender.count("delete", "transient")) == (2, 1)
    assert sender.count("delete", "retried") == 3
    [record] = _warnings(caplog)
    assert record.message_id == "m2" and record.permanent is False  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("entry", "permanent"),
    [
        ({"Code": "ReceiptHandleIsInvalid"}, True),  # no SenderFault: by code
        ({"Code": "AWS.SimpleQueueService.MessageNotInflight"}, True),
        ({"Code": "Throttling"}, False),
        ({}, False),
        ({"Code": "ReceiptHandleIsInvalid", "SenderFault": "yes"}, True),  # not a bool: by code
        ({"Code": 42, "Message": ["odd"], "SenderFault": False}, False),
    ],
)
def test_entries_without_a_clear_sender_fault_are_classified_by_code(
    entry: dict[str, Any], permanent: bool, caplog: pytest.LogCaptureFixture
) -> None:
    sender = _sender(ScriptedSQS({0: entry}), caplog)
    [failure] = sender.send("extend", TARGETS[:1])
    assert failure is not None and failure.permanent is permanent


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "not a mapping",
        {"Failed": "nope"},
        {"Failed": [None, 3, {"Id": "99"}, {"Id": "x"}, {"Id": 0}, {"Id": "0" * 5000}]},
        # digits int() reads or refuses that are not the ASCII Ids the worker sent
        {"Failed": [{"Id": "\u00b2", "Code": "X"}, {"Id": "\u0660", "Code": "X"}]},
        {"Failed": [{"Id": "\uff10", "Code": "X"}, {"Id": " 0", "Code": "X"}, {"Id": "+0"}]},
    ],
)
def test_odd_answers_never_raise(answer: Any, caplog: pytest.LogCaptureFixture) -> None:
    class Odd(ScriptedSQS):
        def _answer(self, Entries: list[dict[str, Any]]) -> Any:
            self.calls.append(Entries)
            return answer

    sender = _sender(Odd(), caplog)
    assert sender.send("delete", TARGETS) == [None, None, None]


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (EndpointConnectionError(endpoint_url="http://q"), False),
        (
            ClientError(
                {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
                "DeleteMessageBatch",
            ),
            True,
        ),
        (
            ClientError(
                {"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                "DeleteMessageBatch",
            ),
            False,
        ),
    ],
)
def test_a_whole_call_that_raises_fails_every_entry_once(
    exc: Exception, permanent: bool, caplog: pytest.LogCaptureFixture
) -> None:
    client = ScriptedSQS(exc)
    sender = _sender(client, caplog)
    result = sender.send("delete", TARGETS, attempts=3)
    assert len(client.calls) == 1  # botocore retried the call already
    assert all(f is not None and f.permanent is permanent for f in result)
    assert sender.failed("delete") == 3 and len(_warnings(caplog)) == 3


def test_quiet_failures_are_expected_ones_and_not_counted(caplog: pytest.LogCaptureFixture) -> None:
    sender = _sender(ScriptedSQS({0: INVALID, 1: INVALID}), caplog)
    sender.send("extend", TARGETS, quiet=lambda i: i == 0)
    assert sender.count("extend", "stale") == 1 and sender.failed("extend") == 1
    assert [r.message_id for r in _warnings(caplog)] == ["m1"]  # type: ignore[attr-defined]


# -- the heartbeat and the acknowledger in a worker (the field report, case 12) --------------


class StubSQS:
    """One valid message; every ChangeMessageVisibilityBatch / DeleteMessageBatch entry fails
    with ``entry``."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.entry = entry
        self.sent = False
        self.calls = {"extend": 0, "delete": 0}
        self.lock = threading.Lock()

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict:
        policy = {
            "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:q-dlq",
            "maxReceiveCount": 3,
        }
        return {"Attributes": {"RedrivePolicy": json.dumps(policy)}}

    def get_queue_url(self, QueueName: str, QueueOwnerAWSAccountId: str | None = None) -> dict:
        return {"QueueUrl": "http://127.0.0.1:1/123456789012/q-dlq"}

    def receive_message(self, **kw: Any) -> dict:
        with self.lock:
            if not self.sent:
                self.sent = True
                body = make_event("user-1", "order-1", 5000)
                attrs = {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": str(int(time.time() * 1000)),
                }
                return {
                    "Messages": [
                        {
                            "MessageId": "m-1",
                            "ReceiptHandle": "rh-1",
                            "Body": body,
                            "Attributes": attrs,
                        }
                    ]
                }
        time.sleep(0.1)
        return {"Messages": []}

    def _fail_all(self, kind: str, Entries: list[dict[str, Any]]) -> dict:
        with self.lock:
            self.calls[kind] += 1
        return {"Successful": [], "Failed": [{"Id": e["Id"], **self.entry} for e in Entries]}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:
        return self._fail_all("extend", Entries)

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:
        return self._fail_all("delete", Entries)


def _run_stubbed(tmp_path: Path, stub: StubSQS) -> tuple[Worker, list[dict[str, Any]]]:
    logs = io.StringIO()
    telemetry.configure("points-worker", "test", sink=MemorySink(), log_stream=logs)
    storage = open_storage({"POINTS_DB_PATH": str(tmp_path / "p.db")})
    config = WorkerConfig(
        queue_url="http://127.0.0.1:1/123456789012/q",
        concurrency=1,
        batch_size=1,
        wait_time_s=0,
        visibility_timeout_s=2,
        queue_poll_s=0,
        stop_timeout_s=4,
        simulated_work_ms=2500,  # longer than the visibility timeout: the heartbeat must extend
    )
    worker = Worker(config, storage, client=stub)
    worker.start()
    try:
        wait_for(lambda: worker.stats.credited == 1, 15, "the job to finish")
        wait_for(lambda: worker._acker and worker._acker.failed >= 1, 5, "the delete to fail")
    finally:
        worker.stop()
        worker.wait()
        storage.close()
        telemetry.shutdown()
    return worker, [json.loads(line) for line in logs.getvalue().splitlines()]


def test_a_permanently_failed_extension_is_logged_counted_and_not_retried(tmp_path: Path) -> None:
    stub = StubSQS(INVALID)
    worker, lines = _run_stubbed(tmp_path, stub)
    assert worker.stats.credited == 1  # the job still credits once
    warned = [x for x in lines if x["level"] in ("WARNING", "ERROR") and x.get("code")]
    assert [(x["action"], x["permanent"]) for x in warned] == [("extend", True), ("delete", True)]
    assert all(x["message_id"] == "m-1" for x in warned)
    # the heartbeat gave up on it at once instead of failing again on every tick
    assert stub.calls["extend"] == 1 and worker.stats.extended == 0
    assert worker.batch_failures() == {"delete": 1, "release": 0, "extend": 1}
    stopped = [x for x in lines if x["message"] == "worker stopped"]
    assert stopped[0]["batch_entry_failures"] == {"delete": 1, "release": 0, "extend": 1}


def test_a_transiently_failed_extension_is_retried_on_the_next_heartbeat(tmp_path: Path) -> None:
    stub = StubSQS(INTERNAL)
    worker, lines = _run_stubbed(tmp_path, stub)
    extends = [x for x in lines if x.get("action") == "extend"]
    assert stub.calls["extend"] >= 2 and len(extends) == stub.calls["extend"]
    assert all(x["permanent"] is False for x in extends)
    assert worker.batch_failures()["extend"] == stub.calls["extend"]
    # the delete is retried (3 tries in all), then given up on and logged once
    assert stub.calls["delete"] == 3 and worker.batch_failures()["delete"] == 1


# -- over HTTP, against moto ------------------------------------------------------------------


def test_a_message_deleted_elsewhere_stops_being_extended(
    sqs: Any, queues: dict[str, str], db_path: Path, ledger: Ledger, aws_env: dict[str, str]
) -> None:
    send_bodies(sqs, queues["queue_url"], [make_event("user-x", "order-x", 900)])
    with running_worker(
        queues["queue_url"],
        db_path,
        aws_env["AWS_ENDPOINT_URL"],
        concurrency=1,
        visibility_timeout_s=2,
        simulated_work_ms=3_500,
    ) as worker:
        held = wait_for(lambda: list(worker._held.values()), 10, "the message to be held")[0]
        # another consumer (or an operator) deletes it while the job runs
        sqs.delete_message(QueueUrl=queues["queue_url"], ReceiptHandle=held.receipt)
        wait_for(lambda: worker.batches.failed("extend") == 1, 10, "the extension to fail")
        wait_for(lambda: worker.stats.credited == 1, 10, "the job to finish")
        wait_for(lambda: drained(sqs, queues["queue_url"]), 10, "the queue to drain")
    assert held.gave_up_extending
    assert worker.batches.count("extend", "permanent") == 1  # once, not on every tick
    assert ledger.count() == 1


# -- the heartbeat against SQS's 12-hour maximum and its own clock ---------------------------


class TwelveHourSQS:
    """Extends visibility as SQS does: refuses (``InvalidParameterValue``, per entry) an
    extension that would hide a message for more than 12 hours in all since its receive, and
    optionally answers ``delay_s`` late. Receive times are given per receipt handle (monotonic)."""

    def __init__(self, received: dict[str, float], delay_s: float = 0.0) -> None:
        self.received = received
        self.delay_s = delay_s
        self.asked: dict[str, int] = {}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:
        now = time.monotonic()  # SQS counts from when it gets the call
        failed, ok = [], []
        for e in Entries:
            self.asked[e["ReceiptHandle"]] = e["VisibilityTimeout"]
            total = now - self.received[e["ReceiptHandle"]] + e["VisibilityTimeout"]
            if total > 43_200:
                failed.append(
                    {"Id": e["Id"], "Code": "InvalidParameterValue", "SenderFault": True,
                     "Message": "Total VisibilityTimeout for the message is beyond the limit"}
                )  # fmt: skip
            else:
                ok.append({"Id": e["Id"]})
        time.sleep(self.delay_s)
        return {"Successful": ok, "Failed": failed}


def _heartbeat_worker(tmp_path: Path, client: Any, visibility_s: int) -> Worker:
    storage = open_storage({"POINTS_DB_PATH": str(tmp_path / "p.db")})
    config = WorkerConfig(
        queue_url="http://127.0.0.1:1/123456789012/q",
        visibility_timeout_s=visibility_s,
        job_timeout_s=43_200,
        queue_poll_s=0,
    )
    return Worker(config, storage, client=client)


def _held(worker: Worker, receipt: str, received_at: float) -> Any:
    """A message the worker holds since ``received_at`` (monotonic), due for an extension."""
    message = {"MessageId": f"m-{receipt}", "ReceiptHandle": receipt, "Body": "{}"}
    held = worker._hold(message, time.monotonic(), received_at)
    held.deadline = time.monotonic()  # its visibility is running out now
    return held


def test_extensions_stop_at_sqs_12_hour_maximum_instead_of_being_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = time.monotonic()
    # received just now; 11 h 55 min ago (5 min left); 12 h ago less a fraction of a second
    received = {"fresh": now, "near": now - 43_200 + 300, "spent": now - 43_200 + 0.5}
    stub = TwelveHourSQS(received)
    worker = _heartbeat_worker(tmp_path, stub, visibility_s=600)
    held = {r: _held(worker, r, at) for r, at in received.items()}
    with caplog.at_level(logging.WARNING, logger="worker"):
        worker._heartbeat()
    assert worker.batch_failures()["extend"] == 0  # nothing SQS refuses is asked for
    assert stub.asked["fresh"] == 600
    assert 298 <= stub.asked["near"] <= 300  # what is left of the 12 hours, not 600
    assert "spent" not in stub.asked and held["spent"].gave_up_extending
    assert not held["fresh"].gave_up_extending and not held["near"].gave_up_extending
    warned = [r for r in caplog.records if "12-hour" in r.getMessage()]
    assert [r.message_id for r in warned] == ["m-spent"]  # type: ignore[attr-defined]
    # the next extension of the nearly spent one gets the rest, then it is given up on, once
    held["near"].deadline = time.monotonic()
    held["near"].visible_limit = time.monotonic() + 0.5
    worker._heartbeat()
    assert held["near"].gave_up_extending and worker.batch_failures()["extend"] == 0
    assert worker.stats.extended == 2


def test_an_extension_answered_late_counts_from_before_the_call(tmp_path: Path) -> None:
    stub = TwelveHourSQS({"slow": time.monotonic()}, delay_s=1.0)
    worker = _heartbeat_worker(tmp_path, stub, visibility_s=30)
    held = _held(worker, "slow", time.monotonic())
    before = time.monotonic()
    worker._heartbeat()
    assert worker.stats.extended == 1
    # SQS hid it for 30 s from when it got the call (before the 1 s late answer), so the worker
    # must not believe it hidden until 30 s after the answer
    assert held.deadline < before + 30 + 0.5


# -- receive errors: throttling, outages, credentials ------------------------------------------


class FailingReceives(StubSQS):
    """Every ReceiveMessage fails with ``error`` (after start-up, which succeeds)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(INVALID)
        self.error = error
        self.receives = 0

    def receive_message(self, **kw: Any) -> dict:
        with self.lock:
            self.receives += 1
        raise self.error


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": f"{code} here"},
         "ResponseMetadata": {"HTTPStatusCode": status}},
        "ReceiveMessage",
    )  # fmt: skip


@pytest.mark.parametrize(
    "error",
    [
        _client_error("ThrottlingException", 400),
        _client_error("ServiceUnavailable", 503),
        _client_error("AccessDenied", 403),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        NoCredentialsError(),
    ],
    ids=["throttled", "unavailable", "denied", "unreachable", "no-credentials"],
)
def test_receive_errors_back_off_are_logged_and_the_worker_keeps_going(
    tmp_path: Path, error: Exception
) -> None:
    logs = io.StringIO()
    telemetry.configure("points-worker", "test", sink=MemorySink(), log_stream=logs)
    storage = open_storage({"POINTS_DB_PATH": str(tmp_path / "p.db")})
    stub = FailingReceives(error)
    config = WorkerConfig(
        queue_url="http://127.0.0.1:1/123456789012/q", wait_time_s=0, queue_poll_s=0,
        stop_timeout_s=4,
    )  # fmt: skip
    worker = Worker(config, storage, client=stub)
    worker.start()
    try:
        wait_for(lambda: stub.receives >= 3, 10, "three failed receives")
        seen = stub.receives
        time.sleep(1.0)
        # backing off (0.4 s, 0.8 s, 1.6 s, ... at most 10 s): a handful of calls, not a hot loop
        assert stub.receives - seen <= 2
        assert worker._receiver.is_alive()  # it keeps trying; it does not end quietly
    finally:
        worker.stop()
        assert worker.wait()  # and a stop during the back-off is clean
        storage.close()
        telemetry.shutdown()
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    failed = [x for x in lines if x["message"].startswith("receive failed")]
    assert len(failed) == stub.receives
    assert all(x["level"] == "ERROR" and "retrying in" in x["message"] for x in failed)
    assert all(x["error"] and "\n" not in x["error"] for x in failed)  # why, in one line
