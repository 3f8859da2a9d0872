"""The AfterAllowTestTraffic smoke test: the Lambda's inline code (from deploy/stack.yaml) run here
against the real API served on loopback (standing for the test listener), its report to CodeDeploy
recorded by a stand-in boto3; its wiring (condition, VPC, least-privilege role) and the AppSpec hook
render_revision.py writes."""

from __future__ import annotations

import json
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from werkzeug.serving import make_server

from points.storage.base import StorageUnavailable
from points.storage.sqlite import SQLiteStorage
from sample_api import Config, create_app
from sample_api.tokens import auth_settings_from
from tests.deploy._cfn import DEPLOY, load
from tests.deploy.test_revision import OUTPUTS, _describe_stacks_output, _run
from tests.support.issuer import ISSUER

# The API as deployed: tokens required on the points routes; the smoke test reads anonymously.
AUTH = auth_settings_from(ISSUER.env())


class _Unavailable(SQLiteStorage):
    def ping(self) -> None:
        raise StorageUnavailable("the store does not answer")


EVENT = {"DeploymentId": "d-ABCDEF123", "LifecycleEventHookExecutionId": "hook-exec-1"}


@pytest.fixture(scope="module")
def stack() -> dict:
    return load(DEPLOY / "stack.yaml")


@pytest.fixture
def handler(stack: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, list[dict]]]:
    """The function's module, loaded from the template's ZipFile, with boto3 recording calls."""
    reports: list[dict] = []

    class _CodeDeploy:
        def put_lifecycle_event_hook_execution_status(self, **kwargs: Any) -> dict:
            reports.append(kwargs)
            return {"lifecycleEventHookExecutionId": kwargs["lifecycleEventHookExecutionId"]}

    fake = types.ModuleType("boto3")
    fake.client = lambda name: _CodeDeploy() if name == "codedeploy" else None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "boto3", fake)
    code = stack["Resources"]["SmokeTestFunction"]["Properties"]["Code"]["ZipFile"]
    assert len(code) <= 4096  # CloudFormation's limit for inline Lambda code
    module = types.ModuleType("index")
    exec(compile(code, "index.py", "exec"), module.__dict__)  # our own template's code
    # No real pauses in tests: the function's own ``time`` name gets a stand-in module. (Setting
    # ``module.time.sleep`` would replace time.sleep for the whole test session: it is the one
    # shared ``time`` module, and every later test that waits would stop waiting.)
    pauses = types.SimpleNamespace(
        **{k: getattr(time, k) for k in dir(time) if not k.startswith("_")}
    )
    pauses.sleep = lambda s: None
    module.time = pauses  # type: ignore[attr-defined]
    yield module, reports


@pytest.fixture
def api(tmp_path: Path) -> Iterator[str]:
    app = create_app(Config(version="v2", db_path=str(tmp_path / "points.db"), auth=AUTH))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def _env(monkeypatch: pytest.MonkeyPatch, stack: dict, base: str) -> None:
    read_path = stack["Parameters"]["SmokeTestReadPath"]["Default"]
    monkeypatch.setenv("BASE_URL", base)
    monkeypatch.setenv("READ_PATH", read_path)


def test_healthy_replacement_tasks_report_succeeded(handler, api, stack, monkeypatch) -> None:
    module, reports = handler
    _env(monkeypatch, stack, api + "/")
    assert module.handler(EVENT, None) == "Succeeded"
    assert reports == [
        {
            "deploymentId": "d-ABCDEF123",
            "lifecycleEventHookExecutionId": "hook-exec-1",
            "status": "Succeeded",
        }
    ]


