"""The process-wide telemetry state behind the public functions."""

from __future__ import annotations

import atexit
import dataclasses
import os
import threading
from typing import TextIO

from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from telemetry import _config, _context, _errors, _logging, _output, _tracing, catalog
from telemetry import cloudwatch_rules as rules
from telemetry import environment_variables as ev
from telemetry._metrics import Aggregator
from telemetry.sinks import AgentSink, Sink, StdoutSink

_DEFS = {m.name: m for m in catalog.METRICS}


def _propagator() -> tuple[TextMapPropagator, list[str]]:
    """``OTEL_PROPAGATORS``' propagator and its problems."""
    return _tracing.build_propagator(
        os.environ.get(ev.OTEL_PROPAGATORS) or _tracing.DEFAULT_PROPAGATORS
    )


class State:
    def __init__(self) -> None:
        self.settings = _config.load()
        self.aggregator: Aggregator | None = None
        self.provider: TracerProvider | None = None
        self.tracer: trace.Tracer | None = None
        self.server_spans: _tracing.ServerSpans | None = None
        # its problems are configure()'s to report, with the other settings': once
        self.propagator: TextMapPropagator = _propagator()[0]
        self.provider_pid = 0
        self.configured = False


state = State()
_lock = threading.RLock()
_atexit_registered = False
_last_call: dict[str, object] = {}


def _default_sink(settings: _config.Settings) -> Sink:
    if settings.uses_agent:
        try:
            return AgentSink(settings.agent_endpoint or _config.DEFAULT_AGENT_ENDPOINT)
        except ValueError as exc:
            _errors.record("config", str(exc))
    return StdoutSink()


def aggregator() -> Aggregator:
    """The process's aggregator; created from the environment if ``configure()`` was not called."""
    agg = state.aggregator
    if agg is None:
        with _lock:
            if state.aggregator is None:
                state.aggregator = Aggregator(state.settings, _default_sink(state.settings))
                _register_atexit()
            agg = state.aggregator
    return agg


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(shutdown)
        _atexit_registered = True


def _load(**arguments: object) -> _config.Settings:
    """:func:`telemetry._config.load`; an argument it cannot read at all (an object whose
    ``str``, ``repr`` or ``float`` raises) is left out, named in a problem line, and every other
    setting kept."""
    try:
        return _config.load(**arguments)  # type: ignore[arg-type]
    except Exception:
        pass
    kept: dict[str, object] = {}
    problems: list[str] = []
    for name, value in arguments.items():
        if value is None:
            continue
        try:
            _config.load(**{name: value})  # type: ignore[arg-type]
        except Exception as exc:
            problems.append(
                f"configure({name}=...): a {type(value).__name__} that cannot be read "
                f"({type(exc).__name__}); using the default"
            )
        else:
            kept[name] = value
    settings = _config.load(**kept)  # type: ignore[arg-type]
    return dataclasses.replace(settings, problems=(*problems, *settings.problems))


def configure(
    service: str | None = None,
    version: str | None = None,
    *,
    sink: Sink | None = None,
    span_exporter: SpanExporter | None = None,
    log_stream: TextIO | None = None,
    **options: object,
) -> _config.Settings:
    """See :func:`telemetry.configure` (``options`` are its typed keyword arguments)."""
    global _last_call
    with _lock:
        call = {"service": service, "version": version, "sink": sink}
        call.update(span_exporter=span_exporter, log_stream=log_stream, **options)
        if all(v is None for v in call.values()) and _last_call:
            # configure() with no arguments (gunicorn's post_fork) repeats the previous call
            call = dict(_last_call)
        _last_call = dict(call)
        service, version = call.pop("service"), call.pop("version")  # type: ignore[assignment]
        sink, span_exporter = call.pop("sink"), call.pop("span_exporter")  # type: ignore[assignment]
        log_stream = call.pop("log_stream")  # type: ignore[assignment]
        settings = _load(service=service, version=version, **call)
        try:
            propagator, propagator_problems = _propagator()
        except Exception as exc:
            _errors.record("tracing", repr(exc))
            propagator, propagator_problems = state.propagator, []
        for problem in (*settings.problems, *propagator_problems):
            # one line per bad setting, naming its variable, whatever the once-a-minute limit
            _errors.record("config", problem)
            _errors.report(f"telemetry: invalid setting: {problem}")
        _output.set_limit(settings.output_buffer_bytes)
        old = state.aggregator
        if old is not None:
            old.close()  # writes what it holds under the old settings (nothing right after fork)
        state.settings = settings
        state.aggregator = Aggregator(settings, sink or _default_sink(settings))
        # tracing: a fresh provider (and BatchSpanProcessor thread) per process
        if state.provider is not None and state.provider_pid == os.getpid():
            try:
                state.provider.shutdown()
            except Exception as exc:
                _errors.record("tracing", repr(exc))
        try:
            state.propagator = propagator
            state.provider = _tracing.build_provider(
                settings.service,
                settings.version,
                exporter=span_exporter,
                traces_file=settings.traces_file,
            )
        except Exception as exc:
            _errors.record("tracing", repr(exc))
            state.provider = None
        state.provider_pid = os.getpid()
        state.tracer = state.provider.get_tracer("telemetry") if state.provider else None
        state.server_spans = _tracing.ServerSpans(state.provider) if state.provider else None
        try:
            _tracing.install_global(state.provider, state.propagator)
        except Exception as exc:
            _errors.record("tracing", repr(exc))
        if settings.json_logs:
            _logging.install(settings.service, settings.version, settings.log_level, log_stream)
        state.configured = True
        _register_atexit()
        return settings


def shutdown() -> None:
    """See :func:`telemetry.shutdown`."""
    try:
        with _lock:
            if state.aggregator is not None:
                state.aggregator.close()
            # a provider made by this process, or inherited through fork by a worker that did
            # not configure() again (preload_app without post_fork): the SDK gave the child's
            # batch processors their own thread and an empty queue, so what they hold now are
            # this process's spans, and only its exit exports the last of them
            if state.provider is not None and state.provider_pid:
                state.provider.shutdown()  # exports what the batch processor holds
                state.provider_pid = 0  # shut down: not again
    except Exception as exc:
        _errors.record("shutdown", repr(exc))
    timeout = state.settings.shutdown_timeout_s
    _output.flush(timeout, abandon=True)  # bounded: a stdout nobody reads does not hold the exit
    _errors.flush_report()
    _output.flush(min(timeout, 0.5))


def put_metric(name: str, value: float) -> None:
    """See :func:`telemetry.put_metric`."""
    try:
        m = _DEFS.get(name) if isinstance(name, str) else None
        if m is None or m.role == "SELF":
            _errors.record("invalid_name", f"{name!r} is not a metric of telemetry.catalog")
            return
        if isinstance(value, float) and 0.0 < value < rules.MIN_MAGNITUDE:
            value = 0.0  # the nearest value CloudWatch accepts (absolute error < 2^-360)
        why = rules.value_problem(value)
        if why is None and value < 0:
            why = "must be >= 0"
        if why is not None:
            _errors.record("invalid_value", f"{name}: {_config.shown(value)}: {why}")
            return
        scope = _context.current_scope()
        aggregator().add(m, float(value), _context.route_of(scope) if scope is not None else None)
    except Exception as exc:
        _errors.record("internal", repr(exc))
