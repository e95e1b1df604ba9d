"""The shipped example config and the README's config snippet load as written."""

from __future__ import annotations

import re
from pathlib import Path

from asttapi_server.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads_and_runs_on_the_demo():
    cfg = load_config(str(ROOT / "asttapi.example.toml"))
    assert cfg.demo is True
    assert set(cfg.lines) == {"line_1", "line_2"}
    assert cfg.plugins.enabled == ("crm_sql", "outlook_contacts")


def test_example_config_mentions_every_key():
    text = (ROOT / "asttapi.example.toml").read_text()
    for key in ("host", "port", "username", "secret", "auth", "keepalive", "pong_timeout",
                "action_timeout", "originate_timeout", "listen", "max_line_bytes",
                "send_buffer_bytes", "replay_ring", "channel", "context", "callerid", "token",
                "lines", "hangup_grace", "max_age", "linger", "state_file", "max_calls", "max_lines", "max_field_bytes",
                "enabled", "lookup_timeout", "demo"):
        assert re.search(rf"^#? ?{key} = ", text, re.M), key


def test_readme_config_snippet_loads(tmp_path):
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"### 2\. The server's configuration.*?```toml\n(.*?)```", readme, re.S).group(1)
    path = tmp_path / "asttapi.toml"
    path.write_text(snippet)
    cfg = load_config(str(path))
    assert cfg.ami.host == "pbx.example.org" and cfg.demo is False
    assert "crm" in cfg.users


def test_readme_several_pbxs_snippet_loads(tmp_path):
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"### Several PBXs.*?```toml\n(.*?)```", readme, re.S).group(1)
    path = tmp_path / "asttapi.toml"
    path.write_text(snippet)
    for name in ("hq", "branch"):
        (tmp_path / f"{name}.secret").write_text(f"{name}-secret\n")
    cfg = load_config(str(path), environ={})
    assert list(cfg.pbxs) == ["hq", "branch"] and cfg.demo is False
    assert (cfg.pbxs["hq"].host, cfg.pbxs["branch"].secret) == ("10.0.0.1", "branch-secret")
    assert {name: line.pbx for name, line in cfg.lines.items()} == {"reception": "hq", "branch_desk": "branch"}


def test_readme_quick_start_is_the_two_make_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", readme, re.S).group(1)
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == ["make run", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_every_module_docs_architecture_names_exists():
    """The map of where each concept lives must not send a newcomer to a file that is gone."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Where each concept lives", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([\w/]+\.py)`", section)) | set(re.findall(r"`(\w+/)`", section))
    assert len(named) > 20
    for path in named:
        candidates = [ROOT / "asttapi_server" / path, ROOT / path]
        assert any(c.exists() for c in candidates), path
