"""Hostile clients (issue 11, items 3, 5 and 10): odd JSON, forged log lines,
request floods, a connection holding too many lines. StringTransport + Clock."""

from __future__ import annotations

import json

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from asttapi_server.clients import codec
from asttapi_server.names import is_line_name, line_name_problem, log_text

from .harness import USERS, Harness


@pytest.fixture
def logs():
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


# -- item 10: odd JSON never costs a traceback or the connection --------------------


@pytest.mark.parametrize(
    "raw, rid",
    [
        (b'{"jsonrpc":"2.0","id":1e999,"method":"ping"}', None),  # infinity
        (b'{"jsonrpc":"2.0","id":-1e999,"method":"ping"}', None),
        (b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}', None),  # lone surrogate id
        (b'{"jsonrpc":"2.0","id":"\\udfff\\ud800","method":"ping"}', None),  # reversed pair
        (b'{"jsonrpc":"2.0","id":3,"method":"ping","params":{"\\ud800":1}}', 3),  # parameter name
        (b'{"jsonrpc":"2.0","id":3,"method":"lineOpen","params":{"line":"sip/\\ud800"}}', 3),
        (b'{"jsonrpc":"2.0","id":3,"method":"no\\udc00such"}', 3),
        (b'{"jsonrpc":"2.0","id":3,"method":"ping","\\ud800":1}', 3),  # unknown member
        (b'{"jsonrpc":"2.0","id":3,"method":"login","params":{"username":"a","token":"\\ud800"}}', 3),
        (b'{"jsonrpc":"2.0","id":3,"method":"ping","params":{"x":[[{"y":"\\ud800"}]]}}', 3),
    ],
)
def test_odd_json_gets_a_clean_error_and_the_connection_lives(raw, rid, logs):
    c = Harness().connect()
    c.send_raw(raw + b"\n")
    (msg,) = c.read()
    assert msg["id"] == rid
    assert msg["error"]["code"] in (codec.INVALID_REQUEST, codec.INVALID_PARAMS)
    assert not c.closed
    assert c.result("ping") == {"seq": 0}
    assert [e for e in logs if e.get("log_failure")] == []  # no traceback anywhere


def test_valid_surrogate_pairs_and_finite_float_ids_are_fine():
    c = Harness().connect()
    c.send_raw(b'{"jsonrpc":"2.0","id":"\\ud83d\\ude00","method":"ping"}\n')
    assert c.read()[0]["id"] == "\U0001f600"
    c.send_raw(b'{"jsonrpc":"2.0","id":1e300,"method":"ping"}\n')
    assert c.read()[0]["id"] == 1e300


def test_encode_never_fails_on_a_lone_surrogate():
    line = codec.encode_error(None, -32600, "bad \ud800")
    assert json.loads(line)["error"]["message"] == "bad \ud800"


def test_a_server_bug_answers_minus_32603_logged_once_and_the_connection_lives(logs, monkeypatch):
    h = Harness()
    c = h.connect()

    def broken(line):
        raise RuntimeError("a bug")

    monkeypatch.setattr(codec, "decode_line", broken)
    for _ in range(3):
        c.send_raw(b"anything\n")
    assert [m["error"]["code"] for m in c.read()] == [codec.INTERNAL_ERROR] * 3
    assert len([e for e in logs if e.get("log_failure")]) == 1
    monkeypatch.undo()
    assert not c.closed and c.result("ping") == {"seq": 0}


# -- item 10: client text in log lines is escaped -------------------------------------


@pytest.mark.parametrize("char", ["\n", "\r", "\u2028", "\u2029", "\u0085", "\x1b", "\x00", "\ud800", "\u202e"])
def test_log_text_escapes_everything_that_could_forge_or_garble_a_line(char):
    out = log_text(f"alice{char}2026-12-02 [-] root logged in")
    assert out.isprintable() and char not in out
    assert out.startswith("alice\\")
    assert log_text("plain ünïcödé") == "plain ünïcödé"
    assert log_text("back\\slash") == "back\\x5cslash"  # an escape in a log line always came from us
    assert log_text("x" * 300, 10) == "x" * 10 + "..."


def test_a_failed_login_with_a_line_separator_in_the_name_logs_one_line(logs):
    c = Harness(USERS).connect()
    c.call("login", username="mallory\u2028\u0085[-] admin logged in", token="wrong")
    (text,) = [t for t in map(formatEvent, logs) if "login failed" in t]
    assert "\u2028" not in text and "\u0085" not in text and "\n" not in text
    assert "mallory\\u2028\\x85[-] admin logged in" in text


