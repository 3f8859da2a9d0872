"""``python -m alarms`` end to end: synth, replay over recorded EMF, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from alarms import POINTS_SERVICE_SPEC, rollback_alarm_names
from alarms._io import load_document
from alarms._sample_emf import api_lines, worker_lines

ROOT = Path(__file__).resolve().parents[2]
START = 1_800_000_000 - 1_800_000_000 % 3600
SPEC = str(POINTS_SERVICE_SPEC)


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alarms", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def defs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "defs.json"
    proc = cli(
        "synth", "--spec", SPEC, "--format", "json", "--profile", "rehearsal", "-o", str(path)
    )
    assert proc.returncode == 0, proc.stderr
    return path


def record(path: Path, *, regression: bool, export: bool = False) -> Path:
    """A rehearsal-like recording: blue v1 and green v2 at 1 s high-resolution windows."""

    def latency(t: float, version: str) -> float:
        jitter = 5.0 * ((int(t) * 7919) % 11) / 10  # healthy: ~10-30 ms, varying
        if regression and version == "v2" and t >= START + 240:
            return 1200.0
        return 12.0 + jitter

    lines = list(
        api_lines(
            START,
            480,
            rps=40,
            window_s=1,
            versions={"v1": 0.5, "v2": 0.5},
            latency_ms=latency,
            high_resolution=True,
        )
    )
    lines += list(worker_lines(START, 480, window_s=5, version="v2"))
    with path.open("w") as f:
        for line in lines:
            if export:  # the CloudWatch Logs export record shape
                line = json.dumps({"timestamp": START * 1000, "message": line})
            f.write(line + "\n")
    return path


def replay(defs: Path, emf: Path, *extra: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    proc = cli("replay", "--alarms", str(defs), "--emf", str(emf), "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    return rows[:-1], rows[-1]["summary"]


def test_regression_trips_the_rollback_alarms(defs_file: Path, tmp_path: Path) -> None:
    evals, summary = replay(defs_file, record(tmp_path / "emf.log", regression=True))
    rollback = rollback_alarm_names(json.loads(defs_file.read_text()))
    assert "points-service-green-latency-avg" in summary["alarmed"]
    assert set(summary["alarmed"]) <= set(rollback) | {
        "points-service-latency-avg",
        "points-service-latency-p90",
    }
    first = next(
        e
        for e in evals
        if e["alarm"] == "points-service-green-latency-avg" and e["state"] == "ALARM"
    )
    # the regression starts at +240 s; 2 of 3 10-second periods -> ALARM at +260 s
    assert first["time"] == "2027-01-15T08:04:20Z"
    assert first["previous_state"] == "OK"
    assert first["value"] > 250
    assert [len(p) for p in first["datapoints"]] == [2] * 5
    # the ALB alarms cannot be fed from EMF: reported as having no data
    assert "points-service-alb-green-5xx" in summary["no_data"]
    assert set(first) == {
        "time",
        "alarm",
        "state",
        "previous_state",
        "value",
        "datapoints",
        "reason",
    }


def test_healthy_green_raises_no_alarm(defs_file: Path, tmp_path: Path) -> None:
    evals, summary = replay(defs_file, record(tmp_path / "emf.log", regression=False))
    assert summary["alarmed"] == []
    assert {e["state"] for e in evals} <= {"OK", "INSUFFICIENT_DATA"}
    assert summary["evaluations"] == len(evals) > 0


def test_export_format_template_and_time_window(defs_file: Path, tmp_path: Path) -> None:
    emf = record(tmp_path / "export.log", regression=True, export=True)
    tmpl = tmp_path / "tmpl.json"
    assert (
        cli(
            "synth",
            "--spec",
            SPEC,
            "--format",
            "cloudformation",
            "--profile",
            "rehearsal",
            "-o",
            str(tmpl),
        ).returncode
        == 0
    )
    evals, summary = replay(
        tmpl, emf, "--start", "2027-01-15T08:03:00Z", "--end", str(START + 300), "--changes-only"
    )
    assert "points-service-green-latency-avg" in summary["alarmed"]
    assert all(e["state"] != e["previous_state"] for e in evals)
    assert min(e["time"] for e in evals) >= "2027-01-15T08:03:00Z"
    assert max(e["time"] for e in evals) <= "2027-01-15T08:05:00Z"


@pytest.mark.parametrize("shape", ["filter-log-events", "query-events"])
def test_aws_logs_cli_output_documents(defs_file: Path, tmp_path: Path, shape: str) -> None:
    """``aws logs filter-log-events`` output as the CLI prints it: one pretty-printed JSON
    document whose ``events`` hold the EMF lines as ``message`` (or its bare array)."""
    plain = record(tmp_path / "plain.log", regression=True)
    events = [
        {"logStreamName": "app/1", "timestamp": START * 1000, "message": line.strip()}
        for line in plain.read_text().splitlines()
    ]
    doc = {"events": events, "searchedLogStreams": []} if shape == "filter-log-events" else events
    out = tmp_path / "events.json"
    out.write_text(json.dumps(doc, indent=4))
    _, summary = replay(defs_file, out, "--changes-only")
    _, expected = replay(defs_file, plain, "--changes-only")
    assert summary["input"]["emf_lines"] == len(events) and summary["input"]["bad_lines"] == 0
    assert summary["state_changes"] == expected["state_changes"]
    assert "points-service-green-latency-avg" in summary["alarmed"]


@pytest.mark.parametrize("shape", ["lines", "filter-log-events"])
@pytest.mark.parametrize("via", ["stdin", "fifo"])
def test_streams_read_like_files(defs_file: Path, tmp_path: Path, shape: str, via: str) -> None:
    """stdin (``aws logs filter-log-events ... | replay --emf -``), a FIFO and ``<(zcat ...)``
    cannot seek: they are read as the file holding the same bytes is."""
    plain = record(tmp_path / "plain.log", regression=True)
    if shape == "lines":
        text = plain.read_text()
    else:
        events = [{"message": line} for line in plain.read_text().splitlines()]
        text = json.dumps({"events": events}, indent=4)
    src = tmp_path / "src.json"
    src.write_text(text)
    _, expected = replay(defs_file, src, "--changes-only")
    args = ("replay", "--alarms", str(defs_file), "--json", "--changes-only", "--emf")
    if via == "stdin":
        proc = cli(*args, "-", stdin=text)
    else:
        fifo = tmp_path / "emf.fifo"
        os.mkfifo(fifo)
        with subprocess.Popen(
            [sys.executable, "-m", "alarms", *args, str(fifo)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as p:
            with fifo.open("w") as f:  # opens once the replay opened its end
                f.write(text)
            out, err = p.communicate(timeout=120)
        proc = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])["summary"]
    assert summary["input"] == expected["input"] and summary["input"]["emf_lines"] > 0
    assert summary["state_changes"] == expected["state_changes"]


@pytest.mark.parametrize("shape", ["line", "events", "message"])
def test_json_nested_thousands_deep_is_a_bad_line(
    defs_file: Path, tmp_path: Path, shape: str
) -> None:
    """JSON nested deeper than the parser recurses is a bad line, not a RecursionError."""
    good = next(api_lines(START, 1, rps=10, window_s=1, high_resolution=True))
    deep = "[" * 100_000 + "]" * 100_000
    if shape == "line":
        text = good + "\n" + '{"_aws": {"Timestamp": 1}, "Requests": ' + deep + "}\n"
    elif shape == "events":
        text = '{"events": ' + deep + "}\n" + good + "\n"
    else:
        inner = '{"_aws": ' + deep + "}"
        text = good + "\n" + json.dumps({"message": inner}) + "\n"
    emf = tmp_path / "deep.log"
    emf.write_text(text)
    _, summary = replay(defs_file, emf)
    assert summary["input"]["emf_lines"] == 1 and summary["input"]["bad_lines"] == 1


def test_stdin_and_bad_lines(defs_file: Path) -> None:
    line = next(api_lines(START, 1, rps=10, window_s=1, high_resolution=True))
    proc = cli(
        "replay", "--alarms", str(defs_file), "--emf", "-", "--json", stdin=f"garbage\n{line}\n"
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])["summary"]
    assert summary["input"]["bad_lines"] == 1 and summary["input"]["emf_lines"] == 1


def test_replay_prints_a_table_of_state_changes_for_people(defs_file: Path, tmp_path: Path) -> None:
    emf = record(tmp_path / "emf.log", regression=True)
    _, summary = replay(defs_file, emf)
    proc = cli("replay", "--alarms", str(defs_file), "--emf", str(emf))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["time", "(UTC)", "alarm", "from", "->", "to", "value", "(alarm",
                                "when)"]  # fmt: skip
    rows = [line.split() for line in lines[1 : 1 + len(summary["state_changes"])]]
    # the same changes as the JSON summary, in order, one row each
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        (c["time"], c["alarm"], c["from"], c["to"]) for c in summary["state_changes"]
    ]
    fired = next(r for r in rows if r[1] == "points-service-green-latency-avg" and r[4] == "ALARM")
    value, condition = float(fired[5]), " ".join(fired[6:])
    assert value > 250 and condition == "(> 250)"
    assert f"{len(rows)} state changes in {summary['evaluations']} evaluations" in proc.stdout
    assert "went to ALARM: " in proc.stdout and "{" not in proc.stdout


def test_synth_cloudformation_to_stdout() -> None:
    proc = cli("synth", "--spec", SPEC, "--format", "cloudformation")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["AWSTemplateFormatVersion"] == "2010-09-09"


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ([], "alarms.yaml"),
        ([], "alarms.YML"),
        (["--format", "cloudformation"], "alarms.yaml"),
        (["--format", "yaml"], "alarms.yaml"),
        (["--format", "yaml"], None),
    ],
)
def test_synth_writes_yaml_when_the_file_name_or_format_asks(
    args: list[str], name: str | None, tmp_path: Path
) -> None:
    out = tmp_path / name if name else None
    proc = cli("synth", "--spec", SPEC, *args, *(["-o", str(out)] if out else []))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text() if out else proc.stdout
    assert text.startswith("AWSTemplateFormatVersion: '2010-09-09'\n")
    assert "!Ref GreenVersion" in text and "DashboardBody: !Sub '" in text
    path = out or tmp_path / "stdout.yaml"
    path.write_text(text)
    expected = cli("synth", "--spec", SPEC, "--format", "cloudformation")
    # the reader replay uses turns the short tags back into the same template
    assert load_document(str(path)) == json.loads(expected.stdout)


def test_a_json_file_name_still_gets_json(tmp_path: Path) -> None:
    for args, name in (([], "t.json"), (["--format", "json"], "d.json"), ([], "t.template")):
        proc = cli("synth", "--spec", SPEC, *args, "-o", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        assert isinstance(json.loads((tmp_path / name).read_text()), dict)


def test_replay_reads_the_yaml_template_like_the_json_one(tmp_path: Path) -> None:
    emf = record(tmp_path / "emf.log", regression=True)
    results = []
    for name in ("t.yaml", "t.json"):
        proc = cli("synth", "--spec", SPEC, "--profile", "rehearsal", "-o", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        results.append(replay(tmp_path / name, emf, "--changes-only"))
    assert results[0] == results[1]
    assert "points-service-green-latency-avg" in results[0][1]["alarmed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["synth", "--spec", "/nonexistent.yaml"], "spec error: cannot read /nonexistent.yaml"),
        (["synth", "--spec", SPEC, "--format", "xml"], "invalid choice"),
        (["synth", "--spec", SPEC, "--format", "json", "-o", "x.yaml"], "names a YAML file"),
        (["synth", "--spec", SPEC, "--format", "yaml", "-o", "x.json"], "does not end in .yaml"),
        (["synth", "--spec", SPEC, "--profile", "staging"], "spec error: profiles: no profile"),
        (["apply", "--spec", SPEC, "--profile", "nope", "--dry-run"], "no profile 'nope'"),
        (
            ["replay", "--alarms", "DEFS", "--emf", "/nonexistent.log"],
            "cannot read /nonexistent.log",
        ),
        (["replay", "--alarms", "DEFS", "--emf", "EMF", "--start", "soon"], "bad time 'soon'"),
        (
            ["replay", "--alarms", "DEFS", "--emf", "EMF", "--start", "1800000000000"],
            "milliseconds",
        ),
        (
            [
                "replay",
                "--alarms",
                "DEFS",
                "--emf",
                "EMF",
                "--start",
                "2027-01-02",
                "--end",
                "2027-01-01",
            ],
            "--end is before --start",
        ),
        (["replay", "--alarms", "DEFS", "--emf", "EMF", "--tick", "15"], "--tick"),
        (["replay", "--alarms", "DEFS", "--emf", "EMF", "--tick", "1e9"], "--tick"),
        (["replay", "--alarms", "DEFS", "--emf", "EMF", "--percentile", "p2"], "--percentile"),
        # out of range for EMF times (1970..9999) or for the evaluator: no traceback, no hang
        (["replay", "--alarms", "DEFS", "--emf", "EMF", "--start", "-99999999999"], "1970"),
        (["replay", "--alarms", "DEFS", "--emf", "EMF", "--start", "1969-12-31T23:59Z"], "1970"),
        (["replay", "--alarms", "DEFS", "--emf", "EMF", "--range-extra", "100000000"], "0..100"),
        (["replay", "--alarms", "DEFS", "--emf", "EMF", "--datapoint-delay", "inf"], "--datap"),
        (["replay", "--alarms", "DEFS", "--emf", "EMF", "--datapoint-delay", "nan"], "--datap"),
        (["replay", "--alarms", "DEFS", "--emf", "EMF", "--max-lateness", "nan"], "--max-lat"),
        (["replay", "--alarms", "DEFS", "--emf", "EMF", "--max-lateness=-5"], "--max-lat"),
        (
            ["replay", "--alarms", "DEFS", "--emf", "EMF", "--start", "0", "--end", "99999999999"],
            "longer than 31 days",
        ),
        (["replay", "--alarms", "DEFS", "--emf", "EMF", "--end", "2099-01-01"], "longer than 31"),
        (["replay", "--alarms", "DEFS", "--emf", "GARBAGE"], "no EMF data"),
        (["replay", "--alarms", "GARBAGE", "--emf", "EMF"], "cannot read"),
        (["replay", "--alarms", "DEFS", "--emf", "DIR"], "Is a directory"),
        (["replay", "--alarms", "EMPTY", "--emf", "EMF"], "must be a JSON/YAML object"),
        (["replay", "--alarms", "BAD", "--emf", "EMF"], "no MetricAlarms"),
        (["replay", "--alarms", "FOREIGN", "--emf", "EMF"], "parameter Version has no Default"),
        (["replay", "--alarms", "DEFS", "--emf", "EMPTY"], "no EMF data"),
        (["replay", "--alarms", "DEFS"], "required: --emf"),
        (["replay", "--alarms", "LAUGHS", "--emf", "EMF"], "expands to more than"),
        (["replay", "--alarms", "DEEP_YAML", "--emf", "EMF"], "nested too deeply"),
        (["replay", "--alarms", "DEEP_JSON", "--emf", "EMF"], "nested too deeply"),
        (["synth", "--spec", "GARBAGE"], "cannot read"),
        (["apply", "--spec", "GARBAGE", "--dry-run"], "cannot read"),
        (["synth", "--spec", "LAUGHS"], "expands to more than"),
        (["synth", "--spec", "RECURSIVE"], "recursive YAML alias"),
        (["synth", "--spec", "DEEP_YAML"], "nested too deeply"),
        (["synth", "--spec", "DEEP_JSON"], "nested too deeply"),
        ([], "required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], message: str, defs_file: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"Resources": {}, "X": 1}')
    foreign = tmp_path / "foreign.json"
    foreign.write_text(
        json.dumps(
            {
                "Parameters": {"Version": {"Type": "String"}},
                "Resources": {
                    "A": {
                        "Type": "AWS::CloudWatch::Alarm",
                        "Properties": {"AlarmName": {"Fn::Sub": "x-${Version}"}},
                    }
                },
            }
        )
    )
    empty = tmp_path / "empty.log"
    empty.write_text("")
    emf = tmp_path / "emf.log"
    emf.write_text(next(api_lines(START, 1, window_s=1)) + "\n")
    bad.write_text('{"Something": []}')
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(128, 256)) * 3)
    laughs = tmp_path / "laughs.yaml"  # 9^9 "lol"s under one key, a few hundred bytes on disk
    laughs.write_text(
        "service: x\nResources:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9))
    )
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("service: &s [*s]\n")
    deep_yaml = tmp_path / "deep.yaml"
    deep_yaml.write_text("service: " + "[" * 50_000 + "]" * 50_000 + "\n")
    deep_json = tmp_path / "deep.json"
    deep_json.write_text('{"service": ' + "[" * 50_000 + "]" * 50_000 + "}")
    subst = {
        "LAUGHS": str(laughs),
        "RECURSIVE": str(recursive),
        "DEEP_YAML": str(deep_yaml),
        "DEEP_JSON": str(deep_json),
        "DEFS": str(defs_file),
        "EMF": str(emf),
        "EMPTY": str(empty),
        "BAD": str(bad),
        "FOREIGN": str(foreign),
        "GARBAGE": str(garbage),
        "DIR": str(tmp_path),
    }
    proc = cli(*[subst.get(a, a) for a in args])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_replay_warns_about_emf_cloudwatch_would_reject(defs_file: Path, tmp_path: Path) -> None:
    """A recording with a non-ASCII and a whitespace-only dimension value, an AWS/ namespace and a
    NaN value: replay names each on stderr, counts them and leaves them out, as CloudWatch would."""
    good = list(api_lines(START, 2, rps=10, window_s=1, high_resolution=True))

    def doctored(change: str) -> str:
        doc = json.loads(good[0])
        directive = doc["_aws"]["CloudWatchMetrics"][0]
        if change == "route":
            doc["Route"] = "/v1/ポイント"
        elif change == "blank":
            doc["Route"] = "   "
        elif change == "aws":
            directive["Namespace"] = "AWS/ApplicationELB"
        else:
            doc["Requests"] = float("nan")
        return json.dumps(doc)  # NaN written as the bare literal, as Python's json does

    emf = tmp_path / "emf.jsonl"
    emf.write_text("\n".join([*good, *map(doctored, ("route", "blank", "aws", "nan"))]) + "\n")
    proc = cli("replay", "--alarms", str(defs_file), "--emf", str(emf), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])["summary"]
    warnings = [x for x in proc.stderr.splitlines() if "CloudWatch would reject" in x]
    for needle in ("'/v1/ポイント': a dimension value must contain only ASCII",
                   "'   ': a dimension value must include at least one non-whitespace",
                   "'AWS/ApplicationELB': namespaces starting with 'AWS/' are reserved",
                   "Requests: a metric value must be finite"):  # fmt: skip
        assert sum(needle in w for w in warnings) == 1, (needle, proc.stderr)
    # route/blank: 4 metrics in the Route set; aws: 4 metrics x 3 sets; nan: Requests x 3 sets
    assert summary["input"]["rejected"] == 4 + 4 + 12 + 3
    assert sum(summary["cloudwatch_rejects"].values()) == summary["input"]["rejected"]
    assert summary["input"]["bad_lines"] == 0
    table = cli("replay", "--alarms", str(defs_file), "--emf", str(emf))
    assert "CloudWatch would reject 23 metric values" in table.stdout
    clean = cli("replay", "--alarms", str(defs_file), "--emf", str(emf.with_name("clean.jsonl")))
    assert clean.returncode == 2  # (no such file) - and a clean recording warns about nothing:
    emf.with_name("clean.jsonl").write_text("\n".join(good) + "\n")
    clean = cli("replay", "--alarms", str(defs_file), "--emf", str(emf.with_name("clean.jsonl")))
    assert "CloudWatch would reject" not in clean.stderr + clean.stdout


def test_replay_leaves_out_lines_whose_timestamp_cloudwatch_would_refuse(
    defs_file: Path, tmp_path: Path
) -> None:
    """The reported fault and its class through the real CLI: one line stamped 0 (or stale, or
    ahead, or no time at all) among thousands no longer makes replay refuse the run as longer than
    31 days; each is left out with a warning and the run is evaluated as if it were not there. A
    run that is really that long is still refused, in one line."""
    clean = record(tmp_path / "clean.jsonl", regression=True)
    lines = clean.read_text().splitlines()

    def stamped(i: int, timestamp: Any) -> str:
        doc = json.loads(lines[i])
        doc["_aws"]["Timestamp"] = timestamp
        return json.dumps(doc)  # NaN as the bare literal, as Python's json writes it

    outliers = {  # line index -> timestamp; first, middle and last lines included
        0: 0,
        len(lines) // 3: (START - 20 * 86400) * 1000,
        len(lines) // 2: "1800000000000",
        len(lines) // 2 + 1: float("nan"),
        len(lines) // 2 + 2: True,
        len(lines) - 1: 253_402_300_799_999,
    }
    doctored = tmp_path / "doctored.jsonl"
    doctored.write_text(
        "\n".join(stamped(i, outliers[i]) if i in outliers else x for i, x in enumerate(lines))
        + "\n"
    )
    proc = cli("replay", "--alarms", str(defs_file), "--emf", str(doctored), "--json")
    assert proc.returncode == 0, proc.stderr
    warnings = [x for x in proc.stderr.splitlines() if "_aws.Timestamp" in x]
    for needle in ("more than 14 days before ingestion", "more than 2 hours after ingestion",
                   "not a string", "not NaN or infinity", "not a boolean"):  # fmt: skip
        assert sum(needle in w for w in warnings) == 1, (needle, proc.stderr)
    assert f"{doctored} line 1: 0 = 1970-01-01T00:00:00Z" in proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])["summary"]
    _, expected = replay(defs_file, clean)
    assert summary["state_changes"] == expected["state_changes"]  # same window, same alarms
    assert summary["input"]["rejected"] > 0 and summary["input"]["bad_lines"] == 0
    assert "Traceback" not in proc.stderr

    long_run = tmp_path / "long.jsonl"  # 40 days, a line an hour: every line plausible
    long_run.write_text(
        "\n".join(stamped(h % len(lines), (START + h * 3600) * 1000) for h in range(40 * 24)) + "\n"
    )
    proc = cli("replay", "--alarms", str(defs_file), "--emf", str(long_run))
    assert proc.returncode == 2 and "longer than 31 days" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr

    no_time = tmp_path / "no-time.jsonl"
    no_time.write_text("\n".join(stamped(i, "soon") for i in range(50)) + "\n")
    proc = cli("replay", "--alarms", str(defs_file), "--emf", str(no_time))
    assert proc.returncode == 2, proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("alarms: no EMF data CloudWatch would accept")
    )


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("MetricAlarms", "evil\n2026-01-01T00:00:00Z  fake-alarm  OK -> ALARM"),
        ("MetricAlarms", "red\x1b[31m"),
        ("MetricAlarms", "tab\there"),
        ("MetricAlarms", "del\x7f"),
        ("MetricAlarms", "L" * 256),
        ("MetricAlarms", ""),
        ("CompositeAlarms", "composite\rover"),
    ],
)
@pytest.mark.parametrize("json_out", [False, True])
def test_replay_refuses_an_alarm_name_cloudwatch_refuses(
    defs_file: Path, tmp_path: Path, kind: str, name: str, json_out: bool
) -> None:
    """PutMetricAlarm/PutCompositeAlarm: AlarmName is 1-255 characters without ASCII control
    characters; printed raw, a newline or an escape sequence forged rows in the table."""
    defs = json.loads(defs_file.read_text())
    if kind == "MetricAlarms":
        defs["MetricAlarms"][0]["AlarmName"] = name
    else:
        defs["CompositeAlarms"] = [{"AlarmName": name, "AlarmRule": "TRUE"}]
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(defs))
    emf = record(tmp_path / "emf.log", regression=True)
    proc = cli(
        "replay", "--alarms", str(path), "--emf", str(emf), *(["--json"] if json_out else [])
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "\x1b" not in proc.stderr
    assert "AlarmName" in proc.stderr and "Traceback" not in proc.stderr
