"""``python -m points guard``: refuse a one-way door between two ECS task definitions.

    aws ecs describe-task-definition --task-definition "$RUNNING_ARN" > running.json
    python -m points guard --running running.json --candidate taskdef.json

Each task definition declares the ledger formats its app reads and writes in the app
container's environment (``POINTS_FORMATS_READ``, ``POINTS_FORMAT_WRITE``: what the app itself
reads); a container that does not set them runs with the app's defaults (reads 1, writes 1).
Docker labels (``points.formats.read``, ``points.format.write``) may repeat the declaration and
must then agree with what the app runs with (the app never reads labels, so a label alone would
describe an app that does not exist). A variable the guard cannot see (from ``secrets``, or
unset while the container has ``environmentFiles``) is refused: bad input. The rule is
:func:`points.formats.check_transition`: the running version is the rollback target, so it must
read what the candidate writes, and the candidate must read what the running version writes.
The same command judges a rollback: ``--running`` the version in service, ``--candidate`` the
rollback target.

Input: ``register-task-definition`` input (``deploy/taskdef.json`` rendered) or
``describe-task-definition`` output (``{"taskDefinition": {...}}``). Standard library only, so it
runs in CodeBuild before the deployment is created.

Exit status: 0 safe (one line on stdout), 3 one-way door (one line on stderr), 2 bad input
(one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from points.environment_variables import POINTS_FORMAT_WRITE, POINTS_FORMATS_READ
from points.formats import (
    DEFAULT_FORMATS,
    Formats,
    check_transition,
    formats_from,
    parse_format_list,
)
from points.settings import ConfigError, one_line

#: Exit status of a one-way door (2 is bad input, as for every CLI here).
EXIT_ONE_WAY_DOOR = 3
#: Docker labels that may carry the declaration instead of the environment.
LABELS = {POINTS_FORMATS_READ: "points.formats.read", POINTS_FORMAT_WRITE: "points.format.write"}
#: What the app runs with when its environment does not set a variable.
DEFAULT_ENV = DEFAULT_FORMATS.to_env()


class GuardInputError(ValueError):
    """A task definition the guard cannot judge; reported on one line, exit status 2."""


#: Largest input read, in bytes. ECS refuses task definitions over 64 KiB; describe output adds
#: a few fields. Bounded so that an endless input (``--candidate /dev/zero``) ends with exit 2
#: instead of reading until memory runs out.
MAX_INPUT_BYTES = 1024 * 1024


def _read(path: Path) -> str:
    with path.open("rb") as stream:
        data = stream.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise GuardInputError(
            f"{str(path)!r} is larger than {MAX_INPUT_BYTES // 1024} KiB: not a task definition"
        )
    return data.decode("utf-8")


def load_task_definition(path: Path) -> dict[str, Any]:
    """The task definition in ``path`` (either shape, at most :data:`MAX_INPUT_BYTES`);
    GuardInputError otherwise."""
    try:
        data = json.loads(_read(path))
    except OSError as exc:
        raise GuardInputError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise GuardInputError(f"{str(path)!r} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise GuardInputError(f"{str(path)!r} is not JSON: {exc.msg} (line {exc.lineno})") from None
    except RecursionError:
        raise GuardInputError(f"{str(path)!r} is nested too deeply") from None
    if isinstance(data, dict) and isinstance(data.get("taskDefinition"), dict):
        data = data["taskDefinition"]
    if not isinstance(data, dict) or not isinstance(data.get("containerDefinitions"), list):
        raise GuardInputError(f"{str(path)!r} is not a task definition (no containerDefinitions)")
    if not any(isinstance(c, dict) for c in data["containerDefinitions"]):
        # ECS requires at least one; judging "no app" as the defaults would call it safe.
        raise GuardInputError(f"{str(path)!r} is not a task definition (no container in it)")
    return data


def _declared(container: Mapping[str, Any], where: str) -> dict[str, str]:
    """The format variables a container declares (environment, then labels; both must agree)."""
    env = container.get("environment") or []
    labels = container.get("dockerLabels") or {}
    if not isinstance(env, list) or not isinstance(labels, dict):
        raise GuardInputError(f"{where}: environment must be a list and dockerLabels an object")
    values: dict[str, str] = {}
    for pair in env:
        if isinstance(pair, dict) and isinstance(pair.get("name"), str) and pair["name"] in LABELS:
            name, value = pair["name"], str(pair.get("value", ""))
            # Which of two entries the container gets is not the guard's to guess.
            if name in values and not _same(name, values[name], value):
                raise GuardInputError(
                    f"{where}: {name} is set twice, to {_short(values[name])} and {_short(value)}"
                )
            values[name] = value
    secrets = container.get("secrets") or []
    if not isinstance(secrets, list):  # ECS refuses it; read as "none", a secret would hide
        raise GuardInputError(f"{where}: secrets must be a list")
    hidden = [
        s["name"]
        for s in secrets
        if isinstance(s, dict) and isinstance(s.get("name"), str) and s["name"] in LABELS
    ]
    if hidden:
        # The value lives in Secrets Manager / Parameter Store: what the app will run with is
        # not in the task definition, so "safe" could not be said about it.
        raise GuardInputError(
            f"{where}: {hidden[0]} comes from secrets, which the guard cannot read; "
            "declare it in the container's environment"
        )
    for name, label in LABELS.items():
        if label not in labels:
            continue
        # Unset in the environment, the app runs with the default, whatever a label says.
        actual = values.get(name, DEFAULT_ENV[name])
        if not _same(name, actual, str(labels[label])):
            said = f"{name}={actual!r}" if name in values else f"{name} unset (default {actual!r})"
            raise GuardInputError(
                f"{where}: {said} and label {label}={_short(labels[label])} disagree "
                "(the app reads only its environment)"
            )
    return values


def _short(value: object) -> str:
    """``repr(value)``, at most 80 characters (a label may hold anything)."""
    return one_line(repr(str(value)), 80)


def _visible(container: Mapping[str, Any], declared: Mapping[str, str], where: str) -> None:
    """GuardInputError if the app ``container`` may get a format variable from a file."""
    if not container.get("environmentFiles"):
        return
    unseen = [name for name in LABELS if name not in declared]
    if unseen:
        # ECS: the environment wins over environment files, so only an unset variable is unknown.
        raise GuardInputError(
            f"{where}: container {container.get('name')!r}: {unseen[0]} is not in the "
            "environment and the container has environmentFiles, which the guard cannot read; "
            "declare it in the environment (or name the app with --container)"
        )


def _same(name: str, a: str, b: str) -> bool:
    """Whether two declarations of ``name`` mean the same (``1,2`` and ``2,1`` do)."""
    try:  # a single number parses as a one-item list
        return parse_format_list(a, name) == parse_format_list(b, name)
    except ConfigError:
        return a.strip() == b.strip()  # the bad value is reported when it is parsed


def formats_of(task: Mapping[str, Any], where: str, container: str | None = None) -> Formats:
    """The formats the app container of ``task`` declares (``container`` names it; otherwise the
    one container that declares formats, or the defaults when none does)."""
    containers = [c for c in task["containerDefinitions"] if isinstance(c, dict)]
    if container is not None:
        chosen = [c for c in containers if c.get("name") == container]
        if not chosen:
            names = ", ".join(str(c.get("name")) for c in containers)
            raise GuardInputError(f"{where}: no container named {container!r} (it has {names})")
        declared = _declared(chosen[0], f"{where}: container {container!r}")
    else:
        found = {}
        for c in containers:
            values = _declared(c, f"{where}: container {c.get('name')!r}")
            if values:
                found[str(c.get("name"))] = values
        if len(found) > 1:
            raise GuardInputError(
                f"{where}: containers {', '.join(sorted(found))} all declare ledger formats; "
                "name the app's with --container"
            )
        declared = next(iter(found.values()), {})
        chosen = [c for c in containers if str(c.get("name")) in found] or containers
    for app in chosen:
        _visible(app, declared, where)
    if not declared:
        return DEFAULT_FORMATS
    try:
        return formats_from(declared)
    except ConfigError as exc:
        raise GuardInputError(f"{where}: {exc}") from None


def _name(task: Mapping[str, Any], path: Path, role: str) -> str:
    family, revision = task.get("family"), task.get("revision")
    label = f"{family}:{revision}" if family and revision else str(family or path.name)
    # A name with a line break or a terminal escape would break the one-line verdict.
    return f"{role} {label if label.isprintable() and len(label) <= 300 else _short(label)}"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations ("--min" for "--min-healthy-percent"), in subcommands too (they
        # are this class): a typo or a later option must not silently change the meaning.
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"guard: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m points guard",
        description=(
            "Exit 3 if replacing the running task definition with the candidate is a one-way door "
            "for the ledger (the rollback target could not read what the candidate writes, or "
            "the other way round); 0 if safe; 2 for bad input."
        ),
    )
    parser.add_argument("--running", type=Path, required=True, metavar="FILE",
                        help="the task definition in service (the rollback target)")  # fmt: skip
    parser.add_argument("--candidate", type=Path, required=True, metavar="FILE",
                        help="the task definition about to be deployed (or rolled back to)")  # fmt: skip
    parser.add_argument("--container", default=None, metavar="NAME",
                        help="the app container (default: the one that declares formats)")  # fmt: skip
    parser.add_argument("--store-formats", default=None, metavar="LIST",
                        help="formats already in the store (its marker), e.g. 1,2; a format this "
                        "build does not know (a later release's) is a one-way door")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        store: set[int] = set()
        if args.store_formats is not None:  # given empty: bad input, not "unknown"
            # "1,1" is likelier a typo of "1,2" (a door) than meant: refused, not guessed
            store = set(parse_format_list(args.store_formats, "--store-formats", once=True))
        running_task = load_task_definition(args.running)
        candidate_task = load_task_definition(args.candidate)
        running_name = _name(running_task, args.running, "running")
        candidate_name = _name(candidate_task, args.candidate, "candidate")
        decision = check_transition(
            formats_of(running_task, running_name, args.container),
            formats_of(candidate_task, candidate_name, args.container),
            running_name=running_name,
            candidate_name=candidate_name,
            store_formats=store,
        )
    except ConfigError as exc:
        print(f"guard: error: {exc}", file=sys.stderr)
        return 2
    except GuardInputError as exc:
        print(f"guard: error: {exc}", file=sys.stderr)
        return 2
    if not decision.ok:
        print(f"guard: {decision.message}", file=sys.stderr)
        return EXIT_ONE_WAY_DOOR
    print(f"guard: {decision.message}")
    return 0
