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


def lower_first(value: Any) -> Any:
    """CloudFormation property names (PascalCase) -> ECS/CodeDeploy API names (camelCase)."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: lower_first(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_first(v) for v in value]
    return value
