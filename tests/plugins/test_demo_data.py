"""The bundled plugins' invented demo contacts are used only when asked.

A config copied from asttapi.example.toml for a real PBX (an [ami] host, the
bundled plugins enabled, no data source) must not pop invented callers: the
plugin refuses, and start-up stops with one line saying what to set.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import maybeDeferred

from asttapi_server.config import Config
from asttapi_server.errors import PluginError
from asttapi_server.plugin_host import build_plugin_manager, bundled_plugin_dir

from .conftest import FakePluginsConfig

REAL_PBX = Config(demo=False)
DEMO_PBX = Config(demo=True)


def build(name: str, settings: dict, config: Config):
    return build_plugin_manager(FakePluginsConfig((name,), {name: settings}), config=config, entry_points=[],
                                search_paths=[bundled_plugin_dir()], run_in_thread=maybeDeferred)


def answer(host, number):
    found = []
    host.lookup_contact(number, {}).addCallback(found.append)
    return found[0]


@pytest.mark.parametrize("name, needs", [
    ("crm_sql", "set database (an SQLite file) or driver and connect in [plugins.crm_sql]"),
    ("outlook_contacts", "set csv or vcf (contact files) in [plugins.outlook_contacts]"),
])
def test_real_pbx_without_a_data_source_refuses_in_one_line(name, needs):
    with pytest.raises(PluginError) as info:
        build(name, {}, REAL_PBX)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"plugin {name!r}: no data to read: {needs}, or demo = true")


@pytest.mark.parametrize("name, number, who", [
    ("crm_sql", "0301234567", "Ext Caller"),
    ("outlook_contacts", "02079460958", "Jane Doe"),
])
def test_demo_data_on_the_demo_pbx_or_when_asked(name, number, who):
    assert answer(build(name, {}, DEMO_PBX), number)["name"] == who
    assert answer(build(name, {"demo": True}, REAL_PBX), number)["name"] == who


@pytest.mark.parametrize("name", ["crm_sql", "outlook_contacts"])
def test_demo_false_refuses_even_on_the_demo_pbx(name):
    with pytest.raises(PluginError, match="no data to read"):
        build(name, {"demo": False}, DEMO_PBX)


def test_demo_must_be_a_boolean_and_not_beside_a_source(tmp_path):
    with pytest.raises(PluginError, match="plugin 'crm_sql': setting 'demo': expected true or false, got 'yes'"):
        build("crm_sql", {"demo": "yes"}, DEMO_PBX)
    csv = tmp_path / "c.csv"
    csv.write_text('"First Name","Business Phone"\n"A","020 7946 0111"\n')
    with pytest.raises(PluginError, match="setting 'demo': true would ignore the csv or vcf"):
        build("outlook_contacts", {"demo": True, "csv": str(csv)}, REAL_PBX)
    host = build("outlook_contacts", {"csv": str(csv)}, REAL_PBX)  # a real source needs no demo key
    assert answer(host, "02079460111")["name"] == "A"
    assert answer(host, "02079460958") is None  # and no demo contact slips in
