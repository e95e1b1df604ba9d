"""config.load_config: a valid file, one clear line for every kind of error, flags win."""

from __future__ import annotations

import pytest

from asttapi_server.config import DEMO_LINES, Config, LineConfig, load_config
from asttapi_server.errors import ConfigError

VALID = """
[ami]
host = "pbx.example.org"
port = 5039
username = "tapi"
secret = "s3cret"
auth = "plain"
keepalive = 15
pong_timeout = 5.5
action_timeout = 20
originate_timeout = 25

[server]
listen = ["tcp:5039:interface=127.0.0.1", "tcp:6039"]
max_line_bytes = 32768
send_buffer_bytes = 65536
replay_ring = 500

[lines.line_1]
channel = "PJSIP/bob"
context = "trunklocal"
callerid = "\\"Bob\\" <201>"

[lines."sip/bobbett"]
channel = "PJSIP/bobbett"

[users.alice]
token = "tok-alice-0123456789"
lines = ["line_1", "sip/*"]

[users.bob]
token = "tok-bob-0123456789ab"

[calls]
hangup_grace = 2
max_age = 3600
linger = 0

[plugins]
enabled = ["crm_sql"]
lookup_timeout = 1.5

[plugins.crm_sql]
database = "crm.sqlite"
query = "SELECT name FROM contacts WHERE phone = ?"
"""


