"""The code shows the system: ledger <- (API, worker) <- (rehearsal, benchmarks).

Three checks of the same rule, each catching what the others cannot:

* every ``import`` statement in the source (lazy ones inside functions included) names only
  packages of a lower layer;
* importing a package in a fresh interpreter loads only what its layer allows (this sees what
  the packages' own imports drag in, e.g. Flask through a helper);
* no import cycles between modules (e.g. the app factory and its views: the views read the
  app's state from ``sample_api.state``, never from ``sample_api.app``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ROOT

#: Package -> the packages of ours it may import. Not listed: may import nothing of ours.
ALLOWED: dict[str, set[str]] = {
    "points": set(),
    "telemetry": set(),
    "loadtest": set(),
    "alarms": {"telemetry"},
    "sample_api": {"points", "telemetry"},
    "worker": {"points", "telemetry"},
    "rehearsal": {"points", "telemetry", "sample_api", "worker", "alarms", "loadtest"},
    "benchmarks": {
        "points",
        "telemetry",
        "sample_api",
        "worker",
        "alarms",
        "loadtest",
        "rehearsal",
        "tests",
    },
}
OURS = set(ALLOWED) | {"tests"}

#: Third-party stacks a package must not load when imported (its extra may not have them).
NOT_LOADED: dict[str, set[str]] = {
    "points": {"flask", "werkzeug", "boto3", "botocore", "pyrate_limiter"},
    "telemetry": {"flask", "werkzeug", "boto3", "botocore"},
    "worker": {"flask", "werkzeug", "pyrate_limiter", "gunicorn"},
    "sample_api": {"boto3", "botocore", "locust", "yaml"},
    "alarms": {"flask", "werkzeug", "pyrate_limiter"},
    "loadtest": {"locust", "gevent", "flask"},
}


def _modules(package: str) -> Iterator[tuple[str, Path]]:
    root = ROOT / package
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULES = {name for package in ALLOWED for name, _ in _modules(package)}


def _imports(path: Path, name: str) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for each import in ``path``; relative imports resolved
    against ``name``. ``from a import b`` yields ``a.b`` when that is a module of ours (a
    submodule), else ``a``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule if submodule in MODULES else base), node.lineno
        elif isinstance(node, ast.Call) and _names_import(node.func) and node.args:
            # importlib.import_module("worker._sqs") / __import__("x"): an import all the same
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield first.value, node.lineno


def _names_import(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in ("import_module", "__import__")


def test_every_package_of_ours_has_a_layer() -> None:
    # a new top-level package nobody placed would be invisible to every check here
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages - OURS == set()


def test_the_import_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    # the checks below are only as good as this reader: an import it misses is allowed
    source = tmp_path / "probe.py"
    source.write_text(
        "import sample_api.app\n"
        "from worker import _sqs\n"
        "def later():\n"
        "    from rehearsal import runner\n"
        "    import importlib\n"
        "    importlib.import_module('alarms._rules')\n"
        "    __import__('loadtest')\n",
        encoding="utf-8",
    )
    found = {target for target, _ in _imports(source, "points.probe")}
    assert {"sample_api.app", "worker._sqs", "rehearsal.runner", "alarms._rules"} <= found
    assert "loadtest" in found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_source_imports_point_down_the_layers(package: str) -> None:
    assert list(_modules(package)), f"no modules found for {package}: the check would be empty"
    allowed = ALLOWED[package] | {package}
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for name, path in _modules(package)
        for target, line in _imports(path, name)
        if target.split(".")[0] in OURS and target.split(".")[0] not in allowed
    ]
    assert wrong == []


@pytest.mark.parametrize("package", ["rehearsal"])
def test_other_packages_are_used_through_their_public_api(package: str) -> None:
    """A package's ``_private`` modules are its own: others import what its ``__init__``
    exports (e.g. ``alarms.value_text``, not ``alarms._format``)."""
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for name, path in _modules(package)
        for target, line in _imports(path, name)
        if target.split(".")[0] in OURS
        and target.split(".")[0] != package
        and any(p.startswith("_") and not p.startswith("__") for p in target.split(".")[1:])
    ]
    assert wrong == []


PROBE = (
    "import importlib, json, sys; importlib.import_module(sys.argv[1]); "
    "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
)


@pytest.mark.parametrize(
    "module",
    [
        "points",
        "points.storage.sqlite",
        "telemetry",
        "worker",
        "worker.__main__",
        "sample_api",
        "alarms",
        "loadtest",
    ],
)
def test_importing_a_package_loads_only_its_layer(module: str) -> None:
    package = module.split(".")[0]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = set(json.loads(proc.stdout))
    assert loaded & OURS <= ALLOWED[package] | {package}
    assert loaded & NOT_LOADED[package] == set()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _module_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports, at module level or lazily inside a function
    (a lazy import still makes the two modules depend on each other: it only hides a cycle)."""
    graph: dict[str, set[str]] = {}
    for package in ALLOWED:
        for name, path in _modules(package):
            targets = {t for t, _ in _imports(path, name) if t in MODULES}
            graph[name] = targets - {name}
    return graph


#: Cycles known and being removed elsewhere; when one goes, delete it here (the test says so).
KNOWN_CYCLES: list[list[str]] = []


def test_the_cycle_finder_finds_a_cycle() -> None:
    # the shape sample_api had: the factory imported its views (lazily) and the views the factory
    graph = {"a.app": {"a.views"}, "a.views": {"a.app", "a.state"}, "a.state": set()}
    assert _cycles(graph) == [["a.app", "a.views"]]


def test_no_import_cycles_between_modules() -> None:
    assert _cycles(_module_graph()) == KNOWN_CYCLES


def _env_names() -> set[str]:
    """Every variable name the packages define in their ``environment_variables`` modules."""
    names: set[str] = set()
    for package in ALLOWED:
        path = ROOT / package / "environment_variables.py"
        if path.exists():
            module = __import__(f"{package}.environment_variables", fromlist=["_"])
            names |= {v for k, v in vars(module).items() if k.isupper() and isinstance(v, str)}
    return names


def _spelled_env_names(path: Path, names: set[str]) -> Iterator[tuple[str, int]]:
    """String literals naming a variable where the code reads or sets one: a dict key,
    ``env[...]``, the first argument of ``get``/``getenv``/``pop``/``setdefault``, or an item of
    a tuple, list or set of names (``for key in ("OTEL_...", ...): env.pop(key)``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        spots: list[ast.expr | None] = []
        if isinstance(node, ast.Dict):
            spots = list(node.keys)
        elif isinstance(node, ast.Tuple | ast.List | ast.Set):
            spots = list(node.elts)
        elif isinstance(node, ast.Subscript):
            spots = [node.slice]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("get", "getenv", "pop", "setdefault", "setenv", "delenv"):
                spots = [node.args[0]]
        for spot in spots:
            if isinstance(spot, ast.Constant) and spot.value in names:
                yield spot.value, spot.lineno


def test_environment_variable_names_are_imported_not_spelled() -> None:
    # issue: names defined once (as opentelemetry.sdk.environment_variables does); a typo in a
    # spelled name is a setting that silently keeps its default
    names = _env_names()
    assert {"POINTS_STORE", "APP_VERSION", "RATE_LIMIT_RPS", "QUEUE_URL", "BENCH_VARIANT"} <= names
    spelled = [
        f"{path.relative_to(ROOT)}:{line} spells {name!r}"
        for package in ALLOWED
        for module, path in _modules(package)
        if not module.endswith(".environment_variables")
        for name, line in _spelled_env_names(path, names)
    ]
    assert spelled == []
