"""The ``asttapi`` command when the server runs but its PBX link is down.

Against a hand-written one-connection server speaking the protocol as
docs/protocol.md has it (``hello.pbx``, the lineOpen result's ``devstate``,
LINEERR_DISCONNECTED), so each answer is exactly the case under test.
"""

from __future__ import annotations

import io
import json
import socket
import threading

import pytest

from asttapi_server import cli

CALL = {"call": 4, "state": "LINECALLSTATE_CONNECTED",
        "callinfo": {"callerid": "0301234567", "calleridname": None, "calledid": None, "calledidname": None,
                     "connectedid": None, "connectedidname": None, "origin": "LINECALLORIGIN_UNKNOWN"}}


class OneShotServer:
    """Serves one connection: hello, then answers each request from ``answers``."""

    def __init__(self, hello: dict, answers: dict, hang_up_after: int | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.hello, self.answers, self.hang_up_after = hello, answers, hang_up_after
        self.requests: list[dict] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn, conn.makefile("rwb") as f:
            params = {"server": "asttapi-server", "version": "0.1.0", "protocol": 1, "login_required": False,
                      "epoch": "e", **self.hello}
            f.write(json.dumps({"jsonrpc": "2.0", "method": "hello", "params": params}).encode() + b"\n")
            f.flush()
            for line in f:
                req = json.loads(line)
                self.requests.append(req)
                answer = self.answers[req["method"]]
                key = "error" if "code" in answer else "result"
                f.write(json.dumps({"jsonrpc": "2.0", "id": req["id"], key: answer}).encode() + b"\n")
                f.flush()
                if len(self.requests) == self.hang_up_after:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve():
    servers = []

    def start(hello: dict, hang_up_after: int | None = None, **answers: dict) -> OneShotServer:
        servers.append(OneShotServer(hello, answers, hang_up_after))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def run(port: int, *argv: str, capsys) -> tuple[int, str, str]:
    out = io.StringIO()
    rc = cli.main(["--port", str(port), *argv], out)
    return rc, out.getvalue(), capsys.readouterr().err


DOWN_OPEN = {"calls": [], "seq": 1, "epoch": "e", "devstate": "LINEDEVSTATE_OUTOFSERVICE"}
UP_OPEN = {"calls": [], "seq": 1, "epoch": "e", "devstate": "LINEDEVSTATE_INSERVICE"}
DISCONNECTED = {"code": -32000, "message": "the link to the PBX is down; try again after LINE_LINEDEVSTATE "
                "reports LINEDEVSTATE_INSERVICE", "data": {"lineerr": "LINEERR_DISCONNECTED"}}


def test_calls_says_the_pbx_is_down_instead_of_no_calls(serve, capsys):
    srv = serve({"pbx": "down"}, lineOpen=DOWN_OPEN)
    rc, out, err = run(srv.port, "calls", "line_1", capsys=capsys)
    assert rc == cli.PBX_DOWN
    assert "no calls" not in out + err
    assert err == ("asttapi: the PBX is not connected (asttapi-server has no link to Asterisk), "
                   "so line_1's calls are unknown\n")


def test_calls_known_from_before_the_link_went_down_are_shown_as_such(serve, capsys):
    srv = serve({"pbx": "down"}, lineOpen={**DOWN_OPEN, "calls": [CALL]})
    rc, out, err = run(srv.port, "calls", "line_1", capsys=capsys)
    assert rc == cli.PBX_DOWN
    assert "as last seen before the link went down: 1 call(s)" in err
    assert out == "   #4  CONNECTED  from 0301234567\n"


def test_calls_with_the_pbx_up(serve, capsys):
    srv = serve({"pbx": "up"}, lineOpen=UP_OPEN)
    assert run(srv.port, "calls", "line_1", capsys=capsys) == (0, "no calls on line_1\n", "")


def test_dial_with_the_pbx_down_answers_in_plain_words_and_places_nothing(serve, capsys):
    srv = serve({"pbx": "down"}, lineOpen=DOWN_OPEN, lineMakeCall=DISCONNECTED)
    rc, out, err = run(srv.port, "dial", "line_1", "95551234", capsys=capsys)
    assert rc == cli.PBX_DOWN
    assert err == ("asttapi: the PBX is not connected (asttapi-server has no link to Asterisk); "
                   "no call placed, try again when it is back\n")
    assert "LINEDEVSTATE" not in err and "LINEERR" not in err
    assert [r["method"] for r in srv.requests] == ["lineOpen"]


def test_dial_when_the_link_drops_meanwhile(serve, capsys):
    # hello said up; the request finds the link down: the same plain answer.
    srv = serve({"pbx": "up"}, lineOpen=UP_OPEN, lineMakeCall=DISCONNECTED)
    rc, out, err = run(srv.port, "dial", "line_1", "95551234", capsys=capsys)
    assert rc == cli.PBX_DOWN and "the PBX is not connected" in err and "LINE" not in err


def test_watch_says_events_follow_when_the_pbx_is_back(serve, capsys):
    srv = serve({"pbx": "down"}, hang_up_after=1, lineOpen=DOWN_OPEN)
    rc, out, err = run(srv.port, "watch", "line_1", "--no-reconnect", capsys=capsys)
    assert out.startswith("-- watching line_1 (0 calls now; the PBX is not connected (asttapi-server has "
                          "no link to Asterisk): events follow when it is back)\n")


def test_no_server_is_one_plain_line(capsys):
    with socket.socket() as sock:  # bound, never listening: refused, and no other run can take it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        rc, out, err = run(port, "calls", "line_1", capsys=capsys)
    assert rc == 2
    assert err == f"asttapi: no asttapi-server at 127.0.0.1:{port} (connection refused; is it running?)\n"


@pytest.mark.parametrize("devstate, words", [
    ("LINEDEVSTATE_OUTOFSERVICE", "OUTOFSERVICE (the PBX is not connected)"),
    ("LINEDEVSTATE_INSERVICE", "INSERVICE (the PBX is connected)"),
])
def test_watch_puts_link_changes_in_plain_words(devstate, words):
    line = cli.format_event({"method": "LINE_LINEDEVSTATE", "params": {"line": "line_1", "devstate": devstate,
                                                                        "seq": 3}})
    assert f"LINEDEVSTATE {words}  [seq 3]" in line
