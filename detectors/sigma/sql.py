"""A Sigma rule as ClickHouse SQL over `audit.events`: what `partnerwatch rules hunt` runs.

The same parsed condition tree as the live evaluator (detectors/sigma/load.py), compiled to a
boolean expression over the table's columns (`FIELDS`): strings as anchored RE2 patterns
(`match`, case-insensitive unless `|cased`), numbers and comparisons through `toFloat64OrNull`,
`|cidr` with `isIPAddressInRange`, null and `|exists` as the empty string the loader stores for
an absent field. A correlation groups by its fields and by windows of its timespan aligned to the
epoch (milliseconds, integer division), with the same thresholds as the stream. The queries take
`{since:DateTime64(3)}` and `{until:DateTime64(3)}` and return rows in the terms of
`detectors.sigma.evaluate.matches`: `(event_id)` for a detection rule, `(group values...,
window start ms)` for a correlation.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from detectors.sigma import FIELDS, Correlation, Rule, RuleError, RuleSet
from detectors.sigma.load import string_regex

PERIOD = "occurred_at >= {since:DateTime64(3)} AND occurred_at < {until:DateTime64(3)}"


def literal(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def condition(node: Any) -> str:
    from sigma.conditions import (
        ConditionAND,
        ConditionFieldEqualsValueExpression,
        ConditionNOT,
        ConditionOR,
    )

    if isinstance(node, ConditionAND):
        return "(" + " AND ".join(condition(a) for a in node.args) + ")"
    if isinstance(node, ConditionOR):
        return "(" + " OR ".join(condition(a) for a in node.args) + ")"
    if isinstance(node, ConditionNOT):
        return f"(NOT {condition(node.args[0])})"
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _value(FIELDS[node.field][1], node.value)
    raise RuleError(f"{type(node).__name__} cannot be compiled to SQL")


def _value(column: str, value: Any) -> str:
    from sigma.types import (
        SigmaCasedString,
        SigmaCIDRExpression,
        SigmaCompareExpression,
        SigmaExists,
        SigmaNull,
        SigmaNumber,
        SigmaRegularExpression,
        SigmaRegularExpressionFlag,
        SigmaString,
    )

    if isinstance(value, SigmaString):
        flags = "(?s)" if isinstance(value, SigmaCasedString) else "(?is)"
        return f"match({column}, {literal(flags + '^(?:' + string_regex(value) + ')$')})"
    if isinstance(value, SigmaNumber):
        return f"(toFloat64OrNull({column}) = {float(value.number)!r})"
    if isinstance(value, SigmaNull):
        return f"({column} = '')"
    if isinstance(value, SigmaExists):
        return f"({column} != '')" if value.exists else f"({column} = '')"
    if isinstance(value, SigmaRegularExpression):
        inline = "".join(
            {
                SigmaRegularExpressionFlag.IGNORECASE: "i",
                SigmaRegularExpressionFlag.MULTILINE: "m",
                SigmaRegularExpressionFlag.DOTALL: "s",
            }[f]
            for f in sorted(value.flags, key=lambda f: f.name)
        )
        return f"match({column}, {literal((f'(?{inline})' if inline else '') + value.regexp.to_plain())})"
    if isinstance(value, SigmaCIDRExpression):
        valid = f"(isIPv4String({column}) OR isIPv6String({column}))"
        safe = f"if({valid}, {column}, '255.255.255.255')"
        return f"({valid} AND isIPAddressInRange({safe}, {literal(str(value.cidr))}))"
    if isinstance(value, SigmaCompareExpression):
        op = {"LT": "<", "LTE": "<=", "GT": ">", "GTE": ">="}[str(value.op.name)]
        return f"(toFloat64OrNull({column}) {op} {float(value.number.number)!r})"
    raise RuleError(f"a {type(value).__name__} value cannot be compiled to SQL")


def detection_query(rule: Rule) -> str:
    # Columns come from FIELDS, values through `literal`; hunts run read-only behind the SQL guard.
    return f"SELECT event_id FROM audit.events WHERE {PERIOD} AND {condition(rule.condition)} ORDER BY occurred_at, event_id"  # noqa: S608


def correlation_query(c: Correlation, ruleset: RuleSet) -> str:
    size = c.seconds * 1000
    conds = [condition(ruleset.rules[r].condition) for r in c.rules]
    groups = [FIELDS[f][1] for f in c.group_by]
    window = f"intDiv(toUnixTimestamp64Milli(occurred_at), {size}) * {size}"
    select = ", ".join([*groups, f"{window} AS window_ms"])
    if c.kind == "event_count":
        having = f"count() >= {c.threshold}"
    elif c.kind == "value_count":
        having = f"uniqExact({FIELDS[c.value_field or ''][1]}) >= {c.threshold}"
    else:
        having = " AND ".join(f"countIf({cond}) > 0" for cond in conds)
        if c.kind == "temporal_ordered":
            firsts = [f"minIf(occurred_at, {cond})" for cond in conds]
            having += "".join(f" AND {a} <= {b}" for a, b in itertools.pairwise(firsts))
    group_by = ", ".join([*groups, "window_ms"])
    return (  # columns from FIELDS, values through `literal` (see detection_query)
        f"SELECT {select} FROM audit.events WHERE {PERIOD} AND ({' OR '.join(conds)})"  # noqa: S608
        f" GROUP BY {group_by} HAVING {having} ORDER BY {group_by}"
    )


def query(name: str, ruleset: RuleSet) -> str:
    """The hunt query of a rule or correlation of `ruleset`."""
    if name in ruleset.rules:
        return detection_query(ruleset.rules[name])
    if name in ruleset.correlations:
        return correlation_query(ruleset.correlations[name], ruleset)
    raise RuleError(f"no rule {name!r} (rules: {', '.join(ruleset.names)})")


def is_compilable(text: str) -> bool:
    """For tests: the query names only the audit.events table."""
    return re.findall(r"\bFROM\s+([\w.]+)", text) == ["audit.events"]
