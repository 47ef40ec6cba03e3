"""Every relative link and image in the repository's tracked markdown points at a file that exists.

Web links (http, https, mailto) are not followed. A link's `#anchor` is checked against the headings of
the page it points to (GitHub's slug rules), so a renamed section breaks the test too. Links inside
code (fenced blocks and inline `code`) are text, not links, and are skipped.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

# [text](target) and ![alt](target); the target may be followed by a "title".
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
# <img src="..."> and <a href="...">
HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def tracked_markdown() -> list[Path]:
    """The markdown files git tracks; outside a git checkout, every *.md but those in hidden folders."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "*.md"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pages = ROOT.rglob("*.md")
        return sorted(p for p in pages if not any(part.startswith(".") for part in p.relative_to(ROOT).parts))
    return [ROOT / name for name in out.stdout.decode().split("\0") if name]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) for the lines outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def links(text: str) -> list[tuple[int, str]]:
    found = []
    for number, line in prose_lines(text):
        line = INLINE_CODE.sub("", line)
        for pattern in (INLINE_LINK, REFERENCE_LINK, HTML_LINK):
            found += [(number, m.group(1)) for m in pattern.finditer(line)]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(page: Path) -> list[str]:
    problems = []
    for number, target in links(page.read_text(encoding="utf-8")):
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # web links, mailto:, and empty targets
        path_part, _, anchor = target.partition("#")
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        dest = (page.parent / unquote(path_part)).resolve() if path_part else page
        if path_part.startswith("/"):
            problems.append(f"{where} (absolute path; use one relative to the page)")
            continue
        if not dest.exists():
            problems.append(f"{where} (no such file)")
            continue
        if ROOT not in dest.parents and dest != ROOT:
            problems.append(f"{where} (outside the repository)")
            continue
        if anchor and dest.suffix == ".md" and anchor.lower() not in anchors(dest):
            problems.append(f"{where} (no heading for #{anchor} in {dest.relative_to(ROOT)})")
    return problems


def test_the_checker_finds_links_and_skips_code():
    text = (
        'See [the guide](docs/guide.md#setup) and ![plot](a.png "a title").\n'
        "Inline `[not a link](nowhere.md)` is code.\n"
        "```\n[also not](nowhere.md)\n```\n"
        "[ref]: other.md\n"
        '<img src="pic.png" width="50%">\n'
    )
    assert [t for _, t in links(text)] == ["docs/guide.md#setup", "a.png", "other.md", "pic.png"]
    assert slug("First design: results (held-out seed 4000, 300 problems)") == (
        "first-design-results-held-out-seed-4000-300-problems"
    )
    assert slug("`r3 eval` options") == "r3-eval-options"


def test_the_checker_reports_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "here.md").write_text("# Title\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](here.md) [anchor ok](here.md#title) [gone](missing.png) [bad anchor](here.md#nope)\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2
    assert "missing.png (no such file)" in problems[0]
    assert "#nope" in problems[1]


@pytest.mark.parametrize("page", tracked_markdown(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    assert broken_links(page) == []
