"""Real sockets: the client library, the CLI, TLS and a client that never reads."""

from __future__ import annotations

import errno
import io
import socket
import time

import pytest

from asttapi_server import cli
from asttapi_server.rpc_client import Client, RemoteError

from tests.security.tlsutil import make_cert

from .fakes import inbound_call

USERS = {"alice": {"token": "tok-a", "lines": ["line_*"]}, "bob": {"token": "tok-b", "lines": ["sip/bob"]}}

pytestmark = pytest.mark.slow


def test_client_library_sees_a_whole_inbound_call(start_server):
    srv = start_server(users=USERS)
    with Client("127.0.0.1", srv.port) as c:
        assert c.hello["login_required"] is True
        with pytest.raises(RemoteError) as e:
            c.line_open("line_1")
        assert e.value.code == -32001
        c.login("alice", "tok-a")
        assert c.line_open("line_1")["calls"] == []
        events = [c.next_event(5) for _ in range(6)]
        assert [ev["method"] for ev in events] == [
            "LINE_NEWCALL", "LINE_CALLSTATE", "LINE_CALLINFO", "LINE_CALLSTATE", "LINE_CALLSTATE", "LINE_CALLSTATE",
        ]
        assert events[1]["params"]["callinfo"]["callerid"] == "0301234567"
        assert c.last_seq == events[-1]["params"]["seq"]
    with Client("127.0.0.1", srv.port) as bob:
        bob.login("bob", "tok-b")
        with pytest.raises(RemoteError) as e:
            bob.line_open("line_1")
        assert e.value.lineerr == "LINEERR_NOTOWNER"


def test_cli_watch_prints_events_readably(start_server):
    srv = start_server(users=USERS)
    out = io.StringIO()
    rc = cli.main(["--port", str(srv.port), "--user", "alice", "--token", "tok-a", "watch", "line_1", "--count", "6"], out)
    assert rc == 0
    text = out.getvalue()
    assert "-- watching line_1" in text
    assert "NEWCALL" in text and "from 0301234567 (Alice Example) to 200" in text
    assert "CALLSTATE    DISCONNECTED (NORMAL)" in text
    assert len([ln for ln in text.splitlines() if "line_1" in ln and "#7" in ln]) == 6


def test_cli_dial_places_a_call_and_follows_it_without_its_newcall(start_server):
    srv = start_server()
    out = io.StringIO()
    rc = cli.main(["--port", str(srv.port), "dial", "line_2", "+49 30 1234", "--follow"], out)
    assert rc == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "call #101 placed on line_2 to +49 30 1234"
    assert "NEWCALL" not in out.getvalue()
    assert "DIALTONE" in lines[1] and "IDLE" in lines[-1]


def test_cli_reports_errors_and_missing_login(start_server, capsys):
    srv = start_server(users=USERS)
    assert cli.main(["--port", str(srv.port), "dial", "line_1", "200"], io.StringIO()) == 2
    assert "--user" in capsys.readouterr().err
    args = ["--port", str(srv.port), "--user", "bob", "--token", "tok-b", "watch", "line_1", "--no-reconnect"]
    assert cli.main(args, io.StringIO()) == 1
    assert "LINEERR_NOTOWNER" in capsys.readouterr().err
    assert cli.main(["--port", str(srv.port), "--user", "alice", "--token", "bad", "calls", "line_1"], io.StringIO()) == 1


def test_tls_endpoint_with_a_throwaway_certificate(start_server, tmp_path):
    key, cert = make_cert(tmp_path, ec=True)
    srv = start_server(f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}", users=USERS)
    with Client("127.0.0.1", srv.port, tls=True, cafile=str(cert)) as c:
        c.login("alice", "tok-a")
        c.line_open("line_1")
        assert c.next_event(5)["method"] == "LINE_NEWCALL"
    # an unencrypted client gets nowhere
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
        raw.sendall(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
        try:
            assert b'"result"' not in raw.recv(4096)
        except (ConnectionError, socket.timeout):
            pass
    out = io.StringIO()
    # Each lineOpen of line_1 plays a whole call (6 events, 20 ms apart); the
    # watcher may open it while the first client's call still plays. Six
    # events always hold a NEWCALL: the rest of that call, then the start of
    # the watcher's own.
    calls = len(inbound_call("line_1", 7))
    args = ["--port", str(srv.port), "--tls", "--cafile", str(cert), "--user", "alice", "--token", "tok-a",
            "watch", "line_1", "--count", str(calls)]
    assert cli.main(args, out) == 0
    assert "NEWCALL" in out.getvalue()


def test_a_client_that_never_reads_is_cut_off_and_others_keep_up(start_server):
    srv = start_server(send_buffer=256 * 1024)
    slow = socket.create_connection(("127.0.0.1", srv.port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(b'{"jsonrpc":"2.0","id":1,"method":"lineOpen","params":{"line":"flood"}}\n')
    with Client("127.0.0.1", srv.port) as fast:
        fast.line_open("flood")
        deadline = time.monotonic() + 30
        received = 0
        cut_off = False
        while time.monotonic() < deadline and not cut_off:
            ev = fast.next_event(5)
            assert ev is not None and ev["params"]["line"] == "flood"
            received += 1
            # the server aborts it: a reset is pending on the socket we never read
            cut_off = slow.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET
        assert cut_off, "the slow client was never disconnected"
        before = received
        for _ in range(50):  # the fast client keeps receiving
            assert fast.next_event(5) is not None
        assert received == before
    slow.close()
