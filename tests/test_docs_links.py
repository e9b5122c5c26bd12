"""The README stays short, docs/index.md lists every page, and every relative link in README.md and
docs/*.md points to a file that exists (and, for a #anchor into a Markdown page, to a heading
there, slugged the way GitHub slugs headings)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_MAX_LINES = 250

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"`[^`]*`")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def github_slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: link syntax and markup dropped, lower case,
    punctuation removed (letters, digits, spaces, '-' and '_' stay), each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.lower().replace("`", "")
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page (a repeated heading gets -1, -2, … as on GitHub)."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in _prose_lines(page.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link of a Markdown page, outside code."""
    found = []
    for number, line in _prose_lines(page.read_text(encoding="utf-8")):
        for match in _LINK.finditer(_INLINE_CODE.sub("", line)):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            found.append((number, target))
    return found


def broken_links(page: Path) -> list[str]:
    """One line per relative link of ``page`` whose file or anchor does not exist."""
    problems = []
    for number, target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        where = f"{page.relative_to(ROOT) if page.is_relative_to(ROOT) else page}:{number}"
        if not dest.exists():
            problems.append(f"{where}: {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: {target}: no heading #{anchor} in {dest.name}")
    return problems


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move detail into docs/"
    )


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_index_and_the_readme_list_every_docs_page() -> None:
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert len(pages) >= 10
    index = {Path(t.partition("#")[0]).name for _, t in relative_links(DOCS / "index.md")}
    readme = {
        Path(t.partition("#")[0]).name
        for _, t in relative_links(ROOT / "README.md")
        if t.startswith("docs/")
    }
    assert pages - index == set(), "docs/index.md does not link these pages"
    assert (pages | {"index.md"}) - readme == set(), "README.md does not link these docs pages"


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text(
        "# Other page\n\n## `make run` against its budget\n\n## What it costs (measured)\n"
        "## Same\n## Same\n```\n# not a heading\n```\n",
        encoding="utf-8",
    )
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md) [ok](other.md#make-run-against-its-budget)\n"
        "[ok](other.md#what-it-costs-measured) [ok](other.md#same-1) [web](https://x.test/a.md)\n"
        "`[in code](gone.md)`\n"
        "```\n[in a fence](gone.md)\n```\n"
        "[gone](gone.md)\n"
        "[no anchor](other.md#not-a-heading)\n"
        "[self](#nowhere)\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        f"{page}:7: gone.md: no such file",
        f"{page}:8: other.md#not-a-heading: no heading #not-a-heading in other.md",
        f"{page}:9: #nowhere: no heading #nowhere in page.md",
    ]
