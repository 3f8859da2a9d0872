"""Where EMF lines go: stdout (ECS ``awslogs`` ingests EMF from it) or the CloudWatch agent.

A sink is anything with ``write(lines)`` and ``close()``; ``write`` may raise, the aggregator
counts the failure (``TelemetryErrors``) and drops the lines - it never blocks the application.
"""

from __future__ import annotations

import socket
from typing import Protocol, TextIO

from telemetry import _output
from telemetry._config import agent_address


class Sink(Protocol):
    """Receives complete EMF lines (JSON without the trailing newline)."""

    def write(self, lines: list[str]) -> None: ...

    def close(self) -> None: ...


class StdoutSink:
    """EMF lines on ``sys.stdout`` (looked up at each write) or ``stream``, through the
    process's non-blocking output buffer (shared with the JSON log lines, so lines never
    interleave): a stdout nobody reads drops lines (counted), it never blocks."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._writer = _output.writer_for(stream)

    def write(self, lines: list[str]) -> None:
        self._writer.write_many(lines)

    def close(self) -> None:
        pass


class AgentSink:
    """The CloudWatch agent's EMF listener (``tcp://`` or ``udp://host:port``, default 25888).

    The socket has a timeout so an unreachable agent costs the flush thread at most
    ``timeout_s`` per flush, never the request path. Raises ``ValueError`` (one sentence naming
    ``AWS_EMF_AGENT_ENDPOINT``) for anything but ``tcp://host:port`` or ``udp://host:port``.
    """

    def __init__(self, endpoint: str, timeout_s: float = 1.0) -> None:
        scheme, host, port = agent_address(endpoint)  # ValueError naming the variable
        self.scheme, self.address, self.timeout_s = scheme, (host, port), timeout_s
        self._sock: socket.socket | None = None

    def write(self, lines: list[str]) -> None:
        payloads = [(line + "\n").encode() for line in lines]
        if self.scheme == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for p in payloads:
                    s.sendto(p, self.address)
            return
        data = b"".join(payloads)
        for attempt in (1, 2):  # one reconnect: the agent may have restarted
            try:
                if self._sock is None:
                    self._sock = socket.create_connection(self.address, timeout=self.timeout_s)
                self._sock.sendall(data)
                return
            except OSError:
                self.close()
                if attempt == 2:
                    raise

    def after_fork(self) -> None:
        self._sock = None  # the parent's connection is the parent's

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


class MemorySink:
    """Keeps the lines in a list (tests, benchmarks)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.lines.extend(lines)

    def close(self) -> None:
        pass
