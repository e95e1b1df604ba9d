"""twistd glue: Options, the dropin, and a bad config failing in one clean line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.scripts.twistd import ServerOptions

from asttapi_server.tap import Options

ROOT = Path(__file__).resolve().parents[2]


def parse(argv):
    options = Options()
    options.parseOptions(argv)
    return options


def test_no_options_means_demo_on_loopback():
    cfg = parse([]).config
    assert cfg.demo is True
    assert cfg.server.listen == ("tcp:5039:interface=127.0.0.1",)
    assert set(cfg.lines) == {"line_1", "line_2", "line_3"}


def test_demo_pbxs_runs_two_demo_pbxs_with_lines_of_their_own():
    """`make run ARGS=--demo-pbxs=2`: what a newcomer types to see several PBXs."""
    cfg = parse(["--demo-pbxs=2"]).config
    assert cfg.demo is True and list(cfg.pbxs) == ["pbx1", "pbx2"]
    assert {line.pbx for line in cfg.lines.values()} == {"pbx1", "pbx2"}


def test_flags_become_config(tmp_path):
    cfg = parse([
        "--ami-host", "pbx", "--ami-port", "6038", "--ami-username", "u", "--ami-secret", "s",
        "--listen", "tcp:7001", "--listen", "tcp:7002:interface=127.0.0.1",
    ]).config
    assert (cfg.ami.host, cfg.ami.port, cfg.ami.username, cfg.ami.secret) == ("pbx", 6038, "u", "s")
    assert cfg.server.listen == ("tcp:7001", "tcp:7002:interface=127.0.0.1")
    assert cfg.demo is False


def test_flags_win_over_the_file(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('[ami]\nhost = "file-host"\nport = 1\nsecret = "f"\n')
    cfg = parse(["--config", str(path), "--ami-port", "2"]).config
    assert (cfg.ami.host, cfg.ami.port, cfg.ami.secret) == ("file-host", 2, "f")
    assert parse(["-c", str(path), "--demo"]).config.demo is True


def test_bad_config_exits_with_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[ami]\nport = 'abc'\n")
    with pytest.raises(SystemExit) as info:
        parse(["--config", str(path)])
    assert info.value.code == f"asttapi: {path}: key 'ami.port': expected an integer 1-65535, got 'abc'"


def test_bad_flag_exits_with_one_line():
    with pytest.raises(SystemExit) as info:
        parse(["--ami-port", "x"])
    assert info.value.code == "asttapi: command line: --ami-port: expected an integer 1-65535, got 'x'"


def test_twistd_style_parsing_keeps_standard_options(tmp_path):
    config = ServerOptions()
    config.parseOptions([
        "-n", "--pidfile", str(tmp_path / "p.pid"), "-l", str(tmp_path / "log"),
        "asttapi", "--listen", "tcp:7003",
    ])
    assert config.subCommand == "asttapi"
    assert config["nodaemon"]
    assert config["logfile"] == str(tmp_path / "log")
    assert config.subOptions.config.server.listen == ("tcp:7003",)


def test_dropin_is_discoverable():
    import twisted.plugins

    makers = {p.tapname: p for p in getPlugins(IServiceMaker, twisted.plugins)}
    assert "asttapi" in makers
    assert makers["asttapi"].options is Options


def test_no_init_py_above_the_dropin():
    assert (ROOT / "twisted" / "plugins" / "asttapi_plugin.py").is_file()
    assert not (ROOT / "twisted" / "__init__.py").exists()
    assert not (ROOT / "twisted" / "plugins" / "__init__.py").exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[ami]\nport = 'abc'\n", "key 'ami.port': expected an integer 1-65535, got 'abc'"),
        ("[ami]\nhots = 'x'\n", "unknown key 'ami.hots' (expected one of: host, port, "),
    ],
)
def test_twistd_with_bad_config_prints_one_line_no_traceback(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile", "", "asttapi", "--config", str(path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"asttapi: {path}: {expected}"), proc.stderr
    assert proc.stdout == ""
