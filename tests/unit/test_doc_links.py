"""Every relative link in README.md and docs/*.md points to a file of the repository, and its
`#anchor`, if any, to a heading of that file (GitHub's heading ids)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


def prose(markdown: str) -> str:
    """The text with fenced code blocks and code spans blanked out (links there are not links)."""
    markdown = FENCE.sub(lambda m: "\n" * m[0].count("\n"), markdown)
    return CODE_SPAN.sub("", markdown)


def slug(heading: str) -> str:
    """GitHub's id for a heading: the text without markup, lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    ids: set[str] = set()
    seen: dict[str, int] = {}
    for match in HEADING.finditer(FENCE.sub(lambda m: "\n" * m[0].count("\n"), markdown)):
        base = slug(match[2])
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.add(base if n == 0 else f"{base}-{n}")
    return ids


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """`target: why` for each relative link of `page` that does not resolve."""
    text = page.read_text()
    problems = []
    for target in LINK.findall(prose(text)):
        if not target or re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):
            continue  # http:, https:, mailto: ... are not checked here
        path_part, _, anchor = target.partition("#")
        file = (page.parent / path_part).resolve() if path_part else page
        if root.resolve() not in (file, *file.parents):
            problems.append(f"{target}: outside the repository")
        elif not file.exists():
            problems.append(f"{target}: no such file")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file.read_text())):
            problems.append(
                f"{target}: no heading with id {anchor!r} in {file.relative_to(root.resolve())}"
            )
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert not broken_links(page)


def test_the_docs_pages_are_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    unlinked = [p.name for p in PAGES[1:] if f"](docs/{p.name})" not in readme]
    assert len(PAGES) > 1 and not unlinked


def test_github_heading_ids() -> None:
    assert slug("HTTP ingest (`POST /v1/events`)") == "http-ingest-post-v1events"
    assert slug("Guarantees, and how they are kept") == "guarantees-and-how-they-are-kept"
    assert slug("The page: `GET /alerts`") == "the-page-get-alerts"
    assert slug("Migrations on a ClickHouse cluster (`PW_CLICKHOUSE_CLUSTER`)") == (
        "migrations-on-a-clickhouse-cluster-pw_clickhouse_cluster"
    )
    assert anchors("# A\n## Setup\n### Setup\n```\n# not a heading\n```\n") == {
        "a",
        "setup",
        "setup-1",
    }


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## Real section\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n## Here\n\n"
        "[ok](docs/other.md) [ok anchor](docs/other.md#real-section) [self](#here) [web](https://example.com)\n"
        "[missing](docs/nope.md) [bad anchor](docs/other.md#fake) [bad self](#nowhere) [escape](../x.md)\n"
        "`[in code](docs/nope2.md)`\n```\n[in fence](docs/nope3.md)\n```\n"
    )
    assert broken_links(page, tmp_path) == [
        "docs/nope.md: no such file",
        "docs/other.md#fake: no heading with id 'fake' in docs/other.md",
        "#nowhere: no heading with id 'nowhere' in README.md",
        "../x.md: outside the repository",
    ]
