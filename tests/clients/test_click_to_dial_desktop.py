"""contrib/'s tel:/callto: handlers: the xdg desktop entry registers, and every handler runs `asttapi dial`."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DESKTOP = ROOT / "contrib" / "asttapi-dial.desktop"


def entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive in desktop entries
    parser.read_string(DESKTOP.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


def test_the_desktop_entry_hands_the_link_to_asttapi_dial():
    e = entry()
    assert e["Type"] == "Application"
    assert e["Exec"] == "asttapi dial --notify %u"  # %u: one URL, quoted by the launcher
    assert e["MimeType"].split(";")[:2] == ["x-scheme-handler/tel", "x-scheme-handler/callto"]
    assert e["Terminal"] == "false" and e["NoDisplay"] == "true"


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None,
                    reason="desktop-file-validate missing (Debian: apt-get install desktop-file-utils)")
def test_the_desktop_entry_is_valid():
    run = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == "", run.stdout + run.stderr


@pytest.mark.skipif(shutil.which("xdg-mime") is None, reason="xdg-mime missing (Debian: apt-get install xdg-utils)")
def test_the_documented_install_steps_make_it_the_default_handler(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_DIRS": str(tmp_path / "data")}
    apps = tmp_path / "data" / "applications"
    apps.mkdir(parents=True)
    shutil.copy(DESKTOP, apps / "asttapi-dial.desktop")
    subprocess.run(["xdg-mime", "default", "asttapi-dial.desktop", "x-scheme-handler/tel",
                    "x-scheme-handler/callto"], env=env, check=True)
    for scheme in ("tel", "callto"):
        query = subprocess.run(["xdg-mime", "query", "default", f"x-scheme-handler/{scheme}"],
                               env=env, capture_output=True, text=True, check=True)
        assert query.stdout.strip() == "asttapi-dial.desktop"
    docs = (ROOT / "docs" / "click-to-dial.md").read_text()
    assert "xdg-mime default asttapi-dial.desktop x-scheme-handler/tel x-scheme-handler/callto" in docs


def test_the_windows_and_macos_handlers_run_the_same_command():
    reg = (ROOT / "contrib" / "windows" / "asttapi-dial.reg").read_bytes()
    assert reg.startswith(b"Windows Registry Editor Version 5.00\r\n")
    text = reg.decode("ascii")
    assert '-m asttapi_server.cli dial --notify \\"%1\\""' in text
    assert '"tel"="AstTapi.Dial"' in text and '"callto"="AstTapi.Dial"' in text
    script = (ROOT / "contrib" / "macos" / "asttapi-dial.applescript").read_text()
    assert "on open location theURL" in script and "asttapi dial --notify \" & quoted form of theURL" in script
