"""Sigma files -> a `RuleSet`: parse with pySigma, check what PartnerWatch can run, compile.

Every `*.yml` file of a folder (not `*.test.yml`) is read; one file may hold several rules
(YAML documents). A rule must use the PartnerWatch log source and only `FIELDS`; its name is its
Sigma `name`, or the file stem for a file with a single rule. Errors name the file and the rule.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detectors.sigma import FIELDS, LOGSOURCE, Correlation, Rule, RuleError, RuleSet, field_value
from pipeline.event import Event

Matcher = Callable[[Event], bool]
_CONDITIONS = ("gt", "gte")
_KINDS = ("event_count", "value_count", "temporal", "temporal_ordered")


def signature(folder: Path) -> tuple[Any, ...]:
    """What changes when a rule file changes (hot reload compares it)."""
    return tuple(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.yml"))
    )


def rule_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("*.yml")) if not p.name.endswith(".test.yml")]


def load(folder: Path) -> RuleSet:
    """Every rule of `folder`, compiled; raises RuleError for the first rule it cannot run."""
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaError

    if not folder.is_dir():
        raise RuleError(f"{folder}: not a folder of Sigma rules")
    ruleset = RuleSet(signature=signature(folder))
    parsed: list[tuple[Path, Any]] = []
    for path in rule_files(folder):
        try:
            collection = SigmaCollection.from_yaml(path.read_text(), collect_errors=False)
        except SigmaError as exc:
            raise RuleError(f"{path.name}: {exc}") from None
        items = list(collection)
        for item in items:
            parsed.append((path, item if len(items) > 1 else _named(item, path)))
    by_name: dict[str, Any] = {}
    for path, item in parsed:
        name = _name_of(item, path)
        if name in by_name:
            raise RuleError(f"{path.name}: rule name {name} is used twice")
        by_name[name] = item
    from sigma.collection import SigmaCollection as Collection

    everything = Collection([item for _, item in parsed])
    try:
        everything.resolve_rule_references()
    except SigmaError as exc:
        raise RuleError(f"{folder}: {exc}") from None
    referenced: dict[str, bool] = {}
    for path, item in parsed:
        if isinstance(item, SigmaCorrelationRule):
            correlation = _correlation(item, path)
            ruleset.correlations[correlation.name] = correlation
            for name in correlation.rules:
                referenced[name] = referenced.get(name, False) or bool(item.generate)
    for path, item in parsed:
        if not isinstance(item, SigmaCorrelationRule):
            rule = _rule(item, path)
            if rule.name in referenced:
                rule.generate = referenced[rule.name]
            ruleset.rules[rule.name] = rule
    for correlation in ruleset.correlations.values():
        missing = [r for r in correlation.rules if r not in ruleset.rules]
        if missing:
            raise RuleError(
                f"{correlation.source.name}: {correlation.name} correlates unknown rules {missing}"
            )
    return ruleset


def _named(item: Any, path: Path) -> Any:
    if getattr(item, "name", None) is None:
        item.name = path.stem
    return item


def _name_of(item: Any, path: Path) -> str:
    name = getattr(item, "name", None)
    if not name:
        raise RuleError(f"{path.name}: a file with several rules must give each a `name`")
    if not re.fullmatch(r"[a-z0-9_]+", str(name)):
        raise RuleError(f"{path.name}: rule name {name!r} must be lower case letters, digits and _")
    return str(name)


def _level(item: Any) -> str:
    level = str(item.level.name).lower() if item.level is not None else "medium"
    return {"informational": "info"}.get(level, level)


def _rule(item: Any, path: Path) -> Rule:
    where = f"{path.name}: {item.name}"
    source = item.logsource
    if (source.product, source.service) != (LOGSOURCE["product"], LOGSOURCE["service"]):
        raise RuleError(
            f"{where}: logsource must be product {LOGSOURCE['product']}, service {LOGSOURCE['service']}"
        )
    conditions = item.detection.parsed_condition
    if len(conditions) != 1:
        raise RuleError(f"{where}: exactly one condition")
    try:
        tree = conditions[0].parse()
    except Exception as exc:
        raise RuleError(f"{where}: {exc}") from None
    return Rule(
        name=str(item.name),
        title=str(item.title),
        level=_level(item),
        source=path,
        matches=_compile(tree, where),
        condition=tree,
    )


def _correlation(item: Any, path: Path) -> Correlation:
    where = f"{path.name}: {item.name}"
    kind = str(item.type.name).lower()
    if kind not in _KINDS:
        raise RuleError(f"{where}: correlation type {kind} is not supported ({', '.join(_KINDS)})")
    if item.aliases and item.aliases.aliases:
        raise RuleError(f"{where}: field aliases are not supported")
    group_by = list(item.group_by or [])
    for name in group_by:
        if name not in FIELDS:
            raise RuleError(f"{where}: group-by field {name} is not a PartnerWatch field")
    condition = item.condition
    threshold = len(item.rules)
    value_field = None
    if kind in ("event_count", "value_count"):
        op = str(condition.op.name).lower()
        if op not in _CONDITIONS:
            raise RuleError(
                f"{where}: condition {op} cannot be decided while events stream; use gt or gte"
            )
        threshold = int(condition.count) + (1 if op == "gt" else 0)
        if kind == "value_count":
            value_field = condition.fieldref
            if value_field not in FIELDS:
                raise RuleError(
                    f"{where}: value_count field {value_field} is not a PartnerWatch field"
                )
    return Correlation(
        name=str(item.name),
        title=str(item.title),
        level=_level(item),
        source=path,
        kind=kind,
        rules=[str(ref.reference) for ref in item.rules],
        group_by=group_by,
        seconds=int(item.timespan.seconds),
        threshold=threshold,
        value_field=value_field,
    )


# -- the condition tree as a predicate on events --------------------------------------------------


def _compile(node: Any, where: str) -> Matcher:
    from sigma.conditions import (
        ConditionAND,
        ConditionFieldEqualsValueExpression,
        ConditionNOT,
        ConditionOR,
    )

    if isinstance(node, ConditionAND):
        parts = [_compile(a, where) for a in node.args]
        return lambda e: all(p(e) for p in parts)
    if isinstance(node, ConditionOR):
        parts = [_compile(a, where) for a in node.args]
        return lambda e: any(p(e) for p in parts)
    if isinstance(node, ConditionNOT):
        inner = _compile(node.args[0], where)
        return lambda e: not inner(e)
    if isinstance(node, ConditionFieldEqualsValueExpression):
        if node.field not in FIELDS:
            raise RuleError(
                f"{where}: field {node.field} is not a PartnerWatch field ({', '.join(FIELDS)})"
            )
        test = value_test(node.value, where)
        name = node.field
        return lambda e: test(field_value(e, name))
    raise RuleError(
        f"{where}: {type(node).__name__} (keyword searches) is not supported: name a field"
    )


def value_test(value: Any, where: str) -> Callable[[str], bool]:
    """A test of one stored value (a string, '' when absent) against a Sigma value."""
    from sigma.types import (
        SigmaCasedString,
        SigmaCIDRExpression,
        SigmaCompareExpression,
        SigmaExists,
        SigmaNull,
        SigmaNumber,
        SigmaRegularExpression,
        SigmaString,
    )

    if isinstance(value, SigmaString):
        flags = 0 if isinstance(value, SigmaCasedString) else re.IGNORECASE
        pattern = re.compile(string_regex(value), flags | re.DOTALL)
        return lambda v: pattern.fullmatch(v) is not None
    if isinstance(value, SigmaNumber):
        number = float(value.number)
        return lambda v: _number(v) == number
    if isinstance(value, SigmaNull):
        return lambda v: v == ""
    if isinstance(value, SigmaExists):
        return (lambda v: v != "") if value.exists else (lambda v: v == "")
    if isinstance(value, SigmaRegularExpression):
        regex = re.compile(value.regexp.to_plain(), _regex_flags(value))
        return lambda v: regex.search(v) is not None
    if isinstance(value, SigmaCIDRExpression):
        network = ipaddress.ip_network(value.cidr, strict=False)
        return lambda v: _in_network(v, network)
    if isinstance(value, SigmaCompareExpression):
        bound = float(value.number.number)
        op = str(value.op.name)
        compare = {
            "LT": float.__lt__,
            "LTE": float.__le__,
            "GT": float.__gt__,
            "GTE": float.__ge__,
        }[op]
        return lambda v: (n := _number(v)) is not None and compare(n, bound)
    raise RuleError(f"{where}: a {type(value).__name__} value is not supported")


def string_regex(value: Any) -> str:
    """A Sigma string with wildcards as an anchored-by-fullmatch regex body (RE2 compatible)."""
    from sigma.types import SpecialChars

    out = []
    for part in value.s:
        if part == SpecialChars.WILDCARD_MULTI:
            out.append(".*")
        elif part == SpecialChars.WILDCARD_SINGLE:
            out.append(".")
        else:
            out.append(re2_escape(str(part)))
    return "".join(out)


def re2_escape(text: str) -> str:
    """`text` as a literal in Python's `re` and in RE2 (ClickHouse's `match`) alike."""
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", text)


def _regex_flags(value: Any) -> int:
    from sigma.types import SigmaRegularExpressionFlag

    flags = 0
    for flag in value.flags:
        flags |= {
            SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
            SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
            SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
        }[flag]
    return flags


def _number(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


def _in_network(v: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        address = ipaddress.ip_address(v)
    except ValueError:
        return False
    return address.version == network.version and address in network
