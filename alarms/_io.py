"""Files and times of the CLI: alarm files in (JSON, YAML, CloudFormation short tags), templates
out as YAML with the same short tags, times in."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telemetry import cloudwatch_rules as _rules

#: The last time an EMF timestamp names (9999-12-31T23:59:59.999Z), in epoch seconds.
_LAST_TIME_S = _rules.MAX_TIMESTAMP_MS / 1000.0


class InputError(ValueError):
    """Bad CLI input: the message is printed as one line and the exit status is 2."""


def parse_time(text: str) -> float:
    """Epoch seconds from ISO 8601 (naive = UTC) or a number of epoch seconds.

    Raises InputError for anything else, a number that looks like milliseconds, or a time
    before 1970 or after 9999."""
    raw = text.strip()
    if re.fullmatch(r"[-+]?\d+(\.\d+)?", raw):
        value = float(raw)
        if value > 1e11:
            raise InputError(f"time {text!r} looks like milliseconds; give epoch seconds")
    else:
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise InputError(f"bad time {text!r}: use ISO 8601 or epoch seconds") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        value = dt.timestamp()
    # EMF times run from 1970 to the end of 9999 (telemetry.cloudwatch_rules): nothing to
    # evaluate outside them, and a time before 1970 cannot be printed on every platform.
    if not 0 <= value <= _LAST_TIME_S:
        raise InputError(f"time {text!r} is not between 1970 and the end of 9999")
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


#: A YAML 1.2 float (core schema, yaml.org/spec/1.2.2 10.3.2) written without a dot or with an
#: unsigned exponent, which YAML 1.1 (PyYAML) reads as a string: ``1e3``, ``5E2``, ``1e308``,
#: ``.5e1``, ``1.5e3``. What YAML 1.1 already reads (``1.5``, ``1.0e+3``, ``.inf``) is unchanged.
_YAML12_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")


def _yaml12_numbers_loader() -> type:
    import yaml

    class Yaml12NumbersLoader(yaml.SafeLoader):
        """SafeLoader that reads YAML 1.2 floats as numbers (a spec written by hand or by a
        YAML 1.2 / JSON tool: ``threshold_ms: 1e3`` is the number 1000, not the text ``1e3``)."""

    # Checked after YAML 1.1's own resolvers (appended): ints and 1.1 floats resolve as before.
    Yaml12NumbersLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789.")
    )
    return Yaml12NumbersLoader


#: Largest YAML document read, in nodes with every alias counted as what it expands to: a
#: "billion laughs" document (aliases of aliases) is refused before anything walks it. A
#: generated template has a few thousand nodes.
MAX_YAML_NODES = 1_000_000


def _expanded_nodes(root: Any) -> int:
    """Nodes of a composed YAML graph with aliases expanded (memoised, iterative: linear in the
    graph). Raises InputError for a recursive alias or a graph beyond MAX_YAML_NODES."""
    import yaml

    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.MappingNode):
            kids = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            kids = list(node.value)
        else:
            kids = []
        if done:
            open_.discard(key)
            sizes[key] = 1 + sum(sizes[id(k)] for k in kids)
            if sizes[key] > MAX_YAML_NODES:
                raise InputError(f"expands to more than {MAX_YAML_NODES} nodes (YAML aliases)")
            continue
        if key in sizes:
            continue
        open_.add(key)
        stack.append((node, True))
        for k in kids:
            if id(k) in open_:
                raise InputError("holds a recursive YAML alias")
            if id(k) not in sizes:
                stack.append((k, False))
    return sizes[id(root)]


class _DuplicateKey(ValueError):
    """A key given twice in one JSON object (its first value would be silently lost)."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _refuse_duplicate_keys(root: Any) -> None:
    """Raise InputError for a YAML mapping that names one key twice: PyYAML keeps the last
    value silently (YAML itself requires unique keys). Merge keys (``<<``) may override."""
    import yaml

    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if (key.tag, key.value) in keys:
                        raise InputError(
                            f"has a duplicate key {key.value!r} (line {key.start_mark.line + 1})"
                        )
                    keys.add((key.tag, key.value))
                stack += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value


