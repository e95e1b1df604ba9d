"""AMILink.state_line: the link and the last reason it is not up, for systemd's STATUS= and /readyz."""

from __future__ import annotations

import pytest
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from .fakes import FakeAsterisk, replay


@pytest.fixture
def pbx():
    return FakeAsterisk()


def watched(client):
    seen: list[str] = []
    client.add_state_observer(lambda: seen.append(client.state_line))
    return seen


def test_before_any_answer_it_is_connecting(pbx):
    client = pbx.client()
    assert client.state_line == "PBX link DOWN: connecting to pbx.example:5038"


def test_an_unreachable_pbx_is_named_as_such_and_the_reason_stays_through_retries(pbx):
    client = pbx.client()
    seen = watched(client)
    client.startService()
    pbx.refuse()
    assert client.state_line.startswith("PBX link DOWN: cannot reach pbx.example:5038: Connection was refused")
    pbx.reactor.advance(2.0)  # the retry is under way: the last reason still stands
    assert client.state_line == seen[-1]
    pbx.refuse()
    assert len(seen) == 1  # the same reason again is no news


def test_a_refused_login_says_so_without_the_secret(pbx):
    client = pbx.client(auth="plain", secret="wrong-secret")
    seen = watched(client)
    client.startService()
    session = pbx.accept()
    (login,) = session.actions()
    session.send(replay("02a_login_fail_wrong_secret.raw", {"login-1": login.action_id}))
    assert seen == [client.state_line]
    assert client.state_line.startswith(
        "PBX link DOWN: Asterisk at 127.0.0.1:5038 refused the AMI login as 'asttapi': 'Authentication failed'")
    assert "wrong-secret" not in client.state_line


def test_a_peer_that_is_not_asterisk(pbx):
    client = pbx.client()
    client.startService()
    pbx.accept(banner=b"HTTP/1.1 400 Bad Request\r\n")
    # (The fake transport's peer is 127.0.0.1:5038; a real one is the address connected to.)
    assert client.state_line == ("PBX link DOWN: 127.0.0.1:5038 is not an Asterisk manager "
                                 "(it said: 'HTTP/1.1 400 Bad Request'); check [ami] host and port")


def test_up_then_lost_then_up(pbx):
    client = pbx.client()
    seen = watched(client)
    client.startService()
    session = pbx.accept()
    pbx.login_md5(session)
    assert client.state_line == "PBX link up (pbx.example:5038)"
    session.close(Failure(ConnectionLost("Connection to the other side was lost")))
    assert client.state_line.startswith("PBX link DOWN: the link to pbx.example:5038 was lost: ")
    pbx.reactor.advance(2.0)
    pbx.login_md5(pbx.accept())
    assert seen[-1] == "PBX link up (pbx.example:5038)"
    assert [s.split(":")[0] for s in seen] == ["PBX link up (pbx.example", "PBX link DOWN",
                                               "PBX link up (pbx.example"]


def test_an_asterisk_shutdown_is_the_reason(pbx):
    client = pbx.client()
    client.startService()
    session = pbx.accept()
    pbx.login_md5(session)
    session.send(b"Event: Shutdown\r\nPrivilege: system,all\r\nShutdown: Cleanly\r\nRestart: True\r\n\r\n")
    assert client.state_line == "PBX link DOWN: Asterisk at pbx.example:5038 is shutting down"
    session.close()
    assert client.state_line == "PBX link DOWN: Asterisk at pbx.example:5038 is shutting down"
