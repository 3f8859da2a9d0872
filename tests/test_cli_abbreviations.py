"""Every command line of ours refuses abbreviated options, in subcommands too.

argparse takes a unique prefix of a long option by default (``--min`` for
``--min-healthy-percent``): a typo then runs with a meaning nobody wrote, and a later option
starting the same way silently changes what an old command line does. Refused: exit status 2,
one line on stderr naming the abbreviation.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from alarms._io import InputError
from tests.support.processes import ROOT


def _deploy_script(name: str) -> Callable[[], argparse.ArgumentParser]:
    def build() -> argparse.ArgumentParser:
        spec = importlib.util.spec_from_file_location(
            f"_cli_{name}", ROOT / "deploy" / f"{name}.py"
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.build_parser()

    return build


def _builder(module: str, function: str = "build_parser") -> Callable[[], argparse.ArgumentParser]:
    def build() -> argparse.ArgumentParser:
        made = getattr(importlib.import_module(module), function)()
        return made[0] if isinstance(made, tuple) else made  # worker: (parser, subcommands)

    return build


#: Source file that builds a parser -> how the test gets it.
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "alarms/_cli.py": _builder("alarms._cli", "_parser"),
    "deploy/point_alarms.py": _deploy_script("point_alarms"),
    "deploy/render_revision.py": _deploy_script("render_revision"),
    "points/guard.py": _builder("points.guard"),
    "points/storage/dynamodb.py": _builder("points.storage.dynamodb"),
    "rehearsal/__main__.py": _builder("rehearsal.__main__"),
    "rehearsal/__main__.py pipeline": _builder("rehearsal.__main__", "build_pipeline_parser"),
    "rehearsal/compare.py": _builder("rehearsal.compare"),
    "rehearsal/judge_cli.py": _builder("rehearsal.judge_cli"),
    "sample_api/dev_tokens.py": _builder("sample_api.dev_tokens"),
    "worker/__main__.py": _builder("worker.__main__", "_parser"),
}


def _builds_a_parser(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("ArgumentParser", "Parser", "_Parser", "add_subparsers"):
                return True
    return False


def test_every_parser_in_the_repo_is_checked() -> None:
    sources = [
        p
        for p in ROOT.rglob("*.py")
        if not {".venv", "tests", "out", "build"} & set(p.relative_to(ROOT).parts)
    ]
    building = {str(p.relative_to(ROOT)) for p in sources if _builds_a_parser(p)}
    assert building, "the scan found no parser at all: it would check nothing"
    assert building == {key.split()[0] for key in PARSERS}


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """``(subcommand words, parser)`` for the parser and every subcommand's, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def _abbreviations(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str]]:
    """``(option, a prefix only it starts with)`` for each long option that has one."""
    options = [o for o in parser._option_string_actions if o.startswith("--")]
    for option in options:
        for end in range(3, len(option)):
            prefix = option[:end]
            if [o for o in options if o.startswith(prefix)] == [option]:
                yield option, prefix
                break


def _cases() -> Iterator[tuple[str, tuple[str, ...], str, str]]:
    for key, build in PARSERS.items():
        for words, parser in _parsers(build()):
            for option, prefix in _abbreviations(parser):
                yield key, words, option, prefix


CASES = list(_cases())


def test_the_cases_cover_every_parser_and_subcommand() -> None:
    # a parser with no long option would pass unseen; each of ours has some
    covered = {(key, words) for key, words, _, _ in CASES}
    every = {(key, words) for key, build in PARSERS.items() for words, _ in _parsers(build())}
    assert every - covered == set()
    assert len(CASES) > 50


@pytest.mark.parametrize(
    ("key", "words", "option", "prefix"),
    CASES,
    ids=[f"{k}:{' '.join(w) or '-'}:{p}" for k, w, _, p in CASES],
)
def test_a_unique_prefix_of_a_long_option_is_refused(
    key: str,
    words: tuple[str, ...],
    option: str,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = PARSERS[key]()
    # Nothing else may be what is refused: no argument is required for this check.
    for _, each in _parsers(parser):
        for action in each._actions:
            action.required = False
    try:
        parser.parse_args([*words, prefix])
    except SystemExit as exc:
        err = capsys.readouterr().err
        assert exc.code == 2
        assert err.count("\n") == 1 and err.endswith("\n"), err
        message = err
    except InputError as exc:  # alarms: main() prints it as one line, exit 2
        message = str(exc)
    else:
        pytest.fail(f"{prefix} was taken for {option}")
    assert f"unrecognized arguments: {prefix}" in message
