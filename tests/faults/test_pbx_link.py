"""PBX link faults at the system level: AMI bytes in, client JSON out, all on a Clock.

Already covered lower down (and not repeated here): the AMI client alone
(tests/ami/test_client.py: pending actions fail with LinkDown on disconnect,
Shutdown then close re-logs in, half-open links, capped jittered backoff);
the bridge with a fake link (tests/integration/test_bridge.py: resync ends
dead calls, a drop during resync, resync failure). These tests prove the
same behaviour end to end, as a client sees it.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionLost

from tests.ami.fakes import replay

from .system import System, events

OUT = ("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_OUTOFSERVICE", False)
IN = ("LINE_LINEDEVSTATE", None, "LINEDEVSTATE_INSERVICE", False)


def ringing_call(s: System, uid: str = "1795674354.1"):
    client = s.connect()
    assert client.result("lineOpen", line="line_1")["calls"] == []
    s.tapi("LINE_NEWCALL line_1", uid)
    s.tapi("LINE_CALLSTATE LINECALLSTATE_OFFERING", uid)
    got = events(client)
    assert [e[0] for e in got] == ["LINE_NEWCALL", "LINE_CALLSTATE"]
    return client, got[0][1]


def test_link_drops_mid_call_and_the_call_is_gone_on_return():
    s = System()
    s.start()
    client, handle = ringing_call(s)
    s.session.close(ConnectionLost("PBX vanished"))
    assert events(client) == [OUT]
    s.clock.advance(2.0)
    s.come_back(channels=())  # Asterisk restarted: the channel no longer exists
    assert events(client) == [
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_DISCONNECTED", True),
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_IDLE", True),
        IN,
    ]
    s.clock.advance(60)
    assert s.model.tracked == 0
    assert client.result("lineGetCalls", line="line_1") == {"calls": []}


def test_link_drops_mid_call_and_the_call_survives_with_the_same_handle():
    s = System()
    s.start()
    client, handle = ringing_call(s)
    s.session.close(ConnectionLost("network blip"))
    s.clock.advance(2.0)
    s.come_back(channels=(("PJSIP/trunk-00000001", "1795674354.1"),))
    assert events(client) == [OUT, IN]  # nothing ended, nothing new
    # the dialplan carries on; the same call, no second LINE_NEWCALL
    s.tapi("LINE_NEWCALL line_1", "1795674354.1")
    s.tapi("[~1795674354.1&line_1] LINE_CALLSTATE LINECALLSTATE_CONNECTED", "1795674354.2")
    s.tapi("LINE_CALLSTATE LINECALLSTATE_IDLE", "1795674354.1")
    assert events(client) == [
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_CONNECTED", False),
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_IDLE", False),
    ]


def test_pbx_refuses_connections_for_a_minute():
    s = System(retry_policy=None)  # the real default: backoff 0.5 s .. 30 s with jitter
    s.start()
    client = s.connect()
    client.result("lineOpen", line="line_1")
    s.session.close(ConnectionLost("Asterisk is restarting"))
    attempts = []
    start = s.clock.seconds()
    while s.clock.seconds() - start < 60:
        s.clock.advance(0.25)
        if s.pbx.pending_connects():
            attempts.append(s.clock.seconds())
            s.pbx.refuse()
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert 4 <= len(attempts) <= 20, attempts
    assert max(gaps) <= 30 * 1.25 + 0.25, gaps  # capped (plus jitter)
    assert gaps[-1] > gaps[0]  # and backing off
    assert not s.bridge.link_up
    # Asterisk is back: the next attempt logs in and resynchronises
    for _ in range(200):
        if s.pbx.pending_connects():
            break
        s.clock.advance(0.25)
    s.come_back()
    assert events(client) == [OUT, IN], "exactly one OUTOFSERVICE and one INSERVICE"
    assert client.result("ping")


def test_asterisk_shutdown_then_close_reconnects_relogs_in_and_resyncs():
    s = System()
    s.start()
    client, handle = ringing_call(s)
    s.session.send(replay("17_shutdown_restart.monitor.raw", {}))
    assert events(client) == [OUT], "out of service as soon as Asterisk announces Shutdown"
    s.session.close()
    s.clock.advance(2.0)
    s.come_back(channels=())
    assert events(client) == [
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_DISCONNECTED", True),
        ("LINE_CALLSTATE", handle, "LINECALLSTATE_IDLE", True),
        IN,
    ]
    assert s.ami.connected
    # and the new link carries calls
    s.tapi("LINE_NEWCALL line_1", "1795674999.1")
    assert [e[0] for e in events(client)] == ["LINE_NEWCALL"]


def test_shutdown_without_close_is_aborted_and_rebuilt():
    s = System(pong_timeout=10.0)
    s.start()
    client = s.connect()
    client.result("lineOpen", line="line_1")
    s.session.send(b"Event: Shutdown\r\nPrivilege: system,all\r\nShutdown: Cleanly\r\nRestart: True\r\n\r\n")
    s.clock.advance(10.0)
    assert s.session.transport.aborted
    s.clock.advance(2.0)
    s.come_back()
    assert events(client) == [OUT, IN]
