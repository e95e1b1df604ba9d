"""Users, tokens, line patterns and listen endpoint safety."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from asttapi_server.clients.auth import ANONYMOUS, Authenticator, check_listen_security, is_loopback_endpoint
from asttapi_server.errors import ConfigError


@dataclass(frozen=True)
class UserConfig:  # the shape of config.UserConfig
    name: str
    token: str
    lines: tuple[str, ...] = ("*",)


def test_authenticate_with_config_objects_and_mappings():
    auth = Authenticator({"alice": UserConfig("alice", "tok", ("line_*",)), "bob": {"token": "b"}})
    assert auth.login_required
    alice = auth.authenticate("alice", "tok")
    assert alice.name == "alice" and alice.may_open("line_1") and not alice.may_open("sip/bob")
    assert auth.authenticate("alice", "tok2") is None
    assert auth.authenticate("alice", "") is None
    assert auth.authenticate("carol", "tok") is None
    assert auth.authenticate("bob", "b").may_open("anything")
    assert "tok" not in repr(alice)


def test_patterns_are_case_sensitive_globs():
    auth = Authenticator({"u": {"token": "t", "lines": ["sip/bob", "line_[12]", "queue-?"]}})
    u = auth.authenticate("u", "t")
    assert [u.may_open(x) for x in ("sip/bob", "SIP/bob", "line_1", "line_3", "queue-a", "queue-ab")] == [
        True, False, True, False, True, False,
    ]


def test_no_users_means_anonymous_everything():
    assert not Authenticator({}).login_required
    assert ANONYMOUS.may_open("whatever")


@pytest.mark.parametrize(
    "endpoint, loopback",
    [
        ("tcp:5039:interface=127.0.0.1", True),
        ("tcp:port=5039:interface=127.0.0.2", True),
        ("tcp6:5039:interface=\\:\\:1", True),
        ("tcp:5039:interface=localhost", True),
        ("ssl:5040:privateKey=k.pem:certKey=c.pem:interface=127.0.0.1", True),
        ("unix:/run/asttapi.sock", True),
        ("tcp:5039", False),
        ("tcp:5039:interface=0.0.0.0", False),
        ("tcp:5039:interface=192.168.1.10", False),
        ("tcp6:5039:interface=\\:\\:", False),
        ("ssl:5040:privateKey=k.pem", False),
        ("systemd:domain=INET:index=0", False),
    ],
)
def test_loopback_endpoints(endpoint, loopback):
    assert is_loopback_endpoint(endpoint) is loopback


def test_check_listen_security():
    check_listen_security(["tcp:5039:interface=127.0.0.1"], {})
    check_listen_security(["tcp:5039"], {"a": {"token": "t"}})
    with pytest.raises(ConfigError, match="tcp:5039:interface=0.0.0.0"):
        check_listen_security(["tcp:5039:interface=127.0.0.1", "tcp:5039:interface=0.0.0.0"], {})
