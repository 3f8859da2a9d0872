"""The acknowledger's batching, against a recording fake client (unit level)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from worker._acker import Acker


class FakeSQS:
    """Records batch calls; fails the entries whose receipt starts with "bad"."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []
        self.gate = gate

    def _answer(self, action: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append((action, entries))
        failed = [
            {"Id": e["Id"], "Code": "ReceiptHandleIsInvalid", "SenderFault": True}
            for e in entries
            if e["ReceiptHandle"].startswith("bad")
        ]
        return {"Failed": failed, "Successful": []}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        return self._answer("delete", Entries)

    def change_message_visibility_batch(
        self,
        QueueUrl: str,
        Entries: list[dict[str, Any]],
    ) -> dict:
        assert all(e["VisibilityTimeout"] == 0 for e in Entries)
        return self._answer("release", Entries)


def _acker(client: FakeSQS, linger_s: float = 5.0) -> Acker:
    acker = Acker(client, "http://q", log=lambda: logging.getLogger("test"), linger_s=linger_s)
    acker.start()
    return acker


def test_deletes_go_out_in_batches_of_at_most_10() -> None:
    gate = threading.Event()  # hold the first call so everything else queues up behind it
    client = FakeSQS(gate)
    acker = _acker(client, linger_s=0.01)
    for i in range(25):
        acker.delete(f"m{i}", f"r{i}")
    gate.set()
    assert acker.close(5)
    sizes = [len(entries) for action, entries in client.calls if action == "delete"]
    assert sum(sizes) == 25 and max(sizes) == 10
    handles = [e["ReceiptHandle"] for _, entries in client.calls for e in entries]
    assert sorted(handles) == sorted(f"r{i}" for i in range(25))
    assert acker.deleted == 25 and acker.failed == 0


def test_releases_and_deletes_use_their_own_calls_and_failures_are_counted() -> None:
    client = FakeSQS()
    acker = _acker(client, linger_s=5.0)  # only close() or 10 items end the gathering
    acker.delete("m1", "r1")
    acker.release("m2", "r2")
    acker.delete("m3", "bad-3")
    assert acker.close(5)
    assert [(a, [e["ReceiptHandle"] for e in es]) for a, es in client.calls] == [
        ("delete", ["r1", "bad-3"]),
        ("release", ["r2"]),
    ]
    assert (acker.deleted, acker.released, acker.failed) == (1, 1, 1)


def test_flush_soon_sends_without_waiting_for_the_linger() -> None:
    client = FakeSQS()
    acker = _acker(client, linger_s=30.0)
    acker.delete("m1", "r1")
    acker.flush_soon()
    deadline = threading.Event()
    for _ in range(50):  # bounded: up to 5 s
        if client.calls:
            break
        deadline.wait(0.1)
    assert client.calls == [("delete", [{"Id": "0", "ReceiptHandle": "r1"}])]
    assert acker.close(5)