def write(tmp_path, text, name="asttapi.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def error_of(tmp_path, text, overrides=None):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides or {})
    message = str(info.value)
    assert "\n" not in message, message
    return path, message


def test_valid_file(tmp_path):
    path = write(tmp_path, VALID)
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.source == path
    assert cfg.demo is False
    assert (cfg.ami.host, cfg.ami.port, cfg.ami.username, cfg.ami.secret, cfg.ami.auth) == (
        "pbx.example.org", 5039, "tapi", "s3cret", "plain")
    assert (cfg.ami.keepalive, cfg.ami.pong_timeout, cfg.ami.action_timeout,
            cfg.ami.originate_timeout) == (15.0, 5.5, 20.0, 25.0)
    assert cfg.server.listen == ("tcp:5039:interface=127.0.0.1", "tcp:6039")
    assert (cfg.server.max_line_bytes, cfg.server.send_buffer_bytes, cfg.server.replay_ring) == (
        32768, 65536, 500)
    assert cfg.lines["line_1"] == LineConfig("line_1", "PJSIP/bob", "trunklocal", '"Bob" <201>')
    assert cfg.lines["sip/bobbett"] == LineConfig("sip/bobbett", "PJSIP/bobbett", "default", None)
    assert cfg.users["alice"].lines == ("line_1", "sip/*")
    assert cfg.users["bob"].lines == ("*",)
    assert (cfg.calls.hangup_grace, cfg.calls.max_age, cfg.calls.linger) == (2.0, 3600.0, 0.0)
    assert cfg.plugins.enabled == ("crm_sql",)
    assert cfg.plugins.lookup_timeout == 1.5
    assert cfg.plugins.settings["crm_sql"]["database"] == "crm.sqlite"


def test_config_is_frozen_and_secrets_stay_out_of_repr(tmp_path):
    cfg = load_config(write(tmp_path, VALID))
    with pytest.raises(AttributeError):
        cfg.ami.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.lines["x"] = None  # type: ignore[index]
    assert "s3cret" not in repr(cfg)
    assert "tok-alice" not in repr(cfg)


def test_defaults_without_file_are_demo_with_two_lines():
    cfg = load_config(None)
    assert cfg.demo is True
    assert cfg.ami.host is None
    assert cfg.server.listen == ("tcp:5039:interface=127.0.0.1",)
    assert dict(cfg.lines) == dict(DEMO_LINES)
    assert cfg.lines["line_1"].channel == "Local/bob@phones"
    assert cfg.lines["line_1"].context == "trunklocal"
    assert cfg.lines["line_2"].channel == "Local/bobbett@phones"
    assert (cfg.calls.hangup_grace, cfg.calls.max_age) == (5.0, 14400.0)


def test_file_without_host_is_demo_but_keeps_its_own_lines(tmp_path):
    cfg = load_config(write(tmp_path, '[lines.desk]\nchannel = "PJSIP/desk"\n'))
    assert cfg.demo is True
    assert list(cfg.lines) == ["desk"]


def test_demo_flag_wins_over_a_host(tmp_path):
    path = write(tmp_path, VALID)
    assert load_config(path, {"demo": True}).demo is True
    assert load_config(path, {"demo": True}).ami.host == "pbx.example.org"


def test_overrides_win_over_the_file(tmp_path):
    path = write(tmp_path, VALID)
    cfg = load_config(path, {
        "ami.host": "other", "ami.port": "6000", "ami.username": "u", "ami.secret": "x",
        "server.listen": ["tcp:7000"], "ami.auth": None,
    })
    assert (cfg.ami.host, cfg.ami.port, cfg.ami.username, cfg.ami.secret) == ("other", 6000, "u", "x")
    assert cfg.ami.auth == "plain"  # None = flag not given
    assert cfg.server.listen == ("tcp:7000",)


def test_listen_may_be_a_single_string(tmp_path):
    cfg = load_config(write(tmp_path, '[server]\nlisten = "tcp:6001"\n'))
    assert cfg.server.listen == ("tcp:6001",)


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ('[ami]\nport = "abc"\n', "ami.port", "expected an integer 1-65535, got 'abc'"),
        ("[ami]\nport = 70000\n", "ami.port", "expected an integer 1-65535, got 70000"),
        ("[ami]\nport = true\n", "ami.port", "expected an integer 1-65535, got True"),
        ("[ami]\nhost = 12\n", "ami.host", "expected a string, got 12"),
        ('[ami]\nauth = "sha1"\n', "ami.auth", "expected \"md5\" or \"plain\", got 'sha1'"),
        ("[ami]\nkeepalive = 0\n", "ami.keepalive", "expected a number of seconds > 0, got 0"),
        ('[ami]\naction_timeout = "x"\n', "ami.action_timeout", "expected a number of seconds > 0"),
        ("[server]\nlisten = 5039\n", "server.listen", "expected an endpoint string or a list of them"),
        ("[server]\nlisten = []\n", "server.listen", "at least one"),
        ('[server]\nlisten = ["tcp:abc"]\n', "server.listen", "expected a Twisted server endpoint string"),
        ('[server]\nlisten = ["bogus:1"]\n', "server.listen", "expected a Twisted server endpoint string"),
        ("[server]\nreplay_ring = -1\n", "server.replay_ring", "expected an integer >= 0, got -1"),
        ("[server]\nmax_line_bytes = 10\n", "server.max_line_bytes", "expected an integer >= 1024"),
        ('[lines.line_1]\ncontext = "x"\n', "lines.line_1.channel", "expected a non-empty string, but it is missing"),
        ('[lines.line_1]\nchannel = ""\n', "lines.line_1.channel", "expected a non-empty string, got ''"),
        ('[lines]\nline_1 = "PJSIP/bob"\n', "lines.line_1", "expected a table [lines.line_1]"),
        ('[lines."bad name"]\nchannel = "x"\n', "lines.bad name", "expected a line name without spaces"),
        ('[users.a]\nlines = ["*"]\n', "users.a.token", "expected a non-empty string, but it is missing"),
        ('[users.a]\ntoken = "t-0123456789abcdef"\nlines = "line_1"\n', "users.a.lines", "expected a list of line names or glob patterns"),
        ('[lines.l1]\nchannel = "x"\n[users.a]\ntoken = "t-0123456789abcdef"\nlines = ["l2"]\n', "users.a.lines", "got 'l2'"),
        ("[calls]\nhangup_grace = -1\n", "calls.hangup_grace", "expected a number of seconds >= 0, got -1"),
        ('[plugins]\nenabled = "crm_sql"\n', "plugins.enabled", "expected a list of plugin names"),
        ("[plugins]\nlookup_timeout = 0\n", "plugins.lookup_timeout", "expected a number of seconds > 0"),
        ('demo = "yes"\n', "demo", "expected true or false, got 'yes'"),
        ('ami = "x"\n', "ami", "expected a table [ami]"),
    ],
)
def test_wrong_value_gives_one_line_with_file_key_and_expectation(tmp_path, text, key, expected):
    path, message = error_of(tmp_path, text)
    assert message.startswith(f"{path}: key '{key}': "), message
    assert expected in message, message


