"""The README is a newcomer's page that leads to every reference page in docs/, and no link is broken."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 200

#: ``[text](target)`` or ``[text](target "title")``; images too (the ``!`` is not part of the match).
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def markdown_files() -> list[Path]:
    return [README, *pages()]


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where a bracket is not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def relative_links(path: Path) -> list[str]:
    targets = LINK.findall(prose(path.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t)]


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces become hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = anchor(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_readme_is_a_newcomers_page_under_the_line_limit() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, (
        f"README.md has {len(lines)} lines; keep it under {README_MAX_LINES} and move reference to docs/"
    )


def test_docs_exist() -> None:
    assert pages(), "docs/ holds the reference pages"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_docs_page_is_linked_from_the_readme(page: Path) -> None:
    files = [t.split("#")[0] for t in relative_links(README)]
    linked = {(README.parent / f).resolve() for f in files if f}
    assert page.resolve() in linked, (
        f"README.md does not link docs/{page.name} (add it to 'Where to read next')"
    )


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_existing_files_and_headings(path: Path) -> None:
    broken = []
    for target in relative_links(path):
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading #{fragment} in {dest.relative_to(ROOT)}")
    assert broken == []


#: A path or module of the repository named in a code span: `jobs/placement.py`, `cluster.top.job_configs`.
REPO_PATH = re.compile(r"`((?:cluster|actors|serve_apps|jobs|storage|tests|bench|docker)/[\w./-]+)`")
REPO_MODULE = re.compile(r"`((?:cluster|actors|serve_apps|jobs|storage)(?:\.\w+)+)`")


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_files_and_modules_the_pages_name_exist(path: Path) -> None:
    """A file or module moved in a reshape takes its mentions along (only spans of one path are checked)."""
    text = path.read_text(encoding="utf-8")
    missing = [p for p in REPO_PATH.findall(text) if not (ROOT / p).exists()]
    for module in REPO_MODULE.findall(text):
        file = ROOT / module.replace(".", "/")
        if not (file.with_suffix(".py").is_file() or file.is_dir()):
            missing.append(module)
    assert missing == []


def test_link_parsing_sees_links_but_not_code() -> None:
    text = "See [api](docs/api.md#errors) and ![x](img.png).\n```\n[not](a-link.md)\n```\n`[nor](this.md)`\n"
    assert LINK.findall(prose(text)) == ["docs/api.md#errors", "img.png"]
    assert anchor("The CMS (`/v1/cms`)") == "the-cms-v1cms"
    assert anchor("Parameters of `/v1/search`") == "parameters-of-v1search"


def test_the_sample_corpus_pulse_up_loads_is_the_bundled_one() -> None:
    """The README's quickstart loads the bundled sample; `pulse up` must find it where it lies."""
    from cluster.top.platform import SAMPLE_CORPUS

    assert SAMPLE_CORPUS == ROOT / "jobs" / "ingest" / "sample_data" / "huffpost_2018.jsonl"
    assert SAMPLE_CORPUS.is_file()
