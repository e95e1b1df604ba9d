"""Issue 11 item 1: every documented dialplan filters the caller id before UserEvent() sees it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asttapi_server.core.grammar import parse_tapievent
from asttapi_server.demo.scenarios import CALLERID_NAME_FILTER, CALLERID_NUM_FILTER, dialplan_filter

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FILTERED = re.compile(r"\$\{FILTER\(([^,|]*)[,|]\$\{CALLERID(?:\((\w+)\))?\}\)\}")
EVIL = "123,TAPIEVENT:\t[~/^/]\tLINE_NEWCALL\tline_1"


def userevent_lines():
    for path in DOCS:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "UserEvent(" in line and "CALLERID" in line.replace("SET CALLERID", ""):
                yield f"{path.name}:{n}", line


def test_the_docs_have_dialplans_with_caller_ids():
    assert len(list(userevent_lines())) >= 2


@pytest.mark.parametrize("where, line", list(userevent_lines()))
def test_every_caller_id_in_a_userevent_is_filtered(where, line):
    bare = _FILTERED.sub("", line)
    assert "${CALLERID" not in bare, f"{where}: unfiltered caller id in {line.strip()!r}"


def test_the_readme_filters_are_the_ones_the_demo_pbx_plays():
    readme = (ROOT / "README.md").read_text()
    found: dict[str, str] = {}
    for allowed, kind in _FILTERED.findall(readme):
        found.setdefault(kind, allowed)  # the first: today's dialplan, before the 1.2 form
    assert found["num"] == CALLERID_NUM_FILTER
    assert found["name"] == CALLERID_NAME_FILTER


@pytest.mark.parametrize("value", [EVIL, '"Evil" <123,TAPIEVENT: x>', "a|TAPIEVENT: [~1.1] LINE_NEWCALL l"])
def test_a_filtered_caller_id_cannot_start_another_argument(value):
    for allowed, field in ((CALLERID_NUM_FILTER, "CALLERID"), (CALLERID_NAME_FILTER, "CALLERIDNAME")):
        text = dialplan_filter(allowed, value)
        assert not set(text) & set(',|"<>[]~&!\t')
        assert parse_tapievent(f"SET {field} {text}").verb == "SET"


def test_filter_keeps_what_people_write():
    assert dialplan_filter(CALLERID_NUM_FILTER, "+44 (20) 7946-0958") == "+442079460958"
    assert dialplan_filter(CALLERID_NAME_FILTER, "Jörg O'Neil-Smith") == "Jörg O'Neil-Smith"
