"""A peer that is not an Asterisk manager is named as such, quickly, in one line.

Hand-made peers (a web server, an SSH daemon, a silent port, a TLS server),
against the scripted Asterisk of ``fakes``; all timing on a Clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.logger import LogLevel, capturedLogs, formatEvent

from asttapi_server.ami.protocol import GREETING_TIMEOUT, greeting_problem

from .fakes import BANNER, FakeAsterisk


@pytest.fixture
def pbx():
    return FakeAsterisk()


def lines(logs, level=None):
    return [formatEvent(e) for e in logs if level is None or e["log_level"] == level]


@pytest.mark.parametrize("first, shown", [
    (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n\r\n", "'HTTP/1.1 400 Bad Request'"),
    (b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", "'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3'"),
    (b"\r\n<html>" + b"x" * 300 + b"\n", "'<html>" + "x" * 54 + "'..."),
    (b"\x15\x03\x01\x00\x02\x02\x32\n", r"'\x15\x03\x01\x00\x02\x022'"),
])
def test_greeting_problem_shows_what_the_peer_said(first, shown):
    assert greeting_problem(first) == f"it said: {shown}"


@pytest.mark.parametrize("banner", [BANNER, b"Asterisk Call Manager/1.0\n", b"\r\nAsterisk Call Manager Proxy/1.25\r\n"])
def test_real_banners_pass(banner):
    assert greeting_problem(banner) is None


@pytest.mark.parametrize("first, said", [
    (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n\r\n", "'HTTP/1.1 400 Bad Request'"),
    (b"220 mail.example ESMTP Postfix\r\n", "'220 mail.example ESMTP Postfix'"),
])
def test_a_stranger_is_named_in_one_error_line_and_retried(pbx, first, said):
    client = pbx.client()
    client.startService()
    with capturedLogs() as logs:
        session = pbx.accept(banner=first)
    assert session.transport.aborted and not client.connected
    assert lines(logs, LogLevel.error) == [
        f"AMI: 127.0.0.1:5038 is not an Asterisk manager (it said: {said}); check [ami] host and port"
    ]
    assert not any("ignored" in line for line in lines(logs))  # its lines never reach the parser
    if first.startswith(b"HTTP"):  # README quotes this one, for pbx.example.org:80
        readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
        assert lines(logs, LogLevel.error)[0].replace("127.0.0.1:5038", "pbx.example.org:80") in readme
    pbx.reactor.advance(2.0)
    assert pbx.pending_connects() == 1  # keeps retrying with backoff


def test_a_silent_port_is_named_after_the_greeting_timeout(pbx):
    client = pbx.client(action_timeout=30.0)
    client.startService()
    with capturedLogs() as logs:
        session = pbx.accept(banner=b"")
        pbx.reactor.advance(GREETING_TIMEOUT - 0.1)
        assert not session.transport.aborted
        pbx.reactor.advance(0.1)
    assert session.transport.aborted
    assert lines(logs, LogLevel.error) == [
        f"AMI: 127.0.0.1:5038 is not an Asterisk manager (it sent nothing in {GREETING_TIMEOUT:g} s); "
        "check [ami] host and port"
    ]


def test_bytes_then_hang_up_is_judged_on_what_was_said(pbx):
    client = pbx.client()
    client.startService()
    with capturedLogs() as logs:
        session = pbx.accept(banner=b"\x15\x03\x01\x00\x02\x02\x32")  # a TLS alert, no line end
        session.close()
    (error,) = lines(logs, LogLevel.error)
    assert r"is not an Asterisk manager (it said: '\x15\x03\x01\x00\x02\x022')" in error


def test_a_banner_in_pieces_then_login_works(pbx):
    client = pbx.client()
    client.startService()
    session = pbx.accept(banner=b"Asterisk Call")
    session.send(b" Manager/11.0.0\r")
    pbx.reactor.advance(GREETING_TIMEOUT + 1)  # what came so far is a banner: no verdict
    assert not session.transport.aborted
    session.send(b"\n")
    pbx.login_md5(session)
    assert client.connected
    assert client.protocol.parser.banner == "Asterisk Call Manager/11.0.0"