# -- item 5: one rule for line names ----------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "a b", "sip/\ud800", "x\u2028y", "x\u0085", "tab\tbed", "l[1]", "a&b", "!a", "~a", "/a", "x" * 81, "nb\u00a0sp",
     "\x00", "x\u200by"],
)
def test_invalid_line_names(name):
    assert not is_line_name(name) and line_name_problem(name)
    c = Harness().connect()
    r = c.call("lineOpen", line=name)
    # -32600 for the lone surrogate: the decoder refuses it before any method sees it
    assert r["error"]["code"] in (codec.INVALID_PARAMS, codec.INVALID_REQUEST)


@pytest.mark.parametrize("name", ["line_1", "sip/bob", "PJSIP/bob-0001;2", "sales@example", "Zürich.1", "+4930123", "x" * 80])
def test_valid_line_names(name):
    assert is_line_name(name)
    assert "result" in Harness().connect().call("lineOpen", line=name)


def test_config_and_the_tapievent_grammar_use_the_same_rule(tmp_path):
    from asttapi_server import names
    from asttapi_server.core import grammar

    assert grammar.LINE_NAME is names.LINE_NAME

    from asttapi_server.config import load_config
    from asttapi_server.errors import ConfigError

    path = tmp_path / "c.toml"
    path.write_text('[lines."sip/\\u2028x"]\nchannel = "PJSIP/x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a line name without spaces"):
        load_config(str(path))


# -- item 3: lines per session -------------------------------------------------------------


def test_a_session_may_hold_at_most_max_lines_per_session():
    h = Harness(max_lines_per_session=3)
    c = h.connect()
    for name in ("a", "b", "c"):
        assert "result" in c.call("lineOpen", line=name)
    assert "result" in c.call("lineOpen", line="b")  # reopening is not a new line
    r = c.call("lineOpen", line="d")
    assert r["error"]["data"]["lineerr"] == "LINEERR_RESOURCEUNAVAIL"
    assert "server.max_lines_per_session" in r["error"]["message"]
    assert h.hub.subscribers("d") == 0
    c.call("lineClose", line="a")
    assert "result" in c.call("lineOpen", line="d")


# -- item 3: requests per second per connection ----------------------------------------------


def ping_line(rid: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": "ping"}).encode() + b"\n"


def test_a_burst_passes_then_the_rate_applies_with_a_clear_error():
    h = Harness(request_rate=10, request_burst=5, error_window=10.0)
    c = h.connect()
    c.send_raw(b"".join(ping_line(i) for i in range(8)))
    msgs = c.read()
    assert [("result" in m) for m in msgs] == [True] * 5 + [False]
    limited = msgs[-1]
    assert limited["id"] == 5 and limited["error"]["code"] == codec.RATE_LIMITED
    assert "at most 10 per second" in limited["error"]["message"]
    assert limited["error"]["data"] == {"retry_after": 0.1}
    # Until the next token the connection is not read: the rest waits (in TCP, for real).
    assert c.transport.producerState == "paused"
    c.send_raw(ping_line(8))
    assert c.read() == []
    h.clock.advance(0.1)  # one token back: the next waiting line is taken, the one after refused
    assert [(m["id"], "result" in m) for m in c.read()] == [(6, True), (7, False)]
    h.clock.advance(0.1)
    assert [(m["id"], "result" in m) for m in c.read()] == [(8, True)]
    assert c.transport.producerState == "producing"
    assert not c.closed


def test_errors_count_against_the_rate_too():
    h = Harness(request_rate=10, request_burst=3)
    c = h.connect()
    c.send_raw(b"garbage\n" * 3 + b'{"jsonrpc":"2.0","id":1,"method":"lineGetCallInfo","params":{"call":1}}\n')
    codes = [m["error"]["code"] for m in c.read()]
    assert codes == [codec.PARSE_ERROR] * 3 + [codec.RATE_LIMITED]


def test_a_client_that_keeps_flooding_is_disconnected_with_a_logged_reason(logs):
    h = Harness(request_rate=50, request_burst=20, error_window=10.0)
    c = h.connect()
    line = b'{"jsonrpc":"2.0","id":1,"method":"lineGetCallInfo","params":{"call":1}}\n'
    c.send_raw(line * 80)  # the burst of 20 is answered (INVALCALLHANDLE), the 21st refused
    msgs = c.read()
    assert [m["error"]["code"] for m in msgs] == [codec.TELEPHONY_ERROR] * 20 + [codec.RATE_LIMITED]
    steps = 0
    while not c.closed:  # from now on one line per token is taken, the next refused
        h.clock.advance(0.02)
        msgs += c.read()
        steps += 1
        assert steps < 100
    assert steps == 20  # 20 more refusals: over request_burst in error_window
    assert [m["error"]["code"] for m in msgs].count(codec.RATE_LIMITED) == 20  # the 21st refusal closes
    last = msgs[-1]
    assert last["id"] is None and last["error"]["code"] == codec.CONNECTION_CLOSING
    assert "rate limit" in last["error"]["message"]
    (entry,) = [e for e in logs if "request_rate" in e.get("log_format", "")]
    assert "kept sending" in formatEvent(entry)


def test_a_well_behaved_crm_is_never_limited():
    h = Harness(request_rate=50, request_burst=200)
    c = h.connect()
    c.send_raw(b"".join(ping_line(i) for i in range(150)))  # start-up: open everything at once
    assert all("result" in m for m in c.read())
    for i in range(2000):  # then 40 requests a second for 50 s
        h.clock.advance(0.025)
        c.send_raw(ping_line(i))
    assert all("result" in m for m in c.read())


# -- item 5: one client's line never silences the link-state events of others -------------


def test_link_state_and_resync_reach_every_line_after_a_bad_one():
    from asttapi_server.ami.message import Message
    from asttapi_server.clients.hub import Hub
    from tests.integration.fakes import make_bridge

    bridge, _recording, clock, ami = make_bridge()
    hub = bridge.hub = Hub()

    class Sub:
        def __init__(self, sid):
            self.sid, self.got = sid, []

        def send(self, data):
            self.got.append(json.loads(data))

    class Broken(Sub):
        def send(self, data):
            raise OSError("the socket is gone")

    first, bad_name, broken, later = Sub(1), Sub(2), Broken(3), Sub(4)
    hub.subscribe(first, "a")
    hub.subscribe(bad_name, "sip/\ud800")  # what lineOpen once let through from a "sip/*" pattern
    hub.subscribe(broken, "b")
    hub.subscribe(later, "z")
    ami.event(Event="UserEvent", Uniqueid="5.1", UserEvent="TAPI", TAPIEVENT="LINE_NEWCALL z")
    ami.event(Event="UserEvent", Uniqueid="5.1", UserEvent="TAPI", TAPIEVENT="LINE_CALLSTATE LINECALLSTATE_CONNECTED")

    ami.link(False)
    ami.link(True)
    _headers, d = ami.pop("CoreShowChannels")
    d.callback([Message.from_items([("Response", "Success"), ("EventList", "start")])])  # channel 5.1 is gone

    def story(sub):
        return [(m["method"], m["params"].get("devstate") or m["params"].get("state")) for m in sub.got]

    assert story(first) == story(bad_name) == [
        ("LINE_LINEDEVSTATE", "LINEDEVSTATE_OUTOFSERVICE"), ("LINE_LINEDEVSTATE", "LINEDEVSTATE_INSERVICE"),
    ]
    assert story(later)[-4:] == [
        ("LINE_LINEDEVSTATE", "LINEDEVSTATE_OUTOFSERVICE"),
        ("LINE_CALLSTATE", "LINECALLSTATE_DISCONNECTED"),  # the resync ended the dead call
        ("LINE_CALLSTATE", "LINECALLSTATE_IDLE"),
        ("LINE_LINEDEVSTATE", "LINEDEVSTATE_INSERVICE"),
    ]
    assert bridge.link_up


# -- the limits are configuration --------------------------------------------------------


def test_client_limit_keys_load_and_reach_the_hub_and_factory(tmp_path):
    from asttapi_server.clients.hub import Hub
    from asttapi_server.clients.protocol import ClientFactory
    from asttapi_server.config import ServerConfig, load_config

    from .fakes import FakeTelephony

    dflt = ServerConfig()
    assert (dflt.replay_ring_bytes, dflt.max_lines_per_session, dflt.request_rate, dflt.request_burst) == (
        16 << 20, 100, 50.0, 200,
    )
    path = tmp_path / "c.toml"
    path.write_text(
        "[server]\nreplay_ring_bytes = 1000000\nmax_lines_per_session = 7\nrequest_rate = 2.5\nrequest_burst = 9\n"
    )
    cfg = load_config(str(path))
    hub = Hub.from_config(cfg)
    assert hub._ring_bytes == 1_000_000 and hub._ring_size == cfg.server.replay_ring
    f = ClientFactory.from_config(cfg, hub, FakeTelephony(), clock=object())
    assert (f.max_lines_per_session, f.request_rate, f.request_burst) == (7, 2.5, 9)


@pytest.mark.parametrize(
    "text, message",
    [
        ("request_rate = 0", "key 'server.request_rate': expected a number of requests per second > 0, got 0"),
        ("request_rate = 'fast'", "expected a number of requests per second > 0, got 'fast'"),
        ("request_rate = inf", "expected a number of requests per second > 0, got inf"),
        ("request_burst = 0", "key 'server.request_burst': expected an integer >= 1, got 0"),
        ("max_lines_per_session = 0", "key 'server.max_lines_per_session': expected an integer >= 1"),
        ("replay_ring_bytes = -1", "key 'server.replay_ring_bytes': expected an integer >= 0"),
    ],
)
def test_bad_client_limits_name_the_key(tmp_path, text, message):
    from asttapi_server.config import load_config
    from asttapi_server.errors import ConfigError

    path = tmp_path / "c.toml"
    path.write_text(f"[server]\n{text}\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert message in str(e.value)