def test_an_unready_or_unreachable_release_reports_failed(
    handler, stack, monkeypatch, tmp_path: Path
) -> None:
    module, reports = handler
    # Readiness fails: the storage does not answer (the API's own 503).
    app = create_app(Config(version="v2", auth=AUTH), storage=_Unavailable(str(tmp_path / "p.db")))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _env(monkeypatch, stack, f"http://127.0.0.1:{server.server_port}")
        assert module.handler(EVENT, None) == "Failed"
    finally:
        server.shutdown()
        thread.join(timeout=10)
    # Nothing listens there any more.
    assert module.handler(EVENT, None) == "Failed"
    assert [r["status"] for r in reports] == ["Failed", "Failed"]


def test_a_bad_read_path_fails_rather_than_passing(handler, api, stack, monkeypatch) -> None:
    module, reports = handler
    monkeypatch.setenv("BASE_URL", api)
    monkeypatch.setenv("READ_PATH", "/v1/users/u-1/points")  # needs the user's token: 401
    assert module.handler(EVENT, None) == "Failed"
    assert reports[-1]["status"] == "Failed"


def test_the_smoke_test_exists_only_with_codedeploy_and_subnets(stack: dict) -> None:
    conditions = stack["Conditions"]
    assert conditions["HasSmokeTest"]["Fn::And"][0] == {"Condition": "UseCodeDeploy"}
    for name in (
        "SmokeTestFunction",
        "SmokeTestRole",
        "SmokeTestSecurityGroup",
        "SmokeTestLogGroup",
    ):
        assert stack["Resources"][name]["Condition"] == "HasSmokeTest"
    assert stack["Outputs"]["SmokeTestFunctionName"]["Condition"] == "HasSmokeTest"
    props = stack["Resources"]["SmokeTestFunction"]["Properties"]
    assert props["VpcConfig"]["SubnetIds"] == {"Ref": "SmokeTestSubnetIds"}
    assert props["Runtime"].startswith("python3.")


def test_the_smoke_test_role_is_least_privilege(stack: dict) -> None:
    role = stack["Resources"]["SmokeTestRole"]["Properties"]
    [managed] = role["ManagedPolicyArns"]
    assert managed["Fn::Sub"].endswith(
        ":iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
    )
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["ReportHook"]["Action"] == "codedeploy:PutLifecycleEventHookExecutionStatus"
    assert by_sid["ReportHook"]["Resource"]["Fn::Sub"].endswith(
        ":deploymentgroup:${ServiceName}/${ServiceName}-dg"
    )
    assert all(s["Resource"] != "*" for s in statements)


def test_the_appspec_names_the_hook_when_the_stack_has_one(tmp_path: Path) -> None:
    outputs = _describe_stacks_output(
        tmp_path, {**OUTPUTS, "SmokeTestFunctionName": "points-service-smoke-test"}
    )
    proc = _run("--outputs", str(outputs), "--region", "us-east-1", "--version", "v2",
                "--out", str(tmp_path / "rev"), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    appspec = yaml.safe_load((tmp_path / "rev" / "appspec.yaml").read_text())
    assert appspec["Hooks"] == [{"AfterAllowTestTraffic": "points-service-smoke-test"}]
    assert appspec["Resources"][0]["TargetService"]["Properties"]["LoadBalancerInfo"]
    # No smoke test in the stack: no hook.
    (tmp_path / "plain").mkdir()
    plain = _describe_stacks_output(tmp_path / "plain", OUTPUTS)
    proc = _run("--outputs", str(plain), "--region", "us-east-1", "--version", "v2",
                "--out", str(tmp_path / "plain-rev"), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Hooks" not in yaml.safe_load((tmp_path / "plain-rev" / "appspec.yaml").read_text())


def test_a_bad_function_output_is_one_line_exit_2(tmp_path: Path) -> None:
    outputs = _describe_stacks_output(tmp_path, {**OUTPUTS, "SmokeTestFunctionName": "x y: z"})
    proc = _run("--outputs", str(outputs), "--region", "us-east-1", "--version", "v2",
                "--out", str(tmp_path / "rev"), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    assert "SmokeTestFunctionName" in proc.stderr and proc.stderr.count("\n") == 1
    assert json.dumps(OUTPUTS)  # the shared fixture is untouched
