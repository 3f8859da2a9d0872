"""Small, safe parsers (no ``eval``): metric-math arithmetic and composite alarm rules."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass


class ExpressionError(ValueError):
    """An expression or rule this evaluator cannot parse (or does not support)."""


# --- metric math ----------------------------------------------------------------------------

_MATH_TOKEN = re.compile(
    r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(.))"
)

MathFn = Callable[[Mapping[str, float | None]], float | None]

#: How deep parentheses, unary signs, powers and NOT may nest in an expression or alarm rule.
#: CloudWatch's length limits (2,048 characters for an expression, 10,240 for a rule) allow
#: thousands of levels; Python's recursion stops near 1,000.
MAX_NESTING = 100


def _power(base: float, exp: float) -> float:
    """``base ^ exp``; NaN (the datapoint dropped) where there is no real result, such as a
    negative base to a fractional power (Python would return a complex number)."""
    result = base**exp
    return float("nan") if isinstance(result, complex) else float(result)


def _tokens(text: str, pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = pattern.match(text, pos)
        if m is None:  # pragma: no cover - the last alternative matches any character
            raise ExpressionError(f"cannot read {text[pos:]!r}")
        pos = m.end()
        kinds = [i for i, g in enumerate(m.groups()) if g is not None]
        if not kinds:
            continue
        out.append((str(kinds[0]), m.group(kinds[0] + 1)))
    return out


@dataclass(frozen=True, slots=True)
class MathExpr:
    """A parsed arithmetic expression over metric ids: ``+ - * / ^``, unary minus, parentheses.

    Evaluated per datapoint: a missing input counts as 0 (CloudWatch's rule for arithmetic);
    a division by zero (or a non-finite result) drops the datapoint (returns ``None``).
    """

    text: str
    ids: frozenset[str]
    _fn: Callable[[Mapping[str, float]], float]

    def __call__(self, values: Mapping[str, float | None]) -> float | None:
        env = {k: (0.0 if values.get(k) is None else values[k]) for k in self.ids}
        try:
            result = self._fn(env)  # type: ignore[arg-type]
        except (ZeroDivisionError, OverflowError):
            return None
        if result != result or result in (float("inf"), float("-inf")):
            return None
        return result


def parse_math(text: str) -> MathExpr:
    """Parse a metric-math expression; :class:`ExpressionError` for anything unsupported."""
    toks = _tokens(text, _MATH_TOKEN)
    ids: set[str] = set()
    pos = 0

    def peek() -> tuple[str, str] | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(toks):
            raise ExpressionError(f"unexpected end of expression {text!r}")
        pos += 1
        return toks[pos - 1]

    depth = 0

    def nest(step: int) -> None:
        # Parentheses, unary signs and powers recurse (in parsing and in evaluation): a bound
        # keeps a hostile expression a clear error instead of a RecursionError.
        nonlocal depth
        depth += step
        if depth > MAX_NESTING:
            raise ExpressionError(f"expression nested more than {MAX_NESTING} levels deep")

    def expr() -> Callable:
        # A chain a + b - c ... is one loop, not a nest of closures as deep as it is long.
        first = term()
        rest: list[tuple[str, Callable]] = []
        while peek() in (("2", "+"), ("2", "-")):
            op = take()[1]
            rest.append((op, term()))
        if not rest:
            return first

        def chain(e: Mapping[str, float]) -> float:
            acc = first(e)
            for op, fn in rest:
                acc = acc + fn(e) if op == "+" else acc - fn(e)
            return acc

        return chain

    def term() -> Callable:
        first = power()
        rest: list[tuple[str, Callable]] = []
        while (t := peek()) and t[0] == "2" and t[1] in "*/":
            op = take()[1]
            rest.append((op, power()))
        if not rest:
            return first

        def chain(e: Mapping[str, float]) -> float:
            acc = first(e)
            for op, fn in rest:
                acc = acc * fn(e) if op == "*" else acc / fn(e)
            return acc

        return chain

    def power() -> Callable:
        base = unary()
        if (t := peek()) and t == ("2", "^"):
            take()
            nest(1)
            exp = power()  # right associative
            nest(-1)
            return lambda e: _power(base(e), exp(e))
        return base

    def unary() -> Callable:
        t = peek()
        if t == ("2", "-"):
            take()
            nest(1)
            inner = unary()
            nest(-1)
            return lambda e: -inner(e)
        if t == ("2", "+"):
            take()
            nest(1)
            inner = unary()
            nest(-1)
            return inner
        return atom()

    def atom() -> Callable:
        kind, value = take()
        if kind == "0":
            number = float(value)
            return lambda e: number
        if kind == "1":
            if (t := peek()) and t == ("2", "("):
                raise ExpressionError(f"function {value}() is not supported (arithmetic only)")
            if not value[0].islower():
                raise ExpressionError(f"{value!r} is not a metric id (ids start lower-case)")
            ids.add(value)
            return lambda e: e[value]
        if value == "(":
            nest(1)
            inner = expr()
            nest(-1)
            if take() != ("2", ")"):
                raise ExpressionError(f"missing ')' in {text!r}")
            return inner
        raise ExpressionError(f"unexpected {value!r} in {text!r}")

    if not toks:
        raise ExpressionError("empty expression")
    fn = expr()
    if pos != len(toks):
        raise ExpressionError(f"unexpected {toks[pos][1]!r} in {text!r}")
    return MathExpr(text, frozenset(ids), fn)


# --- composite alarm rules ------------------------------------------------------------------

_RULE_TOKEN = re.compile(
    r'\s*(?:(ALARM|OK|INSUFFICIENT_DATA)\s*\(\s*(?:"([^"]*)"|([^()\s"]+))\s*\)'
    r"|(AND|OR|NOT|TRUE|FALSE)\b|(\()|(\))|(\S+))"
)

Rule = tuple  # ("state", STATE, name) | ("const", bool) | ("and"|"or", a, b, ...) | ("not", a)


def _alarm_name(ref: str) -> str:
    # A rule may name an alarm by ARN: arn:aws:cloudwatch:region:account:alarm:NAME
    return ref.split(":alarm:", 1)[1] if ":alarm:" in ref else ref


def parse_rule(text: str) -> Rule:
    """Parse an AlarmRule: ALARM()/OK()/INSUFFICIENT_DATA(), TRUE, FALSE, AND, OR, NOT, ( )."""
    toks: list[tuple[str, ...]] = []
    pos = 0
    while pos < len(text.rstrip()):
        m = _RULE_TOKEN.match(text, pos)
        if m is None:  # pragma: no cover
            raise ExpressionError(f"cannot read rule at {text[pos:]!r}")
        pos = m.end()
        state, quoted, bare, word, lp, rp, other = m.groups()
        if state:
            toks.append(("state", state, _alarm_name(quoted if quoted is not None else bare)))
        elif word:
            toks.append(("word", word))
        elif lp:
            toks.append(("(",))
        elif rp:
            toks.append((")",))
        elif other:
            raise ExpressionError(f"unsupported token {other!r} in alarm rule")
    i = 0

    def peek() -> tuple[str, ...] | None:
        return toks[i] if i < len(toks) else None

    def take() -> tuple[str, ...]:
        nonlocal i
        if i >= len(toks):
            raise ExpressionError(f"unexpected end of rule {text!r}")
        i += 1
        return toks[i - 1]

    depth = 0

    def nest(step: int) -> None:
        nonlocal depth
        depth += step
        if depth > MAX_NESTING:
            raise ExpressionError(f"alarm rule nested more than {MAX_NESTING} levels deep")

    def or_() -> Rule:
        # n-ary: a rule OR-ing hundreds of alarms is one node, not a nest as deep as it is long
        parts = [and_()]
        while peek() == ("word", "OR"):
            take()
            parts.append(and_())
        return parts[0] if len(parts) == 1 else ("or", *parts)

    def and_() -> Rule:
        parts = [not_()]
        while peek() == ("word", "AND"):
            take()
            parts.append(not_())
        return parts[0] if len(parts) == 1 else ("and", *parts)

    def not_() -> Rule:
        if peek() == ("word", "NOT"):
            take()
            nest(1)
            inner = not_()
            nest(-1)
            return ("not", inner)
        return atom()

    def atom() -> Rule:
        t = take()
        if t[0] == "state":
            return t
        if t == ("word", "TRUE"):
            return ("const", True)
        if t == ("word", "FALSE"):
            return ("const", False)
        if t == ("(",):
            nest(1)
            inner = or_()
            nest(-1)
            if take() != (")",):
                raise ExpressionError(f"missing ')' in rule {text!r}")
            return inner
        raise ExpressionError(f"unexpected {t[-1]!r} in rule {text!r}")

    if not toks:
        raise ExpressionError("empty alarm rule")
    rule = or_()
    if i != len(toks):
        raise ExpressionError(f"unexpected {toks[i][-1]!r} in rule {text!r}")
    return rule


def rule_names(rule: Rule) -> set[str]:
    """Every alarm name a rule refers to."""
    if rule[0] == "state":
        return {rule[2]}
    if rule[0] == "const":
        return set()
    return set().union(*(rule_names(r) for r in rule[1:]))


def eval_rule(rule: Rule, states: Mapping[str, str]) -> bool:
    """True when the rule holds; an alarm not in ``states`` counts as INSUFFICIENT_DATA."""
    kind = rule[0]
    if kind == "state":
        return states.get(rule[2], "INSUFFICIENT_DATA") == rule[1]
    if kind == "const":
        return rule[1]
    if kind == "not":
        return not eval_rule(rule[1], states)
    if kind == "and":
        return all(eval_rule(r, states) for r in rule[1:])
    return any(eval_rule(r, states) for r in rule[1:])
