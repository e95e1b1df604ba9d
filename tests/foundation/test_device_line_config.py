"""[lines.NAME] device = "PJSIP/201": a line fed by its phone's channel events (docs/device-lines.md)."""

from __future__ import annotations

import pytest

from asttapi_server.mappings.channel_events import devices_of
from asttapi_server.config import LineConfig, load_config
from asttapi_server.errors import ConfigError


def load(tmp_path, text):
    path = tmp_path / "asttapi.toml"
    path.write_text(text)
    return load_config(str(path))


def error(tmp_path, text) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_a_device_line_rings_its_device_for_click_to_dial(tmp_path):
    cfg = load(tmp_path, '[lines.bob]\ndevice = "PJSIP/201"\ncontext = "plain-phones"\n')
    assert cfg.lines["bob"] == LineConfig("bob", "PJSIP/201", "plain-phones", None, "PJSIP/201")


def test_channel_may_repeat_the_device_in_another_case_of_technology(tmp_path):
    cfg = load(tmp_path, '[lines.bob]\ndevice = "PJSIP/201"\nchannel = "pjsip/201"\n')
    assert cfg.lines["bob"].device == "PJSIP/201" and cfg.lines["bob"].channel == "pjsip/201"


def test_a_dialplan_line_is_unchanged(tmp_path):
    cfg = load(tmp_path, '[lines.line_1]\nchannel = "Local/bob@phones"\n')
    assert cfg.lines["line_1"].device is None
    assert devices_of(cfg) == {}


def test_one_line_one_source_a_device_line_cannot_ring_another_phone(tmp_path):
    text = error(tmp_path, '[lines.bob]\ndevice = "PJSIP/201"\nchannel = "PJSIP/202"\n')
    assert "lines.bob.channel" in text and "PJSIP/201" in text


@pytest.mark.parametrize("device", ["201", "PJSIP/", "/201", "PJSIP/2 01", ""])
def test_a_device_is_tech_slash_resource(tmp_path, device):
    text = error(tmp_path, f'[lines.bob]\ndevice = "{device}"\n')
    assert "lines.bob.device" in text


def test_a_line_needs_a_device_or_a_channel(tmp_path):
    assert "lines.bob.channel" in error(tmp_path, '[lines.bob]\ncontext = "x"\n')


def test_devices_of_groups_the_lines_of_each_device(tmp_path):
    cfg = load(tmp_path, '[lines.bob]\ndevice = "PJSIP/201"\n[lines.desk]\ndevice = "PJSIP/201"\n'
                         '[lines.line_1]\nchannel = "Local/x@y"\n')
    assert devices_of(cfg) == {"PJSIP/201": ["bob", "desk"]}


def test_readme_and_example_show_device_lines(tmp_path):
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert re.search(r"^# device = ", (root / "asttapi.example.toml").read_text(), re.M)
    readme = (root / "README.md").read_text()
    snippet = re.search(r"### No dialplan change at all.*?```toml\n(.*?)```", readme, re.S).group(1)
    cfg = load(tmp_path, snippet)
    assert devices_of(cfg) == {"PJSIP/201": ["bob"]}
