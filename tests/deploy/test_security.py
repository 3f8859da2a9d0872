"""The security lint of the templates: cfn-lint's informational rules plus the project's security
baseline (deploy/cfn-lint-security.txt, cfn-lint custom rules), against an explicit allow-list
with reasons (deploy/security-allowlist.yaml). A new finding fails; so does a stale entry.

Why cfn-lint and not checkov: checkov cannot share the dev environment. Installing it next to
the dev extra makes pip downgrade networkx to 2.6 (a cfn-lint dependency), urllib3 to 1.26 and
packaging to 23.2, or, for checkov's newest release, boto3/botocore to 1.35, whose ECS model
predates the 2025 deployment strategies the stack uses. docs/deploy-to-aws.md has the mapping of
checkov's findings for these templates to what the stack does about them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy._cfn import DEPLOY
from tests.deploy.test_templates import TEMPLATES

CFN_LINT = Path(sys.executable).with_name("cfn-lint")
RULES = DEPLOY / "cfn-lint-security.txt"
ALLOWLIST = DEPLOY / "security-allowlist.yaml"


def _findings(*paths: Path) -> set[tuple[str, str, str]]:
    """(file name, resource logical ID, custom rule message or cfn-lint rule ID) per finding."""
    proc = subprocess.run(
        [str(CFN_LINT), "--format", "json", "--include-checks", "I", "--custom-rules", str(RULES),
         "--", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert proc.stdout.strip(), proc.stderr
    found = set()
    for match in json.loads(proc.stdout):
        rule = match["Rule"]["Id"]
        if rule == "W3002":  # the nested stack's local TemplateURL: `package` rewrites it
            continue
        assert rule != "E9001", match["Message"]  # a malformed line in the rules file
        path = match["Location"]["Path"]
        resource = path[1] if len(path) > 1 and path[0] == "Resources" else "-"
        # custom rules are numbered by line: name them by their message instead
        key = match["Message"] if rule.startswith(("E9", "W9")) else rule
        found.add((Path(match["Filename"]).name, resource, key))
    return found


def _allowlist() -> set[tuple[str, str, str]]:
    entries = yaml.safe_load(ALLOWLIST.read_text())["accepted"]
    for entry in entries:
        assert len(entry.get("reason", "").split()) >= 5, entry  # a reason, not a shrug
    return {(e["file"], e["resource"], e["finding"]) for e in entries}


def test_templates_have_no_security_findings_beyond_the_reasoned_allowlist() -> None:
    found = _findings(*(DEPLOY / t for t in TEMPLATES))
    allowed = _allowlist()
    assert found - allowed == set(), "new findings: fix them, or allow-list them with a reason"
    assert allowed - found == set(), "allow-list entries that no longer match: remove them"


def test_security_lint_catches_a_regression(tmp_path: Path) -> None:
    """Each kind of regression the baseline is for, injected into a copy of the templates."""
    stack = (DEPLOY / "stack.yaml").read_text()
    broken = stack.replace("SqsManagedSseEnabled: true", "SqsManagedSseEnabled: false", 1)
    broken = broken.replace("BlockPublicPolicy: true", "BlockPublicPolicy: false", 1)
    broken = broken.replace("ELBSecurityPolicy-TLS13-1-2-2021-06", "ELBSecurityPolicy-2016-08", 1)
    broken = broken.replace("PointInTimeRecoveryEnabled: true", "PointInTimeRecoveryEnabled: false")
    (tmp_path / "stack.yaml").write_text(broken)
    (tmp_path / "alarms.json").write_text((DEPLOY / "alarms.json").read_text())
    found = _findings(tmp_path / "stack.yaml") - _allowlist()
    assert {(f[1], f[2]) for f in found} == {
        ("DeadLetterQueue", "SQS queue not encrypted"),
        ("AccessLogsBucket", "S3 bucket may get a public policy"),
        ("ProductionListener", "listener allows TLS below 1.2"),
        ("PointsTable", "DynamoDB table without point-in-time recovery"),
    }
