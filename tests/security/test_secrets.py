"""Item 10 of issue 11 (config side): secrets stay out of errors, logs and ``ps``; tokens are long."""

from __future__ import annotations

import pytest

from asttapi_server.config import MIN_TOKEN_LENGTH, load_config
from asttapi_server.errors import ConfigError

GOOD = "0123456789abcdef-good"


def _error(tmp_path, text: str, **kw) -> str:
    path = tmp_path / "asttapi.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(str(path), **kw)
    message = str(e.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "text, value, key",
    [
        ("[ami]\nsecret = 987654321987\n", "987654321987", "ami.secret"),
        ("[ami]\nsecret = ['hunter2-hunter2']\n", "hunter2", "ami.secret"),
        ("[users.crm]\ntoken = 123456789012345678901\n", "123456789012345678901", "users.crm.token"),
        ("[users.crm]\ntoken = ['tok-tok-tok-tok-tok']\n", "tok-tok", "users.crm.token"),
        ("[users.crm]\ntoken = 'short-s3cr'\n", "short-s3cr", "users.crm.token"),
    ],
)
def test_config_errors_never_echo_a_secret(tmp_path, text, value, key):
    # The issue: "config errors echo a mistyped secret or token value".
    message = _error(tmp_path, text)
    assert f"key '{key}'" in message and value not in message, message


def test_short_token_is_refused_with_one_line(tmp_path):
    message = _error(tmp_path, "[users.crm]\ntoken = 'x'\n")
    assert message.endswith(
        f"key 'users.crm.token': expected a token of at least {MIN_TOKEN_LENGTH} characters "
        "(e.g. from `openssl rand -base64 24`), got one of 1"
    )


def test_secret_file_and_token_file(tmp_path):
    (tmp_path / "ami.secret").write_text("from-the-file\n")
    (tmp_path / "crm.token").write_text(GOOD + "\r\n")
    path = tmp_path / "a.toml"
    path.write_text(f"[ami]\nsecret_file = '{tmp_path}/ami.secret'\n"
                    f"[users.crm]\ntoken_file = '{tmp_path}/crm.token'\n")
    cfg = load_config(str(path), environ={})
    assert cfg.ami.secret == "from-the-file" and cfg.users["crm"].token == GOOD
    assert "from-the-file" not in repr(cfg) and GOOD not in repr(cfg)


