"""Which plugins the demo PBX runs with, and the example file's plugin tables (issue 23, items 4 and 5).

The rule (README "Quick start", docs/plugins.md): on the demo PBX, a
configuration that does not set ``[plugins] enabled`` gets the bundled sample
CRM and contacts, whatever else it configures; ``enabled = []`` turns contact
lookups off and says so in one line. A real PBX gets only what ``enabled``
lists.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from asttapi_server.config import load_config
from asttapi_server.plugin_host import build_plugin_manager
from asttapi_server.service import DEMO_PLUGINS, plugins_config

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path, text: str):
    path = tmp_path / "asttapi.toml"
    path.write_text(text)
    return load_config(str(path))


def test_a_file_that_adds_users_to_the_demo_keeps_its_contact_plugins(tmp_path):
    config = _config(tmp_path, 'demo = true\n[users.crm]\ntoken = "0123456789abcdef0123"\n')
    with capturedLogs() as logs:
        assert plugins_config(config, demo_mode=True).enabled == DEMO_PLUGINS
    assert [formatEvent(e) for e in logs] == [
        "Demo mode: enabling the bundled plugins ('crm_sql', 'outlook_contacts') with their sample data "
        "([plugins] enabled is not set)"]
    # A [plugins] table without `enabled` (only a timeout) is the same.
    config = _config(tmp_path, "[plugins]\nlookup_timeout = 5.0\n")
    assert plugins_config(config, demo_mode=True, quiet=True).enabled == DEMO_PLUGINS


def test_an_explicit_empty_list_turns_lookups_off_and_says_why(tmp_path):
    config = _config(tmp_path, "demo = true\n[plugins]\nenabled = []\n")
    with capturedLogs() as logs:
        assert plugins_config(config, demo_mode=True).enabled == ()
    assert [formatEvent(e) for e in logs] == [
        f"Demo mode: no contact lookups: {config.source} sets [plugins] enabled = []; leave the key out "
        "for the bundled sample CRM and contacts"]


def test_a_real_pbx_gets_only_what_is_enabled(tmp_path):
    config = _config(tmp_path, '[ami]\nhost = "pbx.example"\n')
    with capturedLogs() as logs:
        assert not plugins_config(config, demo_mode=False).enabled
    assert list(logs) == []


def test_the_example_files_comment_only_plugin_tables_warn_about_nothing(tmp_path):
    text = (ROOT / "asttapi.example.toml").read_text()
    assert 'enabled = ["crm_sql", "outlook_contacts"]' in text
    config = _config(tmp_path, text.replace('enabled = ["crm_sql", "outlook_contacts"]', "enabled = []"))
    with capturedLogs() as logs:
        build_plugin_manager(plugins_config(config, demo_mode=True, quiet=True), config=config, clock=Clock())
    assert [formatEvent(e) for e in logs if e["log_level"] >= LogLevel.warn] == []
    # Settings that would do something are still reported when their plugin is off.
    config = _config(tmp_path, '[plugins]\nenabled = []\n[plugins.crm_sql]\ndatabase = "crm.sqlite"\n')
    with capturedLogs() as logs:
        build_plugin_manager(config.plugins, config=config, clock=Clock())
    assert [formatEvent(e) for e in logs if e["log_level"] >= LogLevel.warn] == [
        "Settings for plugin crm_sql ignored: it is not in [plugins] enabled"]
