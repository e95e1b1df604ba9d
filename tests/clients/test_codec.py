"""The pure JSON-RPC codec."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from asttapi_server.clients import codec
from asttapi_server.clients.codec import ParamsError, Reject, Request

from .fakes import CALLINFO, event


def test_decode_request_and_notification():
    r = codec.decode_line(b'{"jsonrpc":"2.0","id":"x","method":"lineOpen","params":{"line":"l"}}\r')
    assert r == Request("lineOpen", {"line": "l"}, "x", notification=False)
    n = codec.decode_line(b'{"jsonrpc":"2.0","method":"ping"}')
    assert n == Request("ping", {}, None, notification=True)
    assert codec.decode_line(b'{"jsonrpc":"2.0","id":null,"method":"ping"}').notification is False
    assert codec.decode_line(b"   ") is None


def test_rejects_carry_the_id_when_known():
    r = codec.decode_line(b'{"jsonrpc":"2.0","id":12,"method":"x","params":3}')
    assert r == Reject(codec.INVALID_PARAMS, r.message, 12)
    assert "batch" in codec.decode_line(b"[]").message


def test_unicode_round_trip():
    r = codec.decode_line('{"jsonrpc":"2.0","id":1,"method":"lineOpen","params":{"line":"Zürich ☎"}}'.encode())
    assert r.params["line"] == "Zürich ☎"
    out = codec.encode_result(1, {"name": "Jürgen ☎"})
    assert "Jürgen ☎".encode() in out and out.endswith(b"\n") and out.count(b"\n") == 1


def test_encoded_lines_never_contain_a_raw_newline():
    out = codec.encode_error(1, codec.INVALID_PARAMS, "bad\nthing", {"x": "a\r\nb"})
    assert out.count(b"\n") == 1
    assert json.loads(out)["error"] == {"code": -32602, "message": "bad\nthing", "data": {"x": "a\r\nb"}}


@pytest.mark.parametrize(
    "text, expected",
    [("200", "200"), ("+49 (30) 1234-56.78", "+4930123456" "78"), ("*97#", "*97#"), ("bob", "bob"), ("0D", "0D")],
)
def test_normalise_number_accepts(text, expected):
    assert codec.normalise_number(text) == expected


@pytest.mark.parametrize("text", ["", " ", "1\n2", "1\r", "a@b", "PJSIP/200", "_X.", "1+1", "[12]", "1,2", "x" * 65, "1;2", "1\x00"])
def test_normalise_number_refuses(text):
    with pytest.raises(ParamsError):
        codec.normalise_number(text)


def test_check_params():
    assert codec.check_params("lineOpen", {"line": "a", "seq": 3}) == {"line": "a", "seq": 3}
    with pytest.raises(ParamsError, match="unknown parameter"):
        codec.check_params("lineOpen", {"line": "a", "sequence": 3})
    with pytest.raises(ParamsError, match="needs the parameter 'number'"):
        codec.check_params("lineMakeCall", {"line": "a"})
    with pytest.raises(ParamsError, match="a line name without spaces"):
        codec.check_params("lineOpen", {"line": "a\nb"})
    with pytest.raises(ParamsError):
        codec.check_params("lineOpen", {"line": "a", "seq": -1})


def test_event_params_per_message():
    p = codec.event_params(event("LINE_NEWCALL", "l", 4), 9)
    assert p == {"line": "l", "call": 4, "seq": 9, "callinfo": CALLINFO}
    p = codec.event_params(event("LINE_CALLINFO", "l", 4, "LINECALLINFOSTATE_CALLERID"), 10)
    assert p["infostate"] == "LINECALLINFOSTATE_CALLERID"
    p = codec.event_params(event("LINE_LINEDEVSTATE", None, None, "LINEDEVSTATE_INSERVICE", synthetic=True), 11, "x")
    assert p == {"line": "x", "devstate": "LINEDEVSTATE_INSERVICE", "seq": 11, "synthetic": True}
    ev = event("LINE_CALLSTATE", "l", 4, "LINECALLSTATE_OFFERING").with_callinfo(contact={"name": "Alice", "id": 7})
    line = codec.encode_event(ev, 12)
    msg = json.loads(line)
    assert msg["method"] == "LINE_CALLSTATE" and msg["params"]["state"] == "LINECALLSTATE_OFFERING"
    assert msg["params"]["callinfo"]["contact"] == {"name": "Alice", "id": 7}
    assert "mode" not in msg["params"] and "synthetic" not in msg["params"]


def test_codec_is_pure():
    """The codec imports no reactor (the pure ring of docs/architecture.md)."""
    root = Path(__file__).resolve().parents[2]
    code = "import sys, asttapi_server.clients.codec; print('twisted.internet.reactor' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class _NotJson:
    def __str__(self) -> str:
        return "not json \u00e9"


@pytest.mark.parametrize("value", [
    {"jsonrpc": "2.0", "method": "LINE_CALLSTATE", "params": {"line": "line_1", "call": 7, "seq": 1}},
    {"name": "M\u00fcller \u2028 \ud800 \"quoted\" \\ \n\t\x00", "n": -1.5, "big": 10**30, "none": None,
     "flags": [True, False], "nested": {"a": [{"b": ()}]}},
    {"contact": _NotJson(), 3: "int key", 2.5: "float key", None: "null key", True: "bool key"},
    "a bare string", 42, [], {},
])
def test_the_encoder_made_once_writes_what_json_writes(value):
    """codec._dumps keeps one C encoder (bench/event_cost.py: half of a client line's cost):
    the same text as the JSONEncoder it is made from, whatever it is given."""
    reference = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)
    assert codec._dumps(value) == reference.encode(value)
    assert codec.encode(value if isinstance(value, dict) else {"v": value}) == (
        reference.encode(value if isinstance(value, dict) else {"v": value}).encode("utf-8", "backslashreplace")
        + b"\n")


@pytest.mark.parametrize("value", [float("nan"), {"x": float("inf")}, [float("-inf")]])
def test_the_encoder_made_once_still_refuses_what_json_cannot_carry(value):
    with pytest.raises(ValueError):
        codec._dumps(value)
    assert codec._dumps({"after": "a refusal"}) == '{"after":"a refusal"}'  # nothing left half-done
