"""The README documents what the code does: configuration, vocabulary, rejection reasons."""

from __future__ import annotations

from pipeline.config import REPO_ROOT, markdown_table
from pipeline.contract import ACTIONS
from pipeline.event import REASONS

README = (REPO_ROOT / "README.md").read_text()


def test_configuration_table_matches_settings() -> None:
    assert markdown_table() in README


def test_every_action_is_documented() -> None:
    missing = [a for a in sorted(ACTIONS) if f"`{a}`" not in README]
    assert not missing


def test_every_rejection_reason_is_documented() -> None:
    missing = [r for r in REASONS if f"`{r}`" not in README]
    assert not missing


def test_detector_table_matches_detection_config() -> None:
    from detectors.config import markdown_table as detector_table

    assert detector_table() in README


def test_every_detector_is_documented() -> None:
    from detectors import MODULES

    assert len(MODULES) >= 20
    assert not {i for i in MODULES if f"| `{i}` |" not in README}