@pytest.mark.parametrize(
    "text, key",
    [
        ("[ami]\nhots = 'pbx'\n", "ami.hots"),
        ("[server]\nport = 1\n", "server.port"),
        ("[lines.l1]\nchannel = 'x'\nchanel = 'y'\n", "lines.l1.chanel"),
        ("[users.u]\ntoken = 't-0123456789abcdef'\npassword = 'p'\n", "users.u.password"),
        ("[calls]\ngrace = 1\n", "calls.grace"),
        ("[amii]\nhost = 'x'\n", "amii"),
        ("verbose = true\n", "verbose"),
    ],
)
def test_unknown_key_names_file_key_and_what_is_allowed(tmp_path, text, key):
    path, message = error_of(tmp_path, text)
    assert message.startswith(f"{path}: unknown key '{key}' (expected one of: "), message


def test_unknown_plugin_key_that_is_not_a_table(tmp_path):
    path, message = error_of(tmp_path, "[plugins]\ncrm = 1\n")
    assert message.startswith(f"{path}: unknown key 'plugins.crm'"), message
    assert "[plugins.crm] table" in message


def test_bad_toml_names_the_file_and_position(tmp_path):
    path, message = error_of(tmp_path, "[ami\nhost = 1\n")
    assert message.startswith(f"{path}: not valid TOML: "), message
    assert "line 1" in message


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read the configuration file: it does not exist"):
        load_config(path)


def test_bad_override_names_the_flag(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(None, {"ami.port": "fifty"})
    assert str(info.value) == "command line: --ami-port: expected an integer 1-65535, got 'fifty'"
    with pytest.raises(ConfigError, match=r"^command line: --listen: expected a Twisted server endpoint"):
        load_config(None, {"server.listen": ["tcp:nope"]})


def test_calls_state_file(tmp_path, monkeypatch):
    from asttapi_server.service import state_file_path

    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)
    default = load_config(None, {"ami.host": "pbx"})
    assert default.calls.state_file is None and state_file_path(default, False) == str(tmp_path / "asttapi-calls.json")
    assert state_file_path(load_config(None), True) == ""  # demo mode: no store unless configured
    path = tmp_path / "a.toml"
    path.write_text('[calls]\nstate_file = "/var/lib/asttapi/calls.json"\n')
    assert state_file_path(load_config(str(path)), True) == "/var/lib/asttapi/calls.json"
    path.write_text('[ami]\nhost = "pbx"\n[calls]\nstate_file = ""\n')
    assert state_file_path(load_config(str(path)), False) == ""  # off
    _, message = error_of(tmp_path, "[calls]\nstate_file = 1\n")
    assert message.endswith("key 'calls.state_file': expected a string, got 1")


def test_the_call_store_lives_in_the_state_directory_or_beside_the_file(tmp_path, monkeypatch):
    """Never relative to wherever the server happens to run (issue 23): systemd's StateDirectory=, else
    the folder of the configuration file."""
    from asttapi_server.service import state_file_path

    etc = tmp_path / "etc"
    etc.mkdir()
    path = etc / "asttapi.toml"
    path.write_text('[ami]\nhost = "pbx"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert state_file_path(load_config(str(path)), False) == str(etc / "asttapi-calls.json")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/asttapi:/var/lib/other")
    assert state_file_path(load_config(str(path)), False) == "/var/lib/asttapi/asttapi-calls.json"
    from asttapi_server.store import default_state_path  # the call webhooks' outbox: the same rule

    assert default_state_path("asttapi-webhooks.sqlite", str(path)) == "/var/lib/asttapi/asttapi-webhooks.sqlite"
    path.write_text('[ami]\nhost = "pbx"\n[calls]\nstate_file = "calls/live.json"\n')
    assert load_config(str(path)).calls.state_file == "/var/lib/asttapi/calls/live.json"
    monkeypatch.delenv("STATE_DIRECTORY")
    assert load_config(str(path)).calls.state_file == str(etc / "calls" / "live.json")
