"""[pbx.NAME] tables: several PBXs in one configuration (issue 25 item 1); errors are one line."""

from __future__ import annotations

import pytest

from asttapi_server.config import load_config
from asttapi_server.errors import ConfigError


def load(tmp_path, text, overrides=None, environ=None):
    path = tmp_path / "asttapi.toml"
    path.write_text(text)
    return load_config(str(path), overrides or {}, environ=environ or {})


def test_ami_is_one_pbx_named_default(tmp_path):
    config = load(tmp_path, '[ami]\nhost = "pbx.example"\n')
    assert list(config.pbxs) == ["default"] and config.pbxs["default"] == config.ami
    assert config.ami.host == "pbx.example" and not config.demo


def test_pbx_tables_take_the_keys_of_ami(tmp_path):
    secret = tmp_path / "branch.secret"
    secret.write_text("s3cret\n")
    config = load(tmp_path, (
        '[pbx.hq]\nhost = "10.0.0.1"\nusername = "tapi"\nsecret = "a"\nauth = "plain"\noriginate_timeout = 20\n'
        f'[pbx.branch]\nhost = "10.1.0.1"\nport = 5039\nsecret_file = "{secret}"\n'
        '[lines.desk]\nchannel = "PJSIP/201"\npbx = "branch"\n'
        '[lines.phone]\ndevice = "PJSIP/301"\npbx = "hq"\n'))
    assert list(config.pbxs) == ["hq", "branch"]
    hq, branch = config.pbxs["hq"], config.pbxs["branch"]
    assert (hq.host, hq.username, hq.secret, hq.auth, hq.originate_timeout) == ("10.0.0.1", "tapi", "a", "plain", 20)
    assert (branch.host, branch.port, branch.secret) == ("10.1.0.1", 5039, "s3cret")
    assert config.ami == hq  # the first PBX, for what reads one
    assert config.lines["desk"].pbx == "branch" and config.lines["phone"].pbx == "hq"


@pytest.mark.parametrize("text, error", [
    ('[ami]\nhost = "a"\n[pbx.b]\nhost = "b"\n',
     "keys 'ami' and 'pbx': expected [ami] (one PBX) or [pbx.NAME] tables (several), not both"),
    ('[pbx.hq]\nhost = "a"\nport = "x"\n', "key 'pbx.hq.port': expected an integer 1-65535"),
    ('[pbx.hq]\nhost = "a"\nfoo = 1\n', "unknown key 'pbx.hq.foo'"),
    ('[pbx."h q"]\nhost = "a"\n', "key 'pbx.h q': expected a PBX name"),
    ('pbx = 3\n', "key 'pbx': expected [pbx.NAME] tables"),
    ('[pbx.hq]\nhost = "a"\n[lines.x]\nchannel = "PJSIP/1"\npbx = "nowhere"\n',
     "key 'lines.x.pbx': expected one of the configured PBXs (hq), got 'nowhere'"),
    ('[pbx.hq]\nhost = "a"\n[pbx.br]\nhost = "b"\n[lines.x]\ndevice = "PJSIP/1"\n',
     "key 'lines.x.pbx': a device line needs its PBX when there are several; expected one of hq, br"),
    ('[ami]\nhost = "a"\ndemo_pbxs = 2\n', "unknown key 'ami.demo_pbxs'"),
    ('demo_pbxs = 2\n[ami]\nhost = "a"\n', "key 'demo_pbxs': only for the demo PBX"),
    ('demo_pbxs = 9\n', "key 'demo_pbxs': expected an integer 1-5"),
    ('[pbx.hq]\nhost = "a"\n[pbx.br]\nport = 5039\n',
     "key 'pbx.br.host': expected the Asterisk's host name or address (the other PBXs have one"),
])
def test_mistakes_are_one_line(tmp_path, text, error):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text)
    message = str(raised.value)
    assert error in message and "\n" not in message


def test_one_pbx_device_lines_need_no_pbx(tmp_path):
    config = load(tmp_path, '[pbx.hq]\nhost = "a"\n[lines.x]\ndevice = "PJSIP/1"\n')
    assert config.lines["x"].pbx is None


def test_the_environment_secret_stays_with_ami_only(tmp_path):
    config = load(tmp_path, '[pbx.hq]\nhost = "a"\nsecret = "file"\n', environ={"ASTTAPI_AMI_SECRET": "env"})
    assert config.pbxs["hq"].secret == "file"


def test_two_demo_pbxs_have_lines_of_their_own(tmp_path):
    config = load_config(None, {"demo_pbxs": "2"})
    assert config.demo and list(config.pbxs) == ["pbx1", "pbx2"]
    assert {name: line.pbx for name, line in config.lines.items()} == {
        "line_1": "pbx1", "line_2": "pbx1", "line_3": "pbx1", "line_4": "pbx2", "line_5": "pbx2"}
    assert load_config(None).lines["line_1"].pbx is None  # one demo PBX: as before


def test_demo_pbx_tables_are_demo_pbxs(tmp_path):
    config = load(tmp_path, 'demo = true\n[pbx.hq]\n[pbx.branch]\n[lines.a]\nchannel = "Local/a@phones"\npbx = "hq"\n')
    assert config.demo and list(config.pbxs) == ["hq", "branch"]