def parse_document(text: str, where: str, *, cfn_tags: bool = False) -> Any:
    """The JSON or YAML document in ``text``. ``cfn_tags`` (a template): CloudFormation short
    tags such as ``!Ref`` read as their long form, scalars as YAML 1.1, as CloudFormation reads
    them ("supports the YAML Version 1.1 specification", CloudFormation User Guide, template
    formats). Else (a spec): safe YAML reading YAML 1.2 floats (``1e3``) as numbers.

    Raises InputError naming ``where`` for text that is neither, nested too deeply for the
    parsers (a JSON or YAML document thousands of levels deep), or a YAML document whose aliases
    expand beyond MAX_YAML_NODES nodes."""
    import yaml

    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except RecursionError:
        raise InputError(f"{where} is nested too deeply") from None
    except _DuplicateKey as exc:
        raise InputError(f"{where} has a duplicate key {exc.args[0]!r}") from None
    except ValueError:
        pass
    loader = _yaml_loader() if cfn_tags else _yaml12_numbers_loader()
    try:
        root = yaml.compose(text, Loader=loader)
        if root is None:
            return None
        _expanded_nodes(root)
        _refuse_duplicate_keys(root)
        return yaml.load(text, Loader=loader)  # a SafeLoader (subclass)
    except RecursionError:
        raise InputError(f"{where} is nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise InputError(f"{where} is neither JSON nor YAML: not valid YAML{at}") from None
    except InputError as exc:
        raise InputError(f"{where} {exc}") from None


def load_document(path: str) -> dict[str, Any]:
    """A JSON or YAML document (CloudFormation short tags allowed) that must be a mapping."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    doc = parse_document(text, str(path), cfn_tags=True)
    if not isinstance(doc, dict):
        raise InputError(f"{path}: the document must be a JSON/YAML object")
    return doc


class _Tagged:
    """A CloudFormation short-form intrinsic (``!Ref X``) on its way to YAML."""

    __slots__ = ("tag", "value")

    def __init__(self, tag: str, value: Any) -> None:
        self.tag = tag
        self.value = value


def _short_form(obj: Any) -> Any:
    """``obj`` with every long-form intrinsic (``{"Ref": X}``, ``{"Fn::Sub": ...}``) as a tag."""
    if isinstance(obj, list):
        return [_short_form(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        ((key, value),) = obj.items()
        if key == "Ref" and isinstance(value, str):
            return _Tagged("!Ref", value)
        if (
            key == "Fn::GetAtt"
            and isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, str) for v in value)
        ):
            return _Tagged("!GetAtt", ".".join(value))
        if key.startswith("Fn::"):
            return _Tagged("!" + key.removeprefix("Fn::"), _short_form(value))
    return {k: _short_form(v) for k, v in obj.items()}


def dump_yaml(doc: dict[str, Any]) -> str:
    """A CloudFormation template as YAML with short tags (``!Ref``, ``!Sub``), the form people
    write; :func:`load_document` reads it back into the same dict."""
    import yaml

    class CfnDumper(yaml.SafeDumper):
        """SafeDumper that writes :class:`_Tagged` values as CloudFormation short tags."""

        def choose_scalar_style(self) -> str:
            # ``!Ref Name``, not ``!Ref 'Name'``: PyYAML quotes every explicitly tagged scalar,
            # although the tag alone decides how it is read.
            if self.analysis is None:
                self.analysis = self.analyze_scalar(self.event.value)
            a = self.analysis
            if (
                str(self.event.tag).startswith("!")
                and not self.event.style
                and a.allow_block_plain
                and not (a.empty or a.multiline)
            ):
                return ""
            return super().choose_scalar_style()

    def represent(dumper: yaml.SafeDumper, data: _Tagged) -> yaml.Node:
        if isinstance(data.value, list):
            return dumper.represent_sequence(data.tag, data.value)
        if isinstance(data.value, dict):
            return dumper.represent_mapping(data.tag, data.value)
        return dumper.represent_scalar(data.tag, str(data.value))

    CfnDumper.add_representer(_Tagged, represent)
    # Keys in the template's order; no line folding (a dashboard body is one long string).
    return yaml.dump(
        _short_form(doc),
        Dumper=CfnDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 30,
    )
