"""``asttapi dial tel:...`` as a desktop's tel: handler runs it: a link, the client settings file, no terminal."""

from __future__ import annotations

import io
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest
from twisted.internet import defer, reactor, threads
from twisted.trial.unittest import TestCase

from asttapi_server import cli
from asttapi_server.config import load_config
from asttapi_server.demo.scenarios import Timing
from asttapi_server.service import make_service
from tests.ops.loopback import until

TOKEN = "a-token-of-24-characters"


def fake_notifier(directory: Path) -> Path:
    """A notify-send that writes its arguments to a file, first on PATH."""
    log = directory / "notified.txt"
    script = directory / "notify-send"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" >> {log}\n")
    script.chmod(0o755)
    return log


class WholeServerDialTests(TestCase):
    """The demo PBX behind a real server with a [dial] rule; the CLI in a thread, as a user runs it."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        # not trial's mktemp(): that leaves a directory in the working directory
        self.dir = Path(tempfile.mkdtemp(prefix="asttapi-dial-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        config = self.dir / "asttapi.toml"
        config.write_text(f"""
[server]
listen = ["tcp:0:interface=127.0.0.1"]
[web]
listen = []
[dial]
region = "DE"
outside = "0"
area_code = "30"
own_numbers = ["+49 30 9876 5"]
[users.alice]
token = "{TOKEN}"
""")
        self.app = make_service(load_config(str(config)), reactor,
                                demo_options={"timing": Timing.fast(), "autoplay": False})
        self.app.startService()
        self.addCleanup(self.app.stopService)
        self.port = (yield self.app.listeners[0].whenListening()).getHost().port
        yield until(lambda: self.app.bridge.link_up)
        token = self.dir / "token"
        token.write_text(TOKEN + "\n")
        token.chmod(0o600)
        self.settings = self.dir / "client.toml"
        self.settings.write_text(f'port = {self.port}\nuser = "alice"\ntoken_file = "token"\nline = "line_1"\n')

    def run_cli(self, *argv: str):
        out = io.StringIO()
        d = threads.deferToThread(cli.main, ["--config", str(self.settings), *argv], out)
        return d.addCallback(lambda rc: (rc, out.getvalue()))

    @defer.inlineCallbacks
    def test_a_tel_link_dials_outside_line_and_national_form_on_the_line_of_the_settings(self):
        rc, out = yield self.run_cli("dial", "tel:+49-30-1234567")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^call #\d+ placed on line_1 to tel:\+49-30-1234567: dialling 00301234567\n$")
        (call,) = [c for c in self.app.model.live_calls()]
        self.assertEqual(call.callinfo["calledid"], "00301234567")

    @defer.inlineCallbacks
    def test_callto_links_and_the_pbxs_own_numbers(self):
        rc, out = yield self.run_cli("dial", "callto://+49309876599")
        self.assertEqual(rc, 0)
        self.assertIn("dialling 99", out)  # one of the PBX's own numbers: internally, no outside line
        rc, out = yield self.run_cli("dial", "line_2", "+44 20 7946 0958")
        self.assertEqual(rc, 0)
        self.assertIn("placed on line_2 to +44 20 7946 0958: dialling 000442079460958", out)

    @defer.inlineCallbacks
    def test_a_local_number_of_elsewhere_is_refused_in_plain_words_and_notified(self):
        log = fake_notifier(self.dir)
        self.patch(os, "environ", {**os.environ, "PATH": f"{self.dir}{os.pathsep}{os.environ['PATH']}"})
        rc, _out = yield self.run_cli("dial", "--notify", "tel:7042;phone-context=example.com")
        self.assertEqual(rc, 1)
        notified = log.read_text()
        self.assertIn("--urgency=critical", notified)
        self.assertIn("local number of example.com, not of this PBX", notified)
        self.assertEqual(self.app.model.live_calls(), [])
        rc, out = yield self.run_cli("dial", "--notify", "tel:+49-30-1234567")
        self.assertEqual(rc, 0)
        self.assertIn("--urgency=normal", log.read_text())
        self.assertIn(out.strip(), log.read_text())


def test_dial_without_a_line_says_where_to_give_one(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ASTTAPI_LINE", raising=False)
    monkeypatch.setenv(cli.CLIENT_CONFIG_ENV, str(tmp_path / "none.toml"))
    assert cli.main(["dial", "tel:+4930123"], io.StringIO()) == 2
    err = capsys.readouterr().err
    assert "which line?" in err and "none.toml" in err


@pytest.mark.parametrize("text, message", [
    ('port = "5039"', "key 'port': expected int, got str"),
    ("tls = 1", "key 'tls': expected bool, got int"),
    ('lines = "x"', "unknown key 'lines'"),
    ("port = ", "cannot read them"),
])
def test_a_wrong_client_setting_is_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "client.toml"
    path.write_text(text + "\n")
    assert cli.main(["--config", str(path), "calls", "line_1"], io.StringIO()) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_explicit_settings_file_must_exist_the_default_one_need_not(tmp_path, capsys, monkeypatch):
    assert cli.main(["--config", str(tmp_path / "missing.toml"), "calls", "x"], io.StringIO()) == 2
    assert "do not exist" in capsys.readouterr().err
    monkeypatch.setenv(cli.CLIENT_CONFIG_ENV, str(tmp_path / "missing.toml"))
    assert cli.load_client_config(cli.client_config_path(), required=False) == {}


def test_where_the_settings_live_on_each_platform(tmp_path):
    home = tmp_path
    assert cli.client_config_path({}, "linux", home) == home / ".config/asttapi/client.toml"
    assert cli.client_config_path({"XDG_CONFIG_HOME": "/x"}, "linux", home) == Path("/x/asttapi/client.toml")
    assert cli.client_config_path({}, "darwin", home) == home / "Library/Application Support/asttapi/client.toml"
    assert cli.client_config_path({"APPDATA": "C:/Users/a/AppData/Roaming"}, "win32", home) == \
        Path("C:/Users/a/AppData/Roaming/asttapi/client.toml")
    assert cli.client_config_path({cli.CLIENT_CONFIG_ENV: "/etc/a.toml"}, "linux", home) == Path("/etc/a.toml")


def test_a_token_file_others_can_read_is_warned_about(tmp_path, capsys):
    token = tmp_path / "token"
    token.write_text("secret-token\n")
    token.chmod(0o644)
    assert cli._read_token(str(token)) == "secret-token"
    assert "can be read by other users" in capsys.readouterr().err
    token.chmod(stat.S_IRUSR | stat.S_IWUSR)
    cli._read_token(str(token))
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell script as the fake notifier")
def test_notify_uses_notify_send_and_a_desktop_without_one_only_misses_the_message(tmp_path, monkeypatch):
    log = fake_notifier(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    cli.notify('call #5 placed "quoted"', failed=False, platform="linux")
    assert log.read_text().splitlines() == ["--app-name=asttapi", "--urgency=normal", "asttapi dial",
                                            'call #5 placed "quoted"']
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    cli.notify("nothing to show it", failed=True, platform="linux")  # no notifier: no error
    cli.notify("nothing to show it", failed=True, platform="darwin")  # no osascript here: no error
