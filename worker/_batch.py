"""One code path for the worker's SQS batch calls and their per-entry failures.

``DeleteMessageBatch`` and ``ChangeMessageVisibilityBatch`` answer HTTP 200 even when some entries
failed: "Because the batch request can result in a combination of successful and unsuccessful
actions, you should check for batch errors even when the call returns an HTTP status code of 200"
(SQS API reference, DeleteMessageBatch / ChangeMessageVisibilityBatch). Every failed entry is a
``BatchResultErrorEntry`` with ``Id``, ``Code``, ``Message`` and ``SenderFault``.

:class:`BatchSender` sends one action for up to 10 messages, checks every entry, tells
**permanent** failures (``SenderFault`` true: the request itself is wrong, e.g.
``ReceiptHandleIsInvalid`` when the receipt handle expired and the message may already be visible
to another consumer) from **transient** ones (``SenderFault`` false: SQS's side, worth retrying),
and logs and counts each one. The acknowledger (deletes, releases) and the heartbeat (visibility
extensions) both use it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

MAX_BATCH = 10  # SQS's limit for both batch actions

#: ``delete``: DeleteMessageBatch; ``release``: visibility 0 (visible again at once);
#: ``extend``: the heartbeat's visibility extension.
Action = Literal["delete", "release", "extend"]

#: Codes that retrying the same entry cannot fix, for an answer without ``SenderFault``
#: (a well-formed SQS answer always has it). Matched on the part after the last "." so the query
#: protocol's ``AWS.SimpleQueueService.MessageNotInflight`` form matches too.
PERMANENT_CODES = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "InvalidParameterValue",
        "MessageNotInflight",
        "InvalidIdFormat",
        "BatchEntryIdsNotDistinct",
        "AccessDenied",
    }
)

_DESCRIPTION: Mapping[str, str] = {
    "delete": "delete",
    "release": "release (visibility 0)",
    "extend": "visibility extension",
}


@dataclass(frozen=True, slots=True)
class Target:
    """One message of a batch: its id (for logs) and receipt handle (for SQS); for ``extend``,
    optionally its own visibility timeout in seconds (else the call's ``visibility_s``)."""

    message_id: str
    receipt: str
    visibility_s: int | None = None


@dataclass(frozen=True, slots=True)
class EntryFailure:
    """One failed entry of a batch answer (or of a whole call that raised)."""

    code: str
    message: str
    sender_fault: bool | None

    @property
    def permanent(self) -> bool:
        """True if retrying the same entry cannot succeed (``SenderFault``, else by code)."""
        if self.sender_fault is not None:
            return self.sender_fault
        return self.code.rsplit(".", 1)[-1] in PERMANENT_CODES


def entry_failures(response: Any, count: int) -> dict[int, EntryFailure]:
    """The failed entries of a batch answer by index (``Id`` is the entry's index as text).

    Never raises: an answer that is not a mapping, or a ``Failed`` list with odd entries, is read
    as far as it makes sense; an entry whose ``Id`` names no sent entry is ignored (reported by
    the caller as unexpected only through the counts of the rest).
    """
    failed = response.get("Failed") if isinstance(response, Mapping) else None
    out: dict[int, EntryFailure] = {}
    if not isinstance(failed, list):
        return out
    for entry in failed:
        if not isinstance(entry, Mapping):
            continue
        raw_id = entry.get("Id")
        # ASCII digits only: int() reads "\u0660" as 0 and refuses "\u00b2", both isdigit()
        if not (isinstance(raw_id, str) and raw_id.isascii() and raw_id.isdigit()):
            continue
        if len(raw_id) > 3:
            continue
        index = int(raw_id)
        if index >= count:
            continue
        sender = entry.get("SenderFault")
        out[index] = EntryFailure(
            code=str(entry.get("Code") or "Unknown")[:100],
            message=str(entry.get("Message") or "")[:300],
            sender_fault=sender if isinstance(sender, bool) else None,
        )
    return out


class BatchSender:
    """Send one batch action, check every entry, retry transient failures, log and count.

    Counters (``counts``, read with :meth:`count`) are keyed ``(action, kind)`` with kind one of
    ``ok``, ``permanent``, ``transient`` (failed after the last attempt), ``retried``.
    """

    def __init__(
        self,
        client: Any,
        queue_url: str,
        *,
        log: Callable[[], logging.Logger],
        retry_pause_s: float = 0.1,
    ) -> None:
        self._client = client
        self._url = queue_url
        self._log = log
        self._retry_pause_s = retry_pause_s
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.calls = 0

    def count(self, action: Action, kind: str) -> int:
        with self._lock:
            return self.counts[(action, kind)]

    def failed(self, *actions: Action) -> int:
        """Entries that finally failed (permanently, or transiently after the last attempt)."""
        with self._lock:
            return sum(self.counts[(a, k)] for a in actions for k in ("permanent", "transient"))

    def send(
        self,
        action: Action,
        targets: Sequence[Target],
        *,
        visibility_s: int = 0,
        attempts: int = 1,
        quiet: Callable[[int], bool] | None = None,
    ) -> list[EntryFailure | None]:
        """Apply ``action`` to up to 10 ``targets``; transient failures are tried up to
        ``attempts`` times in all. ``quiet(index)`` True: a failure is expected (e.g. the message
        was acknowledged meanwhile) and is logged at DEBUG, not counted as a failure.

        Returns, per target in order, None if it succeeded or its (last) failure. Never raises
        (but ValueError for more than 10 targets): a call that raises (botocore retried it
        already, so it is not tried again here) fails every entry; a ``ClientError`` with a 4xx
        status permanently, anything else transiently.
        """
        if len(targets) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} entries per batch, got {len(targets)}")
        result: list[EntryFailure | None] = [None] * len(targets)
        pending = list(range(len(targets)))
        for attempt in range(1, max(1, attempts) + 1):
            failures, raised = self._call(action, [targets[i] for i in pending], visibility_s)
            retry: list[int] = []
            for j, index in enumerate(pending):
                failure = failures.get(j)
                result[index] = failure
                if (
                    failure is not None
                    and not failure.permanent
                    and not raised
                    and attempt < attempts
                ):
                    retry.append(index)
            if retry:
                self._bump(action, "retried", len(retry))
            pending = retry
            if not pending:
                break
            time.sleep(self._retry_pause_s * attempt)
        for index, (target, failure) in enumerate(zip(targets, result, strict=True)):
            if failure is None:
                self._bump(action, "ok", 1)
            elif quiet is not None and _safe_quiet(quiet, index):
                self._bump(action, "stale", 1)
                self._log().debug(
                    "sqs %s failed for message %s, acknowledged meanwhile: %s",
                    _DESCRIPTION[action],
                    target.message_id,
                    failure.code,
                )
            else:
                kind = "permanent" if failure.permanent else "transient"
                self._bump(action, kind, 1)
                self._report(action, target, failure)
        return result

    def _call(
        self, action: Action, targets: list[Target], visibility_s: int
    ) -> tuple[dict[int, EntryFailure], bool]:
        """Failed entries by index, and whether the whole call raised."""
        with self._lock:
            self.calls += 1
        try:
            if action == "delete":
                resp = self._client.delete_message_batch(
                    QueueUrl=self._url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": t.receipt} for i, t in enumerate(targets)
                    ],
                )
            else:
                resp = self._client.change_message_visibility_batch(
                    QueueUrl=self._url,
                    Entries=[
                        {
                            "Id": str(i),
                            "ReceiptHandle": t.receipt,
                            "VisibilityTimeout": visibility_s
                            if t.visibility_s is None or action == "release"
                            else t.visibility_s,
                        }
                        for i, t in enumerate(targets)
                    ],
                )
        except Exception as exc:
            # The whole call failed, every entry with it; botocore has retried it already.
            return dict.fromkeys(range(len(targets)), _call_failure(exc)), True
        return entry_failures(resp, len(targets)), False

    def _report(self, action: Action, target: Target, failure: EntryFailure) -> None:
        consequence = {
            ("delete", True): "the message will be delivered again; its redelivery is a no-op",
            ("delete", False): "gave up retrying; the message will be delivered again",
            ("release", True): "it becomes visible when its visibility timeout runs out",
            ("release", False): "it becomes visible when its visibility timeout runs out",
            ("extend", True): "no longer extending it; it may already be visible to another "
            "consumer (a second delivery is a no-op)",
            ("extend", False): "retrying on the next heartbeat",
        }[(action, failure.permanent)]
        with contextlib.suppress(Exception):  # logging must not break acknowledgements
            self._log().warning(
                "sqs %s failed for message %s: %s %s (%s; %s)",
                _DESCRIPTION[action],
                target.message_id,
                failure.code,
                failure.message,
                "permanent" if failure.permanent else "transient",
                consequence,
                extra={
                    "action": action,
                    "message_id": target.message_id,
                    "code": failure.code,
                    "sender_fault": failure.sender_fault,
                    "permanent": failure.permanent,
                },
            )

    def _bump(self, action: Action, kind: str, n: int) -> None:
        with self._lock:
            self.counts[(action, kind)] += n


def _call_failure(exc: Exception) -> EntryFailure:
    response = getattr(exc, "response", None)  # botocore's ClientError
    if isinstance(response, Mapping):
        error = response.get("Error") or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return EntryFailure(
            code=str(error.get("Code") or type(exc).__name__)[:100],
            message=str(error.get("Message") or "")[:300],
            sender_fault=isinstance(status, int) and 400 <= status < 500,
        )
    return EntryFailure(type(exc).__name__, _text(exc), sender_fault=False)


def _safe_quiet(quiet: Callable[[int], bool], index: int) -> bool:
    try:
        return bool(quiet(index))
    except Exception:
        return False


def _text(exc: BaseException) -> str:
    """``str(exc)`` in one line of at most 300 characters, even if ``__str__`` raises."""
    try:
        text = str(exc)
    except Exception:
        text = f"<{type(exc).__name__}>"
    return " ".join(text.split())[:300]
