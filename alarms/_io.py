"""Input helpers of the CLI: alarm files (JSON, YAML, CloudFormation short tags) and times."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """Bad CLI input: the message is printed as one line and the exit status is 2."""


def parse_time(text: str) -> float:
    """Epoch seconds from ISO 8601 (naive = UTC) or a number of epoch seconds."""
    raw = text.strip()
    if re.fullmatch(r"[-+]?\d+(\.\d+)?", raw):
        value = float(raw)
        if value > 1e11:
            raise InputError(f"time {text!r} looks like milliseconds; give epoch seconds")
        return value
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(f"bad time {text!r}: use ISO 8601 or epoch seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    value = dt.timestamp()
    if not math.isfinite(value):  # pragma: no cover
        raise InputError(f"bad time {text!r}")
    return value


def _yaml_loader() -> type:
    import yaml

    class CfnLoader(yaml.SafeLoader):
        """SafeLoader that turns CloudFormation short tags (!Ref, !Sub, ...) into long form."""

    def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix == "Ref":
            return {"Ref": value}
        if suffix == "GetAtt" and isinstance(value, str):
            return {"Fn::GetAtt": value.split(".", 1)}
        if suffix == "Condition":
            return {"Condition": value}
        return {f"Fn::{suffix}": value}

    CfnLoader.add_multi_constructor("!", construct)
    return CfnLoader


def load_document(path: str) -> dict[str, Any]:
    """A JSON or YAML document (CloudFormation short tags allowed) that must be a mapping."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        doc = json.loads(text)
    except ValueError:
        import yaml

        try:
            doc = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass
        except yaml.YAMLError:
            raise InputError(f"{path} is neither JSON nor YAML") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: the document must be a JSON/YAML object")
    return doc