def test_relative_secret_files_come_from_systemds_credentials_or_beside_the_file(tmp_path, monkeypatch):
    """One configuration for the unit (LoadCredential=NAME:...) and for a run by hand (issue 23)."""
    from tests.security.tlsutil import make_cert

    etc, creds = tmp_path / "etc", tmp_path / "credentials"
    etc.mkdir()
    creds.mkdir()
    text = ("[ami]\nhost = 'pbx'\nsecret_file = 'ami.secret'\n[users.crm]\ntoken_file = 'crm.token'\n"
            "[server]\nlisten = 'ssl:5040:interface=127.0.0.1:privateKey=tls.key:certKey=tls.crt'\n")
    (etc / "asttapi.toml").write_text(text)
    for folder, secret in ((etc, "by-hand-secret"), (creds, "credential-secret")):
        (folder / "ami.secret").write_text(secret + "\n")
        (folder / "crm.token").write_text(f"{secret}-token-0123456789\n")
        key, cert = make_cert(folder)
        cert.rename(folder / "tls.crt")
        key.rename(folder / "tls.key")
    monkeypatch.chdir(tmp_path)  # never the working directory
    by_hand = load_config(str(etc / "asttapi.toml"), environ={})
    assert by_hand.ami.secret == "by-hand-secret" and by_hand.users["crm"].token.startswith("by-hand-secret")
    assert by_hand.server.listen == (f"ssl:5040:interface=127.0.0.1:privateKey={etc}/tls.key:certKey={etc}/tls.crt",)
    unit = load_config(str(etc / "asttapi.toml"), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert unit.ami.secret == "credential-secret" and unit.users["crm"].token.startswith("credential-secret")
    assert unit.server.listen == (
        f"ssl:5040:interface=127.0.0.1:privateKey={creds}/tls.key:certKey={creds}/tls.crt",)
    # The configuration itself as a credential (--config ${CREDENTIALS_DIRECTORY}/asttapi.toml): the same.
    (creds / "asttapi.toml").write_text(text)
    inside = load_config(str(creds / "asttapi.toml"), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert inside.ami.secret == "credential-secret"
    # A credential the unit does not load is named, with the line that would load it.
    (creds / "crm.token").unlink()
    message = _error_at(etc / "asttapi.toml", environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert message == (f"{etc}/asttapi.toml: key 'users.crm.token_file': cannot read '{creds}/crm.token': No such "
                       "file or directory (not among the unit's credentials: add "
                       "LoadCredential=crm.token:/etc/asttapi/crm.token)")


def _error_at(path, environ) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ=environ)
    return str(info.value)


def test_environment_wins_over_the_file_and_the_command_line_over_both(tmp_path):
    (tmp_path / "ami.secret").write_text("from-the-file")
    path = tmp_path / "a.toml"
    path.write_text(f"[ami]\nsecret_file = '{tmp_path}/ami.secret'\n")
    env = {"ASTTAPI_AMI_SECRET": "from-the-env"}
    assert load_config(str(path), environ=env).ami.secret == "from-the-env"
    assert load_config(None, environ=env).ami.secret == "from-the-env"
    assert load_config(str(path), {"ami.secret": "from-cli"}, environ=env).ami.secret == "from-cli"
    assert load_config(str(path), environ={}).ami.secret == "from-the-file"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[ami]\nsecret = 'a'\nsecret_file = '/x'\n", "keys 'ami.secret' and 'ami.secret_file': expected one of them, not both"),
        ("[ami]\nsecret_file = '/nonexistent/ami.secret'\n",
         "key 'ami.secret_file': cannot read '/nonexistent/ami.secret': No such file or directory"),
        ("[users.u]\ntoken_file = '/nonexistent/t'\n", "key 'users.u.token_file': cannot read '/nonexistent/t'"),
        ("[users.u]\nlines = ['*']\n", "key 'users.u.token': expected a non-empty string, but it is missing "
                                        "(or give 'token_file', a file holding it)"),
    ],
)
def test_secret_file_errors(tmp_path, text, expected):
    assert expected in _error(tmp_path, text, environ={})


def test_empty_secret_file_is_an_error(tmp_path):
    (tmp_path / "empty").write_text("\n")
    assert "is empty" in _error(tmp_path, f"[users.u]\ntoken_file = '{tmp_path}/empty'\n")


def test_ami_secret_flag_still_works_but_warns_that_ps_shows_it():
    from twisted.logger import formatEvent

    from asttapi_server import tap

    from .helpers import capture_log

    opts = tap.Options()
    opts.parseOptions(["--ami-secret", "s3cr3t-on-the-command-line"])
    assert opts.config.ami.secret == "s3cr3t-on-the-command-line"
    seen, stop = capture_log()
    try:
        tap.makeService(opts)
    finally:
        stop()
    text = "\n".join(formatEvent(e) for e in seen)
    assert "--ami-secret is visible to every local user in `ps`" in text
    assert "secret_file" in text and "ASTTAPI_AMI_SECRET" in text
    assert "s3cr3t-on-the-command-line" not in text


def test_a_plugins_password_file_follows_the_same_rule(tmp_path, monkeypatch):
    """ldap_contacts' bind_password_file, carddav_contacts' password_file: credentials under the unit too."""
    from asttapi_server.plugin_host import Settings

    etc, creds = tmp_path / "etc", tmp_path / "credentials"
    etc.mkdir()
    creds.mkdir()
    (etc / "asttapi.toml").write_text("")
    (etc / "ldap-password").write_text("by-hand\n")
    (creds / "ldap-password").write_text("from-the-credential\n")
    config = load_config(str(etc / "asttapi.toml"), environ={})
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert Settings({"bind_password_file": "ldap-password"}, config).secret_file("bind_password_file") == "by-hand"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert (Settings({"bind_password_file": "ldap-password"}, config).secret_file("bind_password_file")
            == "from-the-credential")
