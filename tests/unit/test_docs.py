"""The docs pages document what the code does: configuration, vocabulary, rejection reasons, detectors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.config import markdown_table
from pipeline.contract import ACTIONS, MARKETPLACES
from pipeline.event import REASONS
from pipeline.marketplaces import ALIASES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONTRACT = (DOCS / "contract.md").read_text()
SCHEMA = json.loads((ROOT / "pipeline" / "schema" / "provider_action.schema.json").read_text())


def section(text: str, heading: str) -> str:
    """The body of the `## heading` (or deeper) section, up to the next heading of the same level."""
    level = heading.split(" ", 1)[0]
    parts = text.split(f"\n{heading}\n", 1)
    assert len(parts) == 2, f"no section {heading!r}"
    return re.split(rf"\n{level} ", parts[1], maxsplit=1)[0]


def test_configuration_table_matches_settings() -> None:
    assert markdown_table() in (DOCS / "operations.md").read_text()


def test_every_action_is_documented() -> None:
    missing = [a for a in sorted(ACTIONS) if f"`{a}`" not in CONTRACT]
    assert not missing


def test_every_rejection_reason_is_documented() -> None:
    reasons = section(CONTRACT, "## Ledger entries, dead letters, alerts")
    missing = [r for r in REASONS if f"`{r}`" not in reasons]
    assert not missing


def test_every_marketplace_is_documented() -> None:
    fields = section(CONTRACT, "## ProviderAction (ingest event)")
    row = next(line for line in fields.splitlines() if line.startswith("| `marketplace` |"))
    assert set(re.findall(r"\b[A-Z]{2}\b", row.split("|")[2])) == set(MARKETPLACES) | set(ALIASES)


@pytest.mark.parametrize(
    ("where", "heading", "properties"),
    [
        ("event", "## ProviderAction (ingest event)", SCHEMA["properties"]),
        ("grant", "### Grant", SCHEMA["properties"]["grant"]["properties"]),
    ],
)
def test_every_schema_field_has_a_row(
    where: str, heading: str, properties: dict[str, object]
) -> None:
    rows = [line for line in section(CONTRACT, heading).splitlines() if line.startswith("| `")]
    missing = [
        p for p in properties if not any(re.match(rf"\| `{re.escape(p)}[`.]", r) for r in rows)
    ]
    assert not missing, f"{where} fields without a row in docs/contract.md: {missing}"


def test_detector_table_matches_detection_config() -> None:
    from pipeline.config import detector_markdown_table

    assert detector_markdown_table() in (DOCS / "detectors.md").read_text()


def test_every_detector_is_documented() -> None:
    from detectors import MODULES
    from detectors.provider_wide import MODULES as PROVIDER_WIDE

    cases = [
        *(ROOT / "detectors" / "rules").glob("*.json"),
        *(ROOT / "detectors" / "provider_wide" / "rules").glob("*.json"),
    ]
    ids = (
        {json.loads(p.read_bytes())["detector"] for p in cases} | set(MODULES) | set(PROVIDER_WIDE)
    )
    assert len(ids) >= 20
    rules = section((DOCS / "detectors.md").read_text(), "## The rules")
    assert not {i for i in ids if f"| `{i}` |" not in rules}
