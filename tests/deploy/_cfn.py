"""Read CloudFormation YAML (short-form tags such as ``!Ref``) into plain dicts, and resolve
the few intrinsic functions the wiring tests need against fake parameter/attribute values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alarms._io import load_document

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def load(path: Path) -> dict[str, Any]:
    """A template (YAML or JSON) as a dict, short tags turned into their long forms (the same
    reader `alarms replay` uses for CloudFormation templates)."""
    return load_document(str(path))


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}
