"""configure() from the environment alone: the OpenTelemetry and EMF conventions, and the order
arguments > OTEL_SERVICE_NAME/APP_VERSION > OTEL_RESOURCE_ATTRIBUTES > defaults."""

from __future__ import annotations

import os

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import telemetry

from .conftest import Tel, total
from .test_flask import XRAY_TRACE, access_lines, make_app

W3C_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def configure_from_env(tel: Tel, **arguments: object) -> None:
    tel.exporter = InMemorySpanExporter()
    telemetry.configure(sink=tel.sink, log_stream=tel.out, span_exporter=tel.exporter, **arguments)


def test_service_version_namespace_and_resolution_from_the_environment(
    tel: Tel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=res-svc,service.version=v%2C7")
    monkeypatch.setenv("AWS_EMF_NAMESPACE", "Team/Points")
    monkeypatch.setenv("TELEMETRY_STORAGE_RESOLUTION", "1")
    configure_from_env(tel)
    make_app().test_client().get("/v1/users/u1/points")
    lines = tel.emf()
    assert total(lines, "Requests") == 1
    for line in lines:
        assert (line["Service"], line["Version"]) == ("res-svc", "v,7")  # percent-decoded
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "Team/Points"
        assert all(m["StorageResolution"] == 1 for m in directive["Metrics"])
    (access,) = access_lines(tel)
    assert (access["service"], access["version"]) == ("res-svc", "v,7")
    (span,) = tel.spans()
    assert span.resource.attributes["service.name"] == "res-svc"
    assert span.resource.attributes["service.version"] == "v,7"


def test_precedence_of_arguments_and_variables(tel: Tel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=res-svc,service.version=res-v")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "env-svc")
    monkeypatch.setenv("APP_VERSION", "env-v")
    configure_from_env(tel)
    telemetry.put_metric("RateLimitRejections", 1)
    assert {(x["Service"], x["Version"]) for x in tel.emf()} == {("env-svc", "env-v")}
    configure_from_env(tel, service="arg-svc", version="arg-v")
    telemetry.put_metric("RateLimitRejections", 1)
    assert {(x["Service"], x["Version"]) for x in tel.emf()[-1:]} == {("arg-svc", "arg-v")}


def test_default_service_only_when_nothing_names_one(
    tel: Tel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    configure_from_env(tel, default_service="fallback-svc")
    telemetry.put_metric("RateLimitRejections", 1)
    assert {x["Service"] for x in tel.emf()} == {"fallback-svc"}
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=res-svc")
    configure_from_env(tel, default_service="fallback-svc")
    telemetry.put_metric("RateLimitRejections", 1)
    assert {x["Service"] for x in tel.emf()[-1:]} == {"res-svc"}


@pytest.mark.parametrize(
    ("propagators", "continued"),
    [("xray", {"xray"}), ("tracecontext", {"w3c"}), ("none", set()), ("", {"xray", "w3c"})],
)
def test_otel_propagators_choose_what_is_continued(
    tel: Tel, monkeypatch: pytest.MonkeyPatch, propagators: str, continued: set[str]
) -> None:
    if propagators:
        monkeypatch.setenv("OTEL_PROPAGATORS", propagators)
    configure_from_env(tel, service="svc")
    client = make_app().test_client()
    xray = f"Root={XRAY_TRACE};Parent=53995c3f42cd8ad8;Sampled=1"
    client.get("/v1/users/u1/points", headers={"X-Amzn-Trace-Id": xray})
    client.get("/v1/users/u1/points", headers={"traceparent": W3C_PARENT})
    by_header = dict(zip(("xray", "w3c"), tel.spans(), strict=True))
    got = set()
    if by_header["xray"].context.trace_id == int(XRAY_TRACE[2:].replace("-", ""), 16):
        got.add("xray")
    if by_header["w3c"].context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C:
        got.add("w3c")
    assert got == continued
    for name, span in by_header.items():
        assert (span.parent is not None) == (name in continued)


def test_sdk_disabled_means_no_spans_but_metrics_and_logs(
    tel: Tel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    configure_from_env(tel, service="svc")
    client = make_app().test_client()
    assert client.get("/v1/users/u1/points").status_code == 200
    assert total(tel.emf(), "Requests") == 1
    (access,) = access_lines(tel)
    assert "trace_id" not in access and access["request_id"]
    assert tel.exporter.get_finished_spans() == ()


def test_variable_names_are_defined_once() -> None:
    """Every variable name is a constant of telemetry.environment_variables, equal to its own
    name, and no other telemetry module spells one out."""
    import inspect
    import re
    from pathlib import Path

    from telemetry import _config, environment_variables

    for name in environment_variables.__all__:
        assert getattr(environment_variables, name) == name
    package = Path(environment_variables.__file__).parent
    literal = re.compile(r"""["'](?:OTEL_|AWS_EMF_|TELEMETRY_|APP_VERSION)""")
    for path in package.glob("*.py"):
        if path.name != "environment_variables.py":
            assert not literal.search(path.read_text()), path.name
    # configure() takes typed keyword arguments, each one a setting of _config.load()
    params = inspect.signature(telemetry.configure).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    settings_args = set(inspect.signature(_config.load).parameters) - {"env"}
    assert settings_args <= set(params)
    assert set(params) - settings_args == {"sink", "span_exporter", "log_stream"}
    doc = telemetry.configure.__doc__ or ""
    assert "Environment variables:" in doc
    for name in environment_variables.__all__:
        assert name in doc or name.startswith("OTEL_EXPORTER_OTLP"), name


def test_explicit_arguments_win_over_the_environment(
    tel: Tel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEMETRY_OUTPUT_BUFFER_BYTES", "100000")
    monkeypatch.setenv("TELEMETRY_SHUTDOWN_TIMEOUT_S", "7")
    monkeypatch.setenv("TELEMETRY_MAX_VALUES", "500")
    got = telemetry.configure("svc", "v1", sink=tel.sink, shutdown_timeout_s=1.5, max_values=200)
    assert got is not None
    assert (got.output_buffer_bytes, got.shutdown_timeout_s, got.max_values) == (100000, 1.5, 200)


def test_an_unknown_propagator_does_not_break_import_telemetry() -> None:
    """``opentelemetry.propagate`` raises ValueError when imported with an unknown name in
    ``OTEL_PROPAGATORS``; ``import telemetry`` must not: the name is counted once (``config``)
    and reported in one line naming the variable, the known propagators are installed and the
    variable is left as it was."""
    import os
    import subprocess
    import sys

    code = (
        "import os, telemetry\n"
        "telemetry.configure(service='svc', version='v1')\n"
        "from opentelemetry.propagate import get_global_textmap\n"
        "print(os.environ['OTEL_PROPAGATORS'], sorted(get_global_textmap().fields),"
        " telemetry.counts().get('config'))\n"
    )
    env = {**os.environ, "OTEL_PROPAGATORS": "nope,xray"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[0]
    env_value, fields, config = last.rsplit(" ", 2)
    assert (env_value, fields) == ("nope,xray", "['X-Amzn-Trace-Id']"), proc.stdout
    assert int(config) == 1  # once: not again for the propagator built at import
    (line,) = [x for x in proc.stderr.splitlines() if "invalid setting" in x]
    assert "OTEL_PROPAGATORS='nope,xray': 'nope' is not installed; skipped" in line


def test_a_malformed_span_limit_does_not_break_import_telemetry() -> None:
    """``opentelemetry.sdk.trace`` raises ValueError when imported with a malformed
    ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``; ``import telemetry`` (the service, the worker) must
    not: the value is reported once in one line naming the variable, spans keep the
    specification's default limits and the variable is left as it was."""
    import os
    import subprocess
    import sys

    code = (
        "import os, telemetry\n"
        "from telemetry import _runtime\n"
        "telemetry.configure(service='svc', version='v1')\n"
        "limits = _runtime.state.provider._span_limits\n"
        "print(os.environ['OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT'], limits.max_span_attributes,"
        " telemetry.counts().get('config'))\n"
    )
    env = {**os.environ, "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "lots"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0].split() == ["lots", "128", "1"], proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if "invalid setting" in x]
    assert "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT must be a non-negative integer but got lots" in line


_OTLP = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}


def test_a_bad_otlp_headers_value_is_reported_without_showing_it(
    tel: Tel, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """OTLP headers often carry credentials: a malformed value is reported by its variable's
    name and length, never echoed (the exporter's own warning repeats it)."""
    from telemetry import _tracing

    for name, value in {
        **_OTLP,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s3cr3t-t0ken,oops",
    }.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    provider = _tracing.build_provider("svc", "v1")
    assert provider is not None
    provider.shutdown()
    err = capsys.readouterr().err
    assert "s3cr3t" not in err and "oops" not in err
    (line,) = [x for x in err.splitlines() if "invalid setting" in x]
    assert "OTEL_EXPORTER_OTLP_HEADERS (27 characters): 1 header(s) not a URL-encoded" in line


def _exporters_of(provider: object) -> list[str]:
    processors = provider._active_span_processor._span_processors  # type: ignore[attr-defined]
    return sorted(type(p.span_exporter.inner).__name__ for p in processors)


@pytest.mark.parametrize(
    ("env", "exporters", "problems"),
    [
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["ConsoleSpanExporter", "OTLPSpanExporter"], 0),
        ({"OTEL_TRACES_EXPORTER": " Console , none"}, [], 0),
        ({"OTEL_TRACES_EXPORTER": "zipkin,console"}, ["ConsoleSpanExporter"], 1),
        (
            {"OTEL_TRACES_EXPORTER": "jaeger", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
            ["OTLPSpanExporter"],
            1,
        ),
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "nope"},
            ["ConsoleSpanExporter"],
            1,
        ),
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "False"},
            ["ConsoleSpanExporter"],
            0,
        ),
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "-5"},
            ["ConsoleSpanExporter"],
            1,
        ),
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_MAX_QUEUE_SIZE": "big"},
            ["ConsoleSpanExporter"],
            1,
        ),
        (  # two exporters, one batch processor each: the bad value is reported once
            {"OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_BSP_MAX_QUEUE_SIZE": "big"},
            ["ConsoleSpanExporter", "OTLPSpanExporter"],
            1,
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "console",
                "OTEL_BSP_MAX_QUEUE_SIZE": "1",
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5",
            },
            ["ConsoleSpanExporter"],
            1,
        ),
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "-1"},
            ["ConsoleSpanExporter"],
            1,
        ),
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "sometimes"},
            ["ConsoleSpanExporter"],
            1,
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "console",
                "OTEL_TRACES_SAMPLER": "TraceIdRatio",
                "OTEL_TRACES_SAMPLER_ARG": "7",
            },
            ["ConsoleSpanExporter"],
            1,
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "console",
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "nan",
            },
            ["ConsoleSpanExporter"],
            1,
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "console",
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.25",
            },
            ["ConsoleSpanExporter"],
            0,
        ),
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_SPAN_EVENT_COUNT_LIMIT": "many"},
            ["ConsoleSpanExporter"],
            1,
        ),
        *(  # the SDK reads anything but true/false (any case, spaces) as false, with a warning
            (
                {"OTEL_TRACES_EXPORTER": "console", "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED": v},
                ["ConsoleSpanExporter"],
                problems,
            )
            for v, problems in [("yes", 1), ("1", 1), ("", 1), (" TRUE ", 0), ("false", 0)]
        ),
        # the OTLP exporter's own variables: what it refuses with only a warning, and what it
        # takes although no export can work with it, is reported; good values are not
        *(
            ({**_OTLP, **extra}, ["OTLPSpanExporter"], problems)
            for extra, problems in [
                ({"OTEL_EXPORTER_OTLP_TIMEOUT": "abc"}, 1),
                ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0"}, 1),
                ({"OTEL_EXPORTER_OTLP_TIMEOUT": "-5"}, 1),
                ({"OTEL_EXPORTER_OTLP_TIMEOUT": "-5", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "3"}, 0),
                ({"OTEL_EXPORTER_OTLP_TIMEOUT": "2.5"}, 0),
                ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zip"}, 1),
                ({"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "GZip"}, 0),
                ({"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cret,oops"}, 1),
                ({"OTEL_EXPORTER_OTLP_HEADERS": "a=b,c=d%20e"}, 0),
                ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, 1),
                ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://[::1"}, 1),
                ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector.example/v1/traces"}, 0),
                (  # the general endpoint is not used when the traces one is set
                    {
                        "OTEL_EXPORTER_OTLP_ENDPOINT": "nope",
                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces",
                    },
                    0,
                ),
            ]
        ),
        # values that every export would fail with, although the exporter takes them
        *(
            ({**_OTLP, **extra}, exporters, problems)
            for extra, exporters, problems in [
                (
                    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318 "},
                    ["OTLPSpanExporter"],
                    1,
                ),
                (
                    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:99999"},
                    ["OTLPSpanExporter"],
                    1,
                ),
                ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:0"}, ["OTLPSpanExporter"], 1),
                (
                    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\uff19"},
                    ["OTLPSpanExporter"],
                    1,
                ),
                ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://exa mple:4318"}, ["OTLPSpanExporter"], 1),
                ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318?x=1"}, ["OTLPSpanExporter"], 1),
                (
                    {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://h/v1/traces?x=1"},
                    ["OTLPSpanExporter"],
                    0,
                ),
                ({"OTEL_EXPORTER_OTLP_ENDPOINT": "HTTP://[::1]:4318/"}, ["OTLPSpanExporter"], 0),
                (
                    {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://u:p@h\u00e9:4318"},
                    ["OTLPSpanExporter"],
                    0,
                ),
                ({"OTEL_EXPORTER_OTLP_TIMEOUT": "1e10"}, ["OTLPSpanExporter"], 1),
                ({"OTEL_EXPORTER_OTLP_TIMEOUT": "1e400"}, ["OTLPSpanExporter"], 1),
                # positive, but gone before the exporter sends: every export fails
                ({"OTEL_EXPORTER_OTLP_TIMEOUT": "1e-300"}, ["OTLPSpanExporter"], 1),
                ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0.0000001"}, ["OTLPSpanExporter"], 1),
                ({"OTEL_EXPORTER_OTLP_TIMEOUT": "0.00001"}, ["OTLPSpanExporter"], 0),
                ({"OTEL_EXPORTER_OTLP_TIMEOUT": " \u0665 "}, ["OTLPSpanExporter"], 0),
                ({"OTEL_EXPORTER_OTLP_COMPRESSION": " "}, ["OTLPSpanExporter"], 1),
                ({"OTEL_EXPORTER_OTLP_HEADERS": "oops,bad,c=d"}, ["OTLPSpanExporter"], 1),
                ({"OTEL_EXPORTER_OTLP_HEADERS": "a=%E2%82%AC"}, [], 1),
                ({"OTEL_EXPORTER_OTLP_HEADERS": "a=b%0d%0aX:y"}, [], 1),
                ({"OTEL_EXPORTER_OTLP_HEADERS": "a=b%zz,c=%20d%20"}, ["OTLPSpanExporter"], 0),
                (
                    {
                        "OTEL_EXPORTER_OTLP_HEADERS": "oops",
                        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "a=b",
                    },
                    ["OTLPSpanExporter"],
                    0,
                ),
                (
                    {"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/no/such.pem"},
                    ["OTLPSpanExporter"],
                    1,
                ),
                (
                    {
                        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": __file__,
                        "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/no/such.key",
                    },
                    ["OTLPSpanExporter"],
                    1,
                ),
                ({"OTEL_EXPORTER_OTLP_CLIENT_KEY": "/no/such.key"}, ["OTLPSpanExporter"], 0),
                ({"OTEL_EXPORTER_OTLP_CERTIFICATE": "/no/ca.pem"}, ["OTLPSpanExporter"], 0),
                (
                    {
                        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://h:4318",
                        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": "/no/ca.pem",
                    },
                    ["OTLPSpanExporter"],
                    1,
                ),
                ({"OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER": "nope"}, [], 1),
                (
                    {
                        "OTEL_TRACES_EXPORTER": "otlp,console",
                        "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER": "nope",
                    },
                    ["ConsoleSpanExporter"],
                    1,
                ),
            ]
        ),
    ],
)
def test_trace_exporter_and_sdk_variables_are_read_as_specified_and_bad_ones_reported(
    tel: Tel, monkeypatch: pytest.MonkeyPatch, env: dict, exporters: list, problems: int
) -> None:
    """``OTEL_TRACES_EXPORTER`` is a comma-separated list; a name not understood, a non-boolean
    ``OTEL_SDK_DISABLED`` and SDK variables the SDK refuses (span limits, batch processor) are
    reported naming the variable (``config``) and replaced by their defaults: tracing stays on."""
    from telemetry import _tracing

    for name in (
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "OTEL_BSP_EXPORT_TIMEOUT",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "OTEL_SPAN_EVENT_COUNT_LIMIT",
        *(n for n in os.environ if n.startswith(("OTEL_EXPORTER_OTLP_", "OTEL_PYTHON_EXP"))),
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = telemetry.counts().get("config", 0)
    provider = _tracing.build_provider("svc", "v1")
    assert provider is not None
    try:
        assert _exporters_of(provider) == exporters
        if "OTEL_TRACES_SAMPLER" in env:  # a bad value: the SDK's fallback; a good one: its own
            ratio = "0.25" if env.get("OTEL_TRACES_SAMPLER_ARG") == "0.25" else "1.0"
            expected = {"sometimes": "AlwaysOnSampler"}.get(env["OTEL_TRACES_SAMPLER"], ratio)
            assert expected in provider.sampler.get_description()
        assert telemetry.counts().get("config", 0) - before == problems
    finally:
        provider.shutdown()


def test_no_credential_of_a_bad_header_or_endpoint_is_printed(
    tel: Tel, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header that decodes to a value HTTP cannot send would fail every export, and the SDK
    would log it (secret included) with each failure: reported by length, no OTLP exporter.
    An endpoint's user:password is not shown either."""
    from telemetry import _tracing

    for name, value in {
        **_OTLP,
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:pa55w0rd@[zz]:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=s3cr3t%0d%0aX:y",
    }.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    provider = _tracing.build_provider("svc", "v1")
    assert provider is not None and _exporters_of(provider) == []
    with provider.get_tracer("t").start_as_current_span("s"):
        pass
    provider.shutdown()
    captured = capsys.readouterr()
    out = captured.out + captured.err + tel.out.getvalue()
    assert "s3cr3t" not in out and "pa55w0rd" not in out
    lines = [x for x in captured.err.splitlines() if "invalid setting" in x]
    assert len(lines) == 2
    assert "OTEL_EXPORTER_OTLP_ENDPOINT='http://***@[zz]:4318'" in lines[0]
    assert "OTEL_EXPORTER_OTLP_HEADERS (29 characters): 1 header value(s)" in lines[1]


def test_another_threads_opentelemetry_lines_pass_through_while_the_exporter_is_made() -> None:
    """The exporter's own warnings are collected while it is made; a line another thread logs
    under "opentelemetry" meanwhile (an export thread) reaches the application's handlers."""
    import logging
    import threading

    from telemetry import _tracing

    seen: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    root = logging.getLogger()
    keep = _Keep(logging.INFO)
    root.addHandler(keep)
    try:
        with _tracing._sdk_warnings() as said:
            other = threading.Thread(
                target=lambda: logging.getLogger("opentelemetry.x").warning("from another thread")
            )
            other.start()
            other.join()
            logging.getLogger("opentelemetry.y").warning("from this thread")
        assert said == ["from this thread"]
        assert "from another thread" in seen and "from this thread" not in seen
        assert logging.getLogger("opentelemetry").propagate
    finally:
        root.removeHandler(keep)
