"""A rule's tests beside it: `<rule file stem>.test.yml`, events and the matches expected.

    cases:
      - name: what the case shows
        matches: 1          # matches of the file's rules (see detectors.sigma.evaluate.matches)
        events:
          - {occurred_at: ..., action: ..., actor: {...}, ...}

Events are ProviderAction documents, normalized like ingest does; a missing `event_id`,
`account_id` or `actor` gets `<case>-<n>`, `A0001SELLER` and the seller. A detection rule that a
correlation uses without `generate: true` has no matches of its own. Each case runs alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from detectors.sigma import RuleError, RuleSet
from detectors.sigma.evaluate import matches
from detectors.sigma.load import rule_files
from pipeline.event import Event, normalize


@dataclass(frozen=True)
class CaseResult:
    file: str
    case: str
    expected: int
    found: int

    @property
    def passed(self) -> bool:
        return self.expected == self.found


def case_events(case: dict[str, Any]) -> list[Event]:
    slug = re.sub(r"[^A-Za-z0-9._:-]+", "-", str(case["name"]))[:60]
    out = []
    for n, raw in enumerate(case["events"]):
        doc = {
            "event_id": f"{slug}-{n}",
            "account_id": "A0001SELLER",
            "actor": {"type": "seller", "principal_id": "A0001SELLER-owner"},
            **raw,
        }
        out.append(normalize(doc))
    return out


def run_tests(folder: Path, ruleset: RuleSet) -> list[CaseResult]:
    """Every case of every rule file of `folder` that has tests; a rule file without tests is an
    error (each rule ships its tests)."""
    results = []
    for path in rule_files(folder):
        tests = path.with_name(f"{path.stem}.test.yml")
        if not tests.exists():
            raise RuleError(f"{path.name}: no tests beside it ({tests.name})")
        names = {n for n, r in ruleset.rules.items() if r.source == path} | {
            n for n, c in ruleset.correlations.items() if c.source == path
        }
        doc = yaml.safe_load(tests.read_text()) or {}
        for case in doc.get("cases", []):
            found = [m for m in matches(ruleset, case_events(case)) if m[0] in names]
            results.append(
                CaseResult(tests.name, str(case["name"]), int(case["matches"]), len(found))
            )
    return results
