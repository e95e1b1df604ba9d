"""The version is written once (asttapi_server/__init__.py); the package metadata and CHANGELOG.md follow it."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from asttapi_server import __version__

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_reads_the_version_from_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "asttapi_server.__version__"}
    assert importlib.metadata.version("asttapi-server") == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_the_changelog_keeps_a_changelog_and_names_this_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.M)
    assert headings[0] == ("Unreleased", ""), headings
    releases = [version for version, date in headings[1:] if date]
    assert releases and releases[0] == __version__, releases
    assert len(releases) == len(headings) - 1  # every release has its date
    for section in re.findall(r"^### (.+)$", text, re.M):
        assert section in ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"), section
