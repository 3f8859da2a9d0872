"""An in-memory telemetry set-up (EMF lines, JSON log lines, exported spans) per test."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import telemetry
from telemetry import _errors, _logging, _metrics, _runtime
from telemetry.sinks import MemorySink

ENV_VARS = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
    "OTEL_SDK_DISABLED",
    "APP_VERSION",
    "AWS_EMF_NAMESPACE",
    "AWS_EMF_ENVIRONMENT",
    "AWS_EMF_AGENT_ENDPOINT",
    "AWS_EMF_LOG_GROUP_NAME",
    "TELEMETRY_FLUSH_INTERVAL_S",
    "TELEMETRY_STORAGE_RESOLUTION",
    "TELEMETRY_HISTOGRAM",
    "TELEMETRY_ACCESS_LOG_SAMPLE",
    "TELEMETRY_MAX_ROUTES",
    "TELEMETRY_EXCLUDE_PATHS",
    "TELEMETRY_WORKER_SLOTS",
    "TELEMETRY_JSON_LOGS",
    "TELEMETRY_LOG_LEVEL",
    "TELEMETRY_TRACES_FILE",
)


class Tel:
    """Configures telemetry into memory and reads back what it wrote."""

    def __init__(self) -> None:
        self.sink = MemorySink()
        self.out = io.StringIO()
        self.exporter = InMemorySpanExporter()

    def configure(self, service: str = "test-svc", version: str = "v9", **options: Any) -> None:
        self.exporter = InMemorySpanExporter()  # configure() shuts the previous one down
        telemetry.configure(
            service,
            version,
            sink=self.sink,
            log_stream=self.out,
            span_exporter=self.exporter,
            **options,
        )

    def emf(self) -> list[dict]:
        """Every EMF line written so far, after writing all pending windows."""
        _runtime.aggregator().flush(final=True)
        return [json.loads(line) for line in self.sink.lines]

    def logs(self) -> list[dict]:
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    def spans(self) -> list:
        assert _runtime.state.provider is not None
        _runtime.state.provider.force_flush()
        return list(self.exporter.get_finished_spans())


def total(lines: list[dict], metric: str, **dims: str) -> float:
    """Sum of a counter over the lines that carry ``metric`` and the given dimension values."""
    out = 0.0
    for line in lines:
        if metric in line and all(line.get(k) == v for k, v in dims.items()):
            out += line[metric]
    return out


def samples(lines: list[dict], metric: str, **dims: str) -> list[float]:
    """The samples of a distribution, expanded from Values/Counts (or plain arrays)."""
    out: list[float] = []
    for line in lines:
        if metric in line and all(line.get(k) == v for k, v in dims.items()):
            v = line[metric]
            if isinstance(v, dict):
                for value, count in zip(v["Values"], v["Counts"], strict=True):
                    out.extend([value] * count)
            elif isinstance(v, list):
                out.extend(v)
            else:
                out.append(v)
    return out


@pytest.fixture
def tel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Tel]:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    root_level = logging.root.level
    _errors.take_pending()  # failures provoked by earlier tests are theirs
    t = Tel()
    t.configure()
    yield t
    telemetry.shutdown()
    for h in list(logging.root.handlers):
        if isinstance(h, _logging.JsonHandler):
            logging.root.removeHandler(h)
    logging.root.setLevel(root_level)
    _runtime.state = _runtime.State()
    _runtime._last_call = {}


@pytest.fixture(autouse=True)
def _close_stray_aggregators() -> Iterator[None]:
    """Aggregators a test builds itself run a flush thread; stop them with the test (their
    flushes would otherwise take the process-wide TelemetryErrors count from later tests)."""
    yield
    for agg in list(_metrics._instances):
        if agg is not _runtime.state.aggregator:
            agg.close()
