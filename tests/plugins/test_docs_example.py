"""The example plugin in docs/plugins.md works exactly as printed there."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from twisted.internet.defer import maybeDeferred

from asttapi_server.config import Config
from asttapi_server.core.events import TapiEvent
from asttapi_server.plugin_host import build_plugin_manager, bundled_plugin_dir

from .conftest import FakePluginsConfig

DOC = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text(encoding="utf-8")


def example(name: str) -> str:
    match = re.search(rf"<!-- example: {re.escape(name)} -->\n```\w+\n(.*?)\n```", DOC, re.DOTALL)
    assert match, f"example {name} missing from docs/plugins.md"
    return match.group(1) + "\n"


def test_the_documented_example_plugin(tmp_path):
    (tmp_path / "vip.py").write_text(example("vip.py"), encoding="utf-8")
    section = tomllib.loads(example("vip.toml"))["plugins"]
    config = FakePluginsConfig(tuple(section["enabled"]), {k: v for k, v in section.items() if k != "enabled"})
    # On the demo PBX (Config(demo=True)) crm_sql without settings reads the demo CRM.
    host = build_plugin_manager(config, entry_points=[], search_paths=[tmp_path, bundled_plugin_dir()],
                                config=Config(demo=True), run_in_thread=maybeDeferred)
    assert host.names == ["vip", "crm_sql", "tapi_userevent"]

    found = []
    host.lookup_contact("02079460958", {}).addCallback(found.append)
    host.lookup_contact("0301234567", {}).addCallback(found.append)  # not a VIP: the CRM answers
    assert found[0] == {"name": "Jane Doe", "company": "VIP", "source": "vip"}
    assert found[1]["name"] == "Ext Caller"

    event = TapiEvent(msg="LINE_NEWCALL", line="line_1", call=7, callinfo={"callerid": "+442079460959"})
    assert host.client_event(event).callinfo["vip"] is True
    host.call_finished(object())
    vip = host.pm.get_plugin("vip")
    assert vip.finished_calls == 1
