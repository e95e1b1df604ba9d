"""Issue 11, a broken or hostile PBX on the AMI link: logs stay small, escaped and secret-free."""

from __future__ import annotations

import pytest
from twisted.logger import capturedLogs, formatEvent

from asttapi_server.ami import actions

from .fakes import FakeAsterisk

SECRET = "s3cret-Pa55word"


@pytest.fixture
def pbx():
    return FakeAsterisk()


def text_of(logged) -> str:
    return "\n".join(formatEvent(e) for e in logged)


def started(pbx, **kw):
    client = pbx.client(secret=SECRET, **kw)
    client.startService()
    return client, pbx.accept()


def test_header_less_garbage_is_logged_through_one_throttle_and_escaped():
    """Item 8: each garbage block wrote one unthrottled line (224.7 MB in 45 s)."""
    pbx = FakeAsterisk()
    _client, session = started(pbx)
    pbx.login_md5(session)
    with capturedLogs() as logged:
        for i in range(5000):
            session.send(b"garbage \x1b[31m%d\x85 no colon here\r\n\r\n" % i)
    lines = [formatEvent(e) for e in logged]
    assert len(lines) == 1, lines[:3]
    assert "\x1b" not in lines[0] and "\\x1b" in lines[0]


def test_a_pbx_echoing_a_plain_login_never_puts_the_secret_in_the_log():
    """Item 10: a PBX that echoes the Login action."""
    pbx = FakeAsterisk()
    with capturedLogs() as logged:
        client, session = started(pbx, auth="plain")
        (login,) = session.actions()
        assert login.get("Secret") == SECRET
        echo = actions.login("asttapi", SECRET).encode(login.action_id)
        session.send(echo)  # verbatim
        session.send(echo.replace(b"Action: Login\r\n", b""))  # as headers of no known kind
        session.send(echo.replace(b": ", b" "))  # as header-less garbage
        session.send(b"Response: Error\r\nActionID: %s\r\nMessage: %s\r\n\r\n"
                     % (login.action_id.encode(), echo.replace(b"\r\n", b" ")))
        pbx.reactor.advance(60)
    assert not client.connected
    out = text_of(logged)
    assert "LOGIN REFUSED" in out
    assert SECRET not in out


def test_a_pbx_echoing_an_md5_login_never_puts_the_key_in_the_log():
    pbx = FakeAsterisk()
    with capturedLogs() as logged:
        _client, session = started(pbx)
        (ch,) = session.actions()
        session.send(b"Response: Success\r\nActionID: %s\r\nChallenge: 1234\r\n\r\n" % ch.action_id.encode())
        (login,) = session.actions()
        key = login.get("Key")
        assert key == actions.md5_key("1234", SECRET)
        session.send(b"Response: Error\r\nActionID: %s\r\nMessage: bad Key %s for %s\r\n\r\n"
                     % (login.action_id.encode(), key.encode(), SECRET.encode()))
    out = text_of(logged)
    assert "LOGIN REFUSED" in out
    assert key not in out and SECRET not in out


@pytest.mark.parametrize("text, shown", [
    ("Secret: abc", "Secret: ********"),
    ("Action: Login Username: u KEY:  0123abcd Events: on", "Action: Login Username: u KEY:  ******** Events: on"),
    ("monkey: 1", "monkey: 1"),
])
def test_scrub_text(text, shown):
    assert actions.scrub_text(text) == shown


def test_scrub_headers():
    assert actions.scrub([("Username", "u"), ("secret", "x"), ("Key", "y")]) == [
        ("Username", "u"), ("secret", "********"), ("Key", "********")]
