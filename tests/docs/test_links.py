"""Every relative link and every file path README.md and docs/ name exists in this repository.

A user's clone has this repository and nothing beside it, so a doc that points
at ``../shared`` or at a file that moved is a broken promise. Links are
``[text](target)`` with a relative target (an ``#anchor`` must be a heading of
the target); paths are `backticked` words that start with a folder or file of
the repository's top level (``asttapi_server/...``, ``tests/...``,
``contrib/asttapi.service``, ``pyproject.toml`` ...), or with ``../``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = sorted(p.name for p in ROOT.iterdir() if not p.name.startswith(".") or p.name == ".ci")

#: Paths the docs name for files a reader writes (an example to copy), not files of the repository.
EXAMPLES = {
    "plugins/vip.py",  # README and docs/plugins.md: "a plugin is a module ..., for example plugins/vip.py"
}

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`\n]+)`")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


def _links(doc: Path) -> list[str]:
    return [t for t in _LINK.findall(_FENCE.sub("", doc.read_text())) if not re.match(r"^[a-z][a-z+.-]*:", t)]


def _paths(doc: Path) -> list[str]:
    out = []
    for span in _CODE.findall(_FENCE.sub("", doc.read_text())):
        word = span.split()[0] if span.split() else ""
        word = word.rstrip(".,;:)")
        first = word.split("/", 1)[0]
        if word.startswith("../") or (first in TOP and (first != word or "." in word)):
            if any(ch in word for ch in "*?{}<>$") or "NAME" in word:
                continue  # a pattern or a placeholder, not one file
            out.append(word)
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in _links(doc):
        path, _, anchor = target.partition("#")
        where = (doc.parent / path).resolve() if path else doc
        if not where.exists() or ROOT not in (where, *where.parents):
            broken.append(f"{target}: no such file in the repository")
        elif anchor and where.suffix == ".md" and anchor not in _anchors(where):
            broken.append(f"{target}: {where.name} has no heading #{anchor}")
    assert broken == [], broken


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_paths_exist(doc):
    missing = []
    for word in _paths(doc):
        if word in EXAMPLES:
            continue
        where = (doc.parent / word).resolve() if word.startswith("../") else ROOT / word
        if not where.exists() or ROOT not in (where, *where.parents):
            missing.append(word)
    assert missing == [], missing


def test_the_checker_sees_what_it_checks():
    """The two readers find links and paths at all (a regex that matched nothing would pass everything)."""
    readme = ROOT / "README.md"
    assert "docs/protocol.md" in _links(readme) and "contrib/asttapi.service" in _links(readme)
    assert "asttapi_server/web/static/" in _paths(readme)
    assert "tests/foundation/test_readme_quickstart.py" in _paths(readme)
    assert "architecture.md#call-store-asttapi_serverstorepy" in _links(ROOT / "docs" / "security.md")
    assert _slug("Call store (`asttapi_server/store.py`)") == "call-store-asttapi_serverstorepy"
