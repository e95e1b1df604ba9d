"""Finding, enabling and configuring plugins; a bad plugin stops start-up naming itself."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from twisted.internet.defer import maybeDeferred

from asttapi_server.config import Config
from asttapi_server.errors import PluginError
from asttapi_server.plugin_host import ENTRY_POINT_GROUP, build_plugin_manager, bundled_plugin_dir

from .conftest import FakePluginsConfig

GOOD = '''
from asttapi_server.hookspecs import hookimpl

def configure(settings, config):
    return Greeter(settings.get("greeting", "hello"))

class Greeter:
    def __init__(self, greeting):
        self.greeting = greeting

    @hookimpl
    def asttapi_lookup_contact(self, number):
        return {"name": self.greeting + " " + number}
'''


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def build(enabled=(), settings=None, **kwargs):
    kwargs.setdefault("entry_points", [])
    kwargs.setdefault("run_in_thread", maybeDeferred)  # blocking lookups run inline
    kwargs.setdefault("search_paths", [])
    return build_plugin_manager(FakePluginsConfig(tuple(enabled), settings or {}), **kwargs)


def answer(host, number="201"):
    results = []
    host.lookup_contact(number, {}).addCallback(results.append)
    return results[0]


def test_only_the_builtin_mapping_without_enabled_plugins():
    host = build()
    assert host.names == ["tapi_userevent"]
    assert host.wanted_event_names() == frozenset({"UserEvent", "UserEventTAPI"})


def test_builtins_can_be_left_out():
    assert build(builtins=False).names == []


def test_file_dropped_in_a_plugin_folder(tmp_path):
    write(tmp_path, "greeter", GOOD)
    host = build(["greeter"], {"greeter": {"greeting": "hi"}}, search_paths=[tmp_path])
    assert "greeter" in host.names
    assert answer(host) == {"name": "hi 201", "source": "greeter"}


def test_package_folder(tmp_path):
    (tmp_path / "pkgplugin").mkdir()
    (tmp_path / "pkgplugin" / "__init__.py").write_text(textwrap.dedent(GOOD))
    assert "pkgplugin" in build(["pkgplugin"], search_paths=[tmp_path]).names


def test_entry_point(tmp_path, monkeypatch):
    write(tmp_path, "site_greeter_mod", GOOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint(name="greeter", value="site_greeter_mod", group=ENTRY_POINT_GROUP)
    host = build(["greeter"], entry_points=[ep])
    assert answer(host) == {"name": "hello 201", "source": "greeter"}


def test_entry_point_wins_over_a_file(tmp_path, monkeypatch):
    write(tmp_path, "greeter", GOOD.replace('"hello"', '"from file"'))
    (tmp_path / "pkg").mkdir()
    write(tmp_path / "pkg", "ep_greeter_mod", GOOD.replace('"hello"', '"from entry point"'))
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    ep = EntryPoint(name="greeter", value="ep_greeter_mod", group=ENTRY_POINT_GROUP)
    host = build(["greeter"], entry_points=[ep], search_paths=[tmp_path])
    assert answer(host)["name"] == "from entry point 201"


def test_installed_entry_points_are_read_from_the_group(monkeypatch, tmp_path):
    write(tmp_path, "grouped_mod", GOOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []

    def fake_entry_points(group):
        seen.append(group)
        return [EntryPoint(name="grouped", value="grouped_mod", group=group)]

    monkeypatch.setattr("importlib.metadata.entry_points", fake_entry_points)
    host = build_plugin_manager(FakePluginsConfig(("grouped",)), search_paths=[])
    assert seen == [ENTRY_POINT_GROUP]
    assert "grouped" in host.names


def test_bundled_plugins_are_found_in_the_checkout_by_default():
    assert bundled_plugin_dir() is not None and (bundled_plugin_dir() / "crm_sql.py").is_file()
    host = build_plugin_manager(FakePluginsConfig(("crm_sql", "outlook_contacts")), entry_points=[],
                                config=Config(demo=True), run_in_thread=maybeDeferred)
    assert host.names == ["crm_sql", "outlook_contacts", "tapi_userevent"]
    assert answer(host, "0301234567")["name"] == "Ext Caller"


def test_a_plugin_not_enabled_is_not_loaded(tmp_path, logged):
    write(tmp_path, "greeter", GOOD)
    host = build([], {"greeter": {"greeting": "x"}}, search_paths=[tmp_path])
    assert host.names == ["tapi_userevent"]
    assert any("greeter" in str(e.get("plugin")) and "not in [plugins] enabled" in e["log_format"] for e in logged)


def test_two_hosts_share_no_state(tmp_path):
    write(tmp_path, "greeter", GOOD)
    one = build(["greeter"], {"greeter": {"greeting": "one"}}, search_paths=[tmp_path])
    two = build(["greeter"], {"greeter": {"greeting": "two"}}, search_paths=[tmp_path])
    assert answer(one)["name"] == "one 201" and answer(two)["name"] == "two 201"


@pytest.mark.parametrize("source, settings, message", [
    ("import not_a_module_anywhere\n", {}, "plugin 'bad': cannot import .*No module named 'not_a_module_anywhere'"),
    ("raise RuntimeError('boom at import')\n", {}, "plugin 'bad': cannot import .*boom at import"),
    ("def configure(settings, config):\n    raise ValueError('setting x: bad')\n", {"x": 1}, "plugin 'bad': setting x: bad"),
    ("def configure(settings, config):\n    return None\n", {}, "plugin 'bad': configure\\(\\) returned None"),
    ("X = 1\n", {"colour": "red"}, "plugin 'bad' takes no settings, but \\[plugins.bad\\] has: colour"),
    ("from asttapi_server.hookspecs import hookimpl\n@hookimpl\ndef asttapi_lookup_contcat(number):\n    pass\n",
     {}, "plugin 'bad': .*asttapi_lookup_contcat"),
    ("from asttapi_server.hookspecs import hookimpl\n@hookimpl\ndef asttapi_lookup_contact(number, colour):\n    pass\n",
     {}, "plugin 'bad': .*colour"),
    ("from asttapi_server.hookspecs import hookimpl\n@hookimpl(wrapper=True)\ndef asttapi_client_event(event):\n"
     "    return (yield)\n", {}, "plugin 'bad': hook wrappers are not supported"),
])
def test_bad_plugin_stops_start_up_naming_it(tmp_path, source, settings, message):
    write(tmp_path, "bad", source)
    with pytest.raises(PluginError, match=message) as caught:
        build(["bad"], {"bad": settings} if settings else {}, search_paths=[tmp_path])
    assert "\n" not in str(caught.value)  # start-up shows it as one line
    sys.modules.pop("_asttapi_plugin_bad", None)


def test_missing_plugin_says_where_it_looked(tmp_path):
    with pytest.raises(PluginError, match=r"plugin 'nosuch' not found: no entry point .* no nosuch.py in "):
        build(["nosuch"], search_paths=[tmp_path])


def test_entry_point_that_fails_to_import_is_named():
    ep = EntryPoint(name="broken", value="no_such_module_for_asttapi", group=ENTRY_POINT_GROUP)
    with pytest.raises(PluginError, match="plugin 'broken': cannot import no_such_module_for_asttapi"):
        build(["broken"], entry_points=[ep])


def test_bad_plugin_name():
    with pytest.raises(PluginError, match="not a valid plugin name"):
        build(["../etc/passwd"])


def test_bundled_plugin_setting_errors_name_plugin_and_key(tmp_path):
    with pytest.raises(PluginError, match="plugin 'crm_sql': setting 'database': SQLite file .* does not exist"):
        build(["crm_sql"], {"crm_sql": {"database": str(tmp_path / "nope.sqlite")}}, search_paths=[bundled_plugin_dir()])
    with pytest.raises(PluginError, match="plugin 'outlook_contacts': unknown setting\\(s\\): cvs"):
        build(["outlook_contacts"], {"outlook_contacts": {"cvs": "x.csv"}}, search_paths=[bundled_plugin_dir()])
    with pytest.raises(PluginError, match="plugin 'outlook_contacts': setting 'csv': file .* does not exist"):
        build(["outlook_contacts"], {"outlook_contacts": {"csv": str(tmp_path / "x.csv")}},
              search_paths=[bundled_plugin_dir()])
    with pytest.raises(PluginError, match="plugin 'crm_sql': unknown phone number region 'XX'"):
        build(["crm_sql"], {"crm_sql": {"region": "XX"}}, search_paths=[bundled_plugin_dir()])


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "contacts.csv").write_text('"First Name","Last Name","Business Phone"\n"A","B","020 7946 0111"\n')

    class Config:
        source = str(tmp_path / "asttapi.toml")

    host = build(["outlook_contacts"], {"outlook_contacts": {"csv": "contacts.csv"}}, config=Config(),
                 search_paths=[bundled_plugin_dir()])
    assert answer(host, "02079460111")["name"] == "A B"


@pytest.mark.parametrize("enabled", [("one", "two"), ("two", "one")])
def test_enabled_order_is_lookup_priority(tmp_path, enabled):
    write(tmp_path, "one", GOOD.replace('"hello"', '"one"'))
    write(tmp_path, "two", GOOD.replace('"hello"', '"two"'))
    host = build(enabled, search_paths=[tmp_path])
    assert host.names[:2] == list(enabled)
    assert answer(host)["name"] == f"{enabled[0]} 201"


def test_entry_point_group_is_the_documented_public_name():
    """Third-party packages declare ``[project.entry-points."asttapi_server.plugins"]``
    (docs/plugins.md): a module rename must never move the group under them."""
    import tomllib
    from pathlib import Path

    from asttapi_server.plugin_host import ENTRY_POINT_GROUP

    root = Path(__file__).resolve().parents[2]
    assert ENTRY_POINT_GROUP == "asttapi_server.plugins"
    assert ENTRY_POINT_GROUP in tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]' in (root / "docs" / "plugins.md").read_text()
