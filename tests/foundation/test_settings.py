"""One reader of typed settings: the config file, a plugin's table and the
log file's environment word a wrong value the same way (asttapi_server.settings)."""

from __future__ import annotations

import math

import pytest

from asttapi_server import settings as setting
from asttapi_server.config import load_config
from asttapi_server.errors import ConfigError
from asttapi_server.logfile import observer
from asttapi_server.plugin_host import Settings


def config_error(tmp_path, text: str) -> str:
    path = tmp_path / "a.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    return str(info.value)


def plugin_error(settings: dict, read) -> str:
    with pytest.raises(ValueError) as info:
        read(Settings(settings))
    return str(info.value)


@pytest.mark.parametrize("toml, plugin, read, tail", [
    ('demo = "yes"\n', {"demo": "yes"}, lambda s: s.demo_data("t", configured=False, needs="x"),
     "expected true or false, got 'yes'"),
    ("[calls]\nstate_file = 1\n", {"query": 1}, lambda s: s.str("query"), "expected a string, got 1"),
    ("[plugins]\nenabled = [1]\n", {"csv": [1]}, lambda s: s.paths("csv"), ", got [1]"),
])
def test_config_and_plugin_settings_word_a_wrong_value_alike(tmp_path, toml, plugin, read, tail):
    from_config = config_error(tmp_path, toml)
    from_plugin = plugin_error(plugin, read)
    assert from_config.endswith(tail) and from_plugin.endswith(tail)
    assert from_config.count("\n") == from_plugin.count("\n") == 0


@pytest.mark.parametrize("value", [math.inf, -1, True, "5"])
def test_a_plugin_number_is_finite_and_not_negative(value):
    assert plugin_error({"refresh": value}, lambda s: s.number("refresh", 1.0)) == (
        f"setting 'refresh': expected a number >= 0, got {setting.show(value)}"
    )


def test_the_log_environment_reads_integers_as_the_command_line_does(tmp_path):
    with pytest.raises(SystemExit) as info:
        observer({"ASTTAPI_LOGFILE": str(tmp_path / "a.log"), "ASTTAPI_LOG_KEEP": "many"})
    assert str(info.value.code) == "asttapi: $ASTTAPI_LOG_KEEP: expected an integer >= 1, got 'many'"
    assert setting.integer(" 7 ", 1, text_ok=True) == 7
    with pytest.raises(setting.Expected, match=r"^expected an integer 1-65535, got '7'$"):
        setting.integer("7", 1, 65535)  # text only where the caller says so (a file's "7" is a string)


def test_show_keeps_a_value_short_and_on_one_line():
    assert setting.show({"a": 1}) == "a table"
    assert setting.show("x" * 100) == repr("x" * 100)[:57] + "..."
    assert str(setting.Expected("a secret", setting.Hidden("an integer"))) == "expected a secret, got an integer"
