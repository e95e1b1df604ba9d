"""docs/security.md and the example config list every limit with the default the code has."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from asttapi_server.clients.auth import LoginLimits
from asttapi_server.clients.limits import ConnectionLimits
from asttapi_server.config import ServerConfig

ROOT = Path(__file__).resolve().parents[2]
KEYS = [f.name for f in fields(ConnectionLimits)] + [
    "login_" + f.name for f in fields(LoginLimits) if f.name != "max_tracked"
]


def test_every_limit_is_in_the_security_doc_with_its_default():
    doc = (ROOT / "docs" / "security.md").read_text()
    server = ServerConfig()
    for key in KEYS:
        default = getattr(server, key)
        assert re.search(rf"^\| `{key}` \| `{re.escape(repr(default))}` \|", doc, re.M), key
    assert str(LoginLimits().max_tracked).replace("100000", "100,000") in doc


def test_every_limit_is_in_the_example_config_with_its_default():
    text = (ROOT / "asttapi.example.toml").read_text()
    server = ServerConfig()
    for key in KEYS:
        assert re.search(rf"^{key} = {re.escape(repr(getattr(server, key)))}\b", text, re.M), key
    assert re.search(r"^# secret_file = ", text, re.M) and re.search(r"^# token_file = ", text, re.M)


def test_the_refusal_and_timeout_lines_in_the_doc_are_what_the_server_sends():
    import json

    from .helpers import USERS, NetHarness

    doc = (ROOT / "docs" / "security.md").read_text()
    h = NetHarness(USERS)
    conns = [h.open("192.0.2.1") for _ in range(51)]
    refusal = conns[-1].read()[0]
    assert json.dumps(refusal, separators=(",", ":")) in doc
    h.clock.advance(10)
    timeout = conns[0].read()[-1]
    assert json.dumps(timeout, separators=(",", ":")) in doc


def test_the_retry_line_in_the_doc_is_what_the_server_sends():
    import json

    from .helpers import USERS, NetHarness

    doc = (ROOT / "docs" / "security.md").read_text()
    h = NetHarness(USERS)
    waits = []
    for _ in range(20):  # 5 free failures, then waits of 1, 2 and 4 s
        c = h.open("192.0.2.2")
        c.read()
        answer = c.call("login", username="alice", token="wrong")
        c.proto.connectionLost(None)
        if "data" in answer["error"]:
            waits.append(answer["error"]["data"]["retry_after"])
            if waits[-1] == 4:
                break
            h.clock.advance(waits[-1])
    assert waits == [1, 2, 4]
    assert json.dumps(answer, separators=(",", ":")) in doc


def test_the_secret_file_snippet_in_the_doc_loads(tmp_path):
    from asttapi_server.config import load_config

    doc = (ROOT / "docs" / "security.md").read_text()
    snippet = re.search(r"\*\*Secrets outside `ps`\.\*\*.*?```toml\n(.*?)```", doc, re.S).group(1)
    (tmp_path / "ami.secret").write_text("the-ami-secret\n")
    (tmp_path / "crm.token").write_text("a-token-of-twenty-chars\n")
    path = tmp_path / "asttapi.toml"
    path.write_text(snippet.replace("/etc/asttapi/", f"{tmp_path}/"))
    cfg = load_config(str(path), environ={})
    assert cfg.ami.secret == "the-ami-secret" and cfg.users["crm"].token == "a-token-of-twenty-chars"
    assert cfg.users["crm"].lines == ("line_*",)
