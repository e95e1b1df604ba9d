"""The TCP client-protocol tests, run again over WebSocket.

Every test of tests/clients/test_protocol.py is collected here a second time
with its ``Harness`` swapped for :class:`~tests.web.harness.WSHarness`: the
same requests, the same answers, through autobahn's RFC 6455 framing in both
directions. Only the tests of line framing itself (a line split across TCP
reads, ``\\r\\n``, a line that grows past the limit over several reads, bytes
that are not UTF-8 inside a line) stay TCP-only; their WebSocket counterparts
(frame limits, binary frames, invalid UTF-8 closing the socket) are in
test_ws_transport.py.
"""

from __future__ import annotations

import pytest

import tests.clients.test_protocol as tcp_tests
from tests.clients.test_protocol import *  # noqa: F401,F403  (collected again, over WebSocket)

from .harness import WSHarness

#: Tests about splitting a byte stream into lines: no such thing on a WebSocket.
TCP_FRAMING_ONLY = {
    "test_request_split_anywhere_and_crlf_accepted",
    "test_line_over_the_limit_closes_with_a_final_error",  # grows over two reads without a newline
}
#: Params whose raw bytes are not UTF-8: a WebSocket text frame must be, so that closes (1007).
NOT_UTF8 = (b"\xff",)


@pytest.fixture(autouse=True)
def over_websocket(request, monkeypatch):
    name = request.node.originalname
    if name in TCP_FRAMING_ONLY:
        pytest.skip("line framing of the TCP transport; see test_ws_transport.py for frames")
    callspec = getattr(request.node, "callspec", None)
    raw = callspec.params.get("raw") if callspec else None
    if isinstance(raw, bytes) and any(b in raw for b in NOT_UTF8):
        pytest.skip("not UTF-8: a WebSocket closes with 1007 (test_ws_transport.py)")
    monkeypatch.setattr(tcp_tests, "Harness", WSHarness)
