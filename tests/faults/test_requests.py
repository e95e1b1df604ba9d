"""Client requests meeting faults: actions never answered, clients vanishing or not reading.

Lower-level tests already cover parts of this: tests/ami/test_client.py
(test_action_timeout_and_late_answer_ignored: the AMI client's timeout),
tests/clients/test_protocol.py (test_answer_after_disconnect_is_dropped_quietly,
test_a_client_that_stops_reading_is_disconnected_and_others_are_not_slowed,
with a fake bridge) and tests/clients/test_loopback.py
(test_a_client_that_never_reads_is_cut_off_and_others_keep_up, real sockets).
Here the real bridge, model and AMI client are in the path.
"""

from __future__ import annotations

from contextlib import contextmanager

from twisted.internet.error import ConnectionDone
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure

from .system import System, events


@contextmanager
def no_errors_logged():
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(seen.append)
    bad = [e for e in seen if "log_failure" in e or e.get("log_level") in (LogLevel.error, LogLevel.critical)]
    assert not bad, bad


def request(conn, method, rid=1, **params):
    conn.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})


def response(conn, rid=1):
    msgs = conn.read()
    (r,) = [m for m in msgs if m.get("id") == rid and "method" not in m]
    return r, [m for m in msgs if m is not r]


def test_make_call_whose_originate_is_never_answered_fails_after_the_action_timeout():
    s = System(action_timeout=30.0)
    s.start()
    c = s.connect()
    c.result("lineOpen", line="line_1")
    with no_errors_logged():
        request(c, "lineMakeCall", line="line_1", number="95551234")
        (originate,) = s.session.actions()
        assert originate.name == "Originate" and s.pending_actions() == 1
        s.clock.advance(29.9)
        assert c.read() == []
        s.clock.advance(0.1)
        r, rest = response(c)
    assert r["error"]["data"]["lineerr"] == "LINEERR_OPERATIONFAILED"
    assert s.pending_actions() == 0, "the timed-out action is not kept"
    # the pre-created call is ended (not leaked) ...
    s.clock.advance(60)
    assert s.model.tracked == 0
    # ... and an answer that turns up late changes nothing
    with no_errors_logged():
        s.session.send(b"Response: Success\r\nActionID: %s\r\nMessage: Originate successfully queued\r\n\r\n"
                       % originate.action_id.encode())
    assert s.pending_actions() == 0
    assert [m for m in c.read() if "id" in m] == []  # no second answer to the request
    assert c.result("ping")


def test_drop_whose_hangup_is_never_answered_fails_and_the_call_stays_tracked():
    s = System(action_timeout=30.0)
    s.start()
    c = s.connect()
    c.result("lineOpen", line="line_1")
    s.tapi("LINE_NEWCALL line_1", "1795674354.1")
    s.tapi("LINE_CALLSTATE LINECALLSTATE_OFFERING", "1795674354.1")
    (newcall, _offering) = events(c)
    request(c, "lineDrop", call=newcall[1])
    (hangup,) = s.session.actions()
    assert hangup.name == "Hangup"
    s.clock.advance(30.0)
    r, _ = response(c)
    assert r["error"]["data"]["lineerr"] == "LINEERR_OPERATIONFAILED"
    assert s.pending_actions() == 0
    assert s.model.tracked == 1  # the call is not invented away; its real end still arrives
    s.tapi("LINE_CALLSTATE LINECALLSTATE_IDLE", "1795674354.1")
    assert events(c) == [("LINE_CALLSTATE", newcall[1], "LINECALLSTATE_IDLE", False)]
    s.clock.advance(60)
    assert s.model.tracked == 0


def test_client_vanishes_while_its_make_call_is_in_flight():
    s = System()
    s.start()
    dialler, watcher = s.connect(), s.connect()
    dialler.result("lineOpen", line="line_1")
    watcher.result("lineOpen", line="line_1")
    with no_errors_logged():
        request(dialler, "lineMakeCall", line="line_1", number="95551234")
        (originate,) = s.session.actions()
        dialler.proto.connectionLost(Failure(ConnectionDone("client closed")))
        assert s.factory.connections == {watcher.proto}
        # Asterisk answers and the call runs anyway
        s.session.send(b"Response: Success\r\nActionID: %s\r\nMessage: Originate successfully queued\r\n\r\n"
                       % originate.action_id.encode())
        uid = originate.get("ChannelId")
        s.tapi("LINE_NEWCALL line_1", uid, channel="PJSIP/bob-00000001")
        s.tapi("LINE_CALLSTATE LINECALLSTATE_DIALTONE", uid, channel="PJSIP/bob-00000001")
        s.tapi("LINE_CALLSTATE LINECALLSTATE_IDLE", uid, channel="PJSIP/bob-00000001")
    assert s.pending_actions() == 0
    assert dialler.transport.value() == b""  # nothing written to the closed connection
    assert s.hub.subscribers("line_1") == 1
    got = events(watcher)
    assert [e[2] or e[0] for e in got] == ["LINE_NEWCALL", "LINECALLSTATE_DIALTONE", "LINECALLSTATE_IDLE"]
    assert len({e[1] for e in got}) == 1
    s.clock.advance(60)
    assert s.model.tracked == 0


def test_client_that_never_reads_is_cut_off_and_the_others_get_every_event():
    s = System(send_buffer_bytes=20_000)
    s.start()
    slow, fast = s.connect(), s.connect()
    slow.result("lineOpen", line="line_1")
    fast.result("lineOpen", line="line_1")
    slow.proto.pauseProducing()  # its socket buffer is full: it does not read
    sent = 0
    with no_errors_logged():
        for k in range(300):
            uid = f"1795675000.{k}"
            for text in ("LINE_NEWCALL line_1", "LINE_CALLSTATE LINECALLSTATE_OFFERING",
                         "LINE_CALLSTATE LINECALLSTATE_IDLE"):
                s.tapi(text, uid)
                sent += 1
            assert slow.proto.queued <= 20_000
            if slow.closed:
                break
    assert slow.closed and k < 299
    assert s.hub.subscribers("line_1") == 1
    assert len(events(fast)) == sent
    s.tapi("LINE_NEWCALL line_1", "1795679999.1")
    assert len(events(fast)) == 1
