"""docs/protocol.md's batch transcript is what the server sends, over TCP and WebSocket."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.clients.harness import Harness

from .harness import WSHarness

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def transcript() -> list[tuple[str, str]]:
    block = re.search(r"<!-- checked by tests/web/test_docs.py -->\n```text\n(.*?)```", DOC.read_text(), re.S)
    assert block, "the checked transcript is missing from docs/protocol.md"
    lines = block.group(1).strip().splitlines()
    assert all(line[:2] in ("> ", "< ") for line in lines)
    return [(line[0], line[2:]) for line in lines]


@pytest.mark.parametrize("harness", [Harness, WSHarness], ids=["tcp", "websocket"])
def test_the_documented_batch_transcript(harness):
    c = harness().connect()
    steps = transcript()
    assert len(steps) >= 4
    for i in range(0, len(steps), 2):
        (out, request), (back, answer) = steps[i], steps[i + 1]
        assert (out, back) == (">", "<")
        c.send_raw(request.encode() + b"\n")
        assert c.read() == [json.loads(answer)]


def test_the_documented_web_config_loads(tmp_path):
    from asttapi_server.config import load_config

    text = DOC.read_text()
    section = text[text.index("## WebSocket"):]
    snippet = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "web.toml"
    path.write_text(snippet + '\n[users.crm]\ntoken = "a-token-of-24-characters"\n')
    web = load_config(str(path)).web
    assert web.listen == ("tcp:8080:interface=127.0.0.1",)
    assert web.allowed_origins == ("https://crm.example.com",) == web.frame_ancestors


def test_the_readme_counts_the_pages_files_right():
    root = DOC.parents[1]
    said = re.search(r"The page is (\w+) static files in `asttapi_server/web/static/`", (root / "README.md").read_text())
    assert said, "README no longer says how many files the page is"
    words = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
    files = [p for p in (root / "asttapi_server" / "web" / "static").rglob("*") if p.is_file()]
    assert words[said.group(1)] == len(files), sorted(p.name for p in files)
