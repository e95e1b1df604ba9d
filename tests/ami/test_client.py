"""AMILink + AMIProtocol against a scripted Asterisk; all timing on a Clock."""

from __future__ import annotations

import pytest
from twisted.internet.error import ConnectionLost
from twisted.logger import capturedLogs, formatEvent

from asttapi_server.ami import actions
from asttapi_server.errors import ActionFailed, ActionTimeout, AuthenticationFailed, InvalidActionHeader, LinkDown

from .fakes import FakeAsterisk, replay
from .helpers import load


def failure_of(d):
    box = []
    d.addErrback(box.append)
    assert box, "Deferred has not failed"
    return box[0]


def result_of(d):
    box = []
    d.addCallback(box.append)
    assert box, "Deferred has not fired"
    return box[0]


@pytest.fixture
def pbx():
    return FakeAsterisk()


def live(pbx, **kw):
    """A started client, logged in over MD5; returns (client, session, link states, events)."""
    client = pbx.client(**kw)
    links, events = [], []
    client.add_link_observer(links.append)
    client.add_event_observer(events.append)
    client.startService()
    session = pbx.accept()
    pbx.login_md5(session)
    assert client.connected and links == [True]
    return client, session, links, events


# -- login -------------------------------------------------------------------------


def test_md5_login_replays_capture_03a(pbx):
    client = pbx.client(events="on")
    links = []
    client.add_link_observer(links.append)
    client.startService()
    session = pbx.accept()
    (challenge,) = session.actions()
    assert challenge.name == "Challenge" and challenge.get("AuthType") == "MD5"
    session.send(replay("03a_login_md5_challenge.raw", {"challenge-1": challenge.action_id}, 0, 1))
    (login,) = session.actions()
    # The captured server challenge + our secret give the captured key.
    assert login.get("Key") == "624a8e70119eb35b9bbb1f3c707aaa48"
    assert (login.get("AuthType"), login.get("Username"), login.get("Events")) == ("MD5", "asttapi", "on")
    assert login.get("Secret") is None
    assert not client.connected and links == []
    session.send(replay("03a_login_md5_challenge.raw", {"login-2": login.action_id}, 1, 4))
    assert client.connected and links == [True]


def test_plain_login_replays_capture_01a(pbx):
    client = pbx.client(auth="plain", events="off")
    client.startService()
    session = pbx.accept()
    (login,) = session.actions()
    assert [k for k, _ in login.items()] == ["Action", "ActionID", "Username", "Secret", "Events"]
    assert login.get("Secret") == "asttapi-secret" and login.get("Events") == "off"
    session.send(replay("01a_login_plain_events_off.raw", {"login-1": login.action_id}, 0, 1))
    assert client.connected


def test_default_events_mask_is_system_call_user(pbx):
    client = pbx.client()
    client.startService()
    _, login = pbx.login_md5(pbx.accept())
    assert login.get("Events") == "system,call,user"


def test_wrong_secret_02a_logged_loudly_without_secret_and_retried(pbx):
    client = pbx.client(auth="plain", secret="wrong-secret")
    errors = []
    with capturedLogs() as logs:
        client.startService()
        session = pbx.accept()
        (login,) = session.actions()
        session.send(replay("02a_login_fail_wrong_secret.raw", {"login-1": login.action_id}))
        assert session.transport.aborted  # we hang up at once
        assert not client.connected
        # Retry with backoff, and it is loud again the second time.
        assert pbx.pending_connects() == 0
        pbx.reactor.advance(2.0)
        session = pbx.accept()
        (login,) = session.actions()
        session.send(replay("02a_login_fail_wrong_secret.raw", {"login-1": login.action_id}))
        session.close()
    texts = [formatEvent(e) for e in logs]
    refused = [t for t in texts if "LOGIN REFUSED" in t]
    assert len(refused) == 2
    assert "asttapi" in refused[0] and "pbx.example" in refused[0] and "Authentication failed" in refused[0]
    assert not any("wrong-secret" in t for t in texts)
    assert "wrong-secret" not in repr(client)
    # attempt 2 waits longer than attempt 1 (2 s then 4 s)
    (call,) = pbx.reactor.getDelayedCalls()
    assert call.getTime() - pbx.reactor.seconds() == pytest.approx(4.0)
    del errors


def test_wrong_md5_key_03b(pbx):
    client = pbx.client()
    client.startService()
    session = pbx.accept()
    (ch,) = session.actions()
    session.send(replay("03b_login_md5_wrong_key.raw", {"challenge-1": ch.action_id}, 0, 1))
    (login,) = session.actions()
    raw = load("03b_login_md5_wrong_key.raw")
    assert b"Authentication failed" in raw
    session.send(b"Response: Error\r\nActionID: %s\r\nMessage: Authentication failed\r\n\r\n" % login.action_id.encode())
    assert not client.connected and session.transport.aborted


def test_login_timeout_is_a_failed_attempt(pbx):
    client = pbx.client(action_timeout=5.0)
    client.startService()
    session = pbx.accept()
    session.actions()  # Challenge, never answered
    pbx.reactor.advance(5.0)
    assert session.transport.aborted and not client.connected
    pbx.reactor.advance(2.0)
    assert pbx.pending_connects() == 1


def test_connection_lost_during_login_retries(pbx):
    client = pbx.client()
    client.startService()
    session = pbx.accept()
    session.close(ConnectionLost())
    assert not client.connected
    pbx.reactor.advance(2.0)
    pbx.login_md5(pbx.accept())
    assert client.connected


# -- no action before login (pitfall 3) --------------------------------------------


def test_no_action_before_login_fails_fast_with_linkdown(pbx):
    client = pbx.client()
    assert failure_of(client.send_action(actions.ping())).check(LinkDown)
    client.startService()
    session = pbx.accept()
    d = client.send_action(actions.ping())
    assert failure_of(d).check(LinkDown)
    # The protocol refuses too, even if someone reaches it directly.
    assert failure_of(session.proto._wrappedProtocol.send_action(actions.ping())).check(LinkDown)
    assert [m.name for m in session.actions()] == ["Challenge"]


# -- correlation, event lists, errors, timeouts -------------------------------------


def test_actionid_correlation_out_of_order(pbx):
    client, session, _, events = live(pbx)
    d1 = client.send_action(actions.ping())
    d2 = client.send_action(actions.hangup("Local/carol@phones-00000012;1", 16))
    a1, a2 = session.actions()
    assert a1.action_id != a2.action_id and a1.action_id.startswith("asttapi-1-")
    session.send(replay("12_hangup_action.driver.raw", {"hangup-1": a2.action_id}, 2, 3))
    assert result_of(d2).get("Message") == "Channel Hungup"
    session.send(replay("04a_ping.raw", {"ping-1": a1.action_id}, 1, 2))
    assert result_of(d1).get("Ping") == "Pong"
    assert events == []


def test_event_list_coreshowchannels_11(pbx):
    client, session, _, events = live(pbx)
    d = client.send_action(actions.coreshowchannels())
    (a,) = session.actions()
    session.send(replay("11_coreshowchannels.driver.raw", {"csc-1": a.action_id}, 4, 8))
    got = result_of(d)
    assert [m.name for m in got] == ["Success", "CoreShowChannel", "CoreShowChannel", "CoreShowChannelsComplete"]
    assert got[-1].get("ListItems") == "2"
    assert events == [], "list events go to the action, not to observers"


def test_event_list_status_with_actionid_last_14(pbx):
    client, session, _, events = live(pbx)
    d = client.send_action(actions.status())
    (a,) = session.actions()
    session.send(replay("14_status_action.driver.raw", {"status-all": a.action_id}, 4, 8))
    got = result_of(d)
    assert [m.name for m in got] == ["Success", "Status", "Status", "StatusComplete"]
    assert events == []


def test_the_link_takes_action_objects_only(pbx):
    """Issue 25: the link's API is typed: an ``ami.actions.Action``, never a name and a header list."""
    client, session, _, _ = live(pbx)
    with pytest.raises(TypeError):
        client.send_action("Ping")
    with pytest.raises(TypeError):
        client.send_action(("Hangup", [("Channel", "PJSIP/bob-1")]))
    assert session.actions() == []


def test_a_regex_channel_is_never_written(pbx):
    """Issue 11: ``Hangup Channel: /^/`` is every channel on the PBX; the client refuses it unsent."""
    client, session, _, _ = live(pbx)
    for action in (actions.hangup("/^/"), actions.redirect(" /.*/", "x", "1")):
        failure = failure_of(client.send_action(action))
        assert failure.check(InvalidActionHeader)
    assert session.actions() == []


def test_event_list_hangup_empty_12(pbx):
    # The capture hung up a non-matching regex; the reply's shape is what is tested here.
    client, session, _, _ = live(pbx)
    d = client.send_action(actions.hangup("Local/nomatch@phones-00000099;1"))
    (a,) = session.actions()
    session.send(replay("12_hangup_action.driver.raw", {"hangup-3": a.action_id}, 4, 6))
    got = result_of(d)
    assert [m.name for m in got] == ["Success", "ChannelsHungupListComplete"]


def test_other_events_interleaved_with_a_list_reach_observers(pbx):
    client, session, _, events = live(pbx)
    d = client.send_action(actions.coreshowchannels())
    (a,) = session.actions()
    aid = a.action_id.encode()
    session.send(b"Response: Success\r\nActionID: %s\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n" % aid)
    session.send(b"Event: Hangup\r\nUniqueid: 1.1\r\nCause: 16\r\n\r\n")
    session.send(b"Event: CoreShowChannelsComplete\r\nActionID: %s\r\nEventList: Complete\r\nListItems: 0\r\n\r\n" % aid)
    assert [m.name for m in events] == ["Hangup"]
    assert len(result_of(d)) == 2


def test_originate_response_event_with_our_actionid_reaches_observers_10(pbx):
    client, session, _, events = live(pbx)
    d = client.send_action(actions.originate("Local/alice@phones", application="Wait", data="2", async_=True))
    (a,) = session.actions()
    data = replay("10_originate_async.driver.raw", {"orig-async-1": a.action_id}, 3, None)
    session.send(data)
    assert result_of(d).get("Message") == "Originate successfully queued"
    oresp = [m for m in events if m.name == "OriginateResponse" and m.action_id == a.action_id]
    assert len(oresp) == 1 and oresp[0].get("Response") == "Success"


def test_response_error_is_actionfailed_12(pbx):
    client, session, _, _ = live(pbx)
    d = client.send_action(actions.hangup("Local/nosuch@phones-deadbeef;1"))
    (a,) = session.actions()
    session.send(replay("12_hangup_action.driver.raw", {"hangup-2": a.action_id}, 3, 4))
    f = failure_of(d)
    assert f.check(ActionFailed)
    assert f.value.message.get("Message") == "No such channel"
    assert "No such channel" in str(f.value)


def test_action_timeout_and_late_answer_ignored(pbx):
    client, session, _, _ = live(pbx, keepalive=0)
    d = client.send_action(actions.ping(), timeout=3.0)
    (a,) = session.actions()
    pbx.reactor.advance(2.9)
    assert not d.called
    pbx.reactor.advance(0.1)
    assert failure_of(d).check(ActionTimeout)
    session.send(b"Response: Success\r\nActionID: %s\r\nPing: Pong\r\n\r\n" % a.action_id.encode())
    assert client.connected
    assert pbx.reactor.getDelayedCalls() == []


def test_one_timer_for_every_pending_action_each_times_out_at_its_own_deadline(pbx):
    client, session, _, _ = live(pbx, keepalive=0)
    clock = pbx.reactor
    slow = client.send_action(actions.ping(), timeout=30.0)
    answered = client.send_action(actions.ping(), timeout=2.0)
    quick = client.send_action(actions.ping(), timeout=1.0)
    assert len(clock.getDelayedCalls()) == 1  # one sweep, armed for the earliest deadline
    _, a2, _ = session.actions()
    session.send(b"Response: Success\r\nActionID: %s\r\nPing: Pong\r\n\r\n" % a2.action_id.encode())
    assert result_of(answered).get("Ping") == "Pong"
    clock.advance(0.999)
    assert not quick.called
    clock.advance(0.001)
    assert failure_of(quick).check(ActionTimeout) and not slow.called
    clock.advance(28.999)
    assert not slow.called
    clock.advance(0.001)
    assert "within 30 s" in str(failure_of(slow).value)
    assert clock.getDelayedCalls() == [] and client.connected


def test_invalid_header_fails_the_deferred_nothing_written(pbx):
    client, session, _, _ = live(pbx)
    d = client.send_action(actions.Action("Originate", (("Exten", "100\r\nAction: Logoff"),)))
    assert failure_of(d).check(ValueError)
    assert session.actions() == []


# -- link loss ----------------------------------------------------------------------


def test_disconnect_fails_every_pending_action_with_linkdown(pbx):
    client, session, links, _ = live(pbx)
    ds = [client.send_action(actions.ping()), client.send_action(actions.coreshowchannels()), client.send_action(actions.status())]
    acts = session.actions()
    session.send(b"Response: Success\r\nActionID: %s\r\nEventList: start\r\n\r\n" % acts[1].action_id.encode())
    session.close(ConnectionLost("vanished mid-message"))
    for d in ds:
        assert failure_of(d).check(LinkDown)
    assert links == [True, False] and not client.connected
    assert failure_of(client.send_action(actions.ping())).check(LinkDown)
    # reconnect and re-login
    pbx.reactor.advance(2.0)
    pbx.login_md5(pbx.accept())
    assert links == [True, False, True]


def test_vanishing_mid_message_then_new_link_parses_cleanly(pbx):
    client, session, _, events = live(pbx)
    session.send(b"Event: Hangup\r\nUniqueid: 1.")
    session.close(ConnectionLost())
    pbx.reactor.advance(2.0)
    s2 = pbx.accept()
    pbx.login_md5(s2)
    s2.send(b"Event: Hangup\r\nUniqueid: 2.2\r\n\r\n")
    assert [m.get("Uniqueid") for m in events] == ["2.2"]


def test_pong_timeout_drops_half_open_link_and_reconnects(pbx):
    with capturedLogs() as logs:
        client, session, links, _ = live(pbx, keepalive=20.0, pong_timeout=10.0)
        pbx.reactor.advance(20.0)
        (ping,) = session.actions()
        assert ping.name == "Ping"
        session.send(b"Response: Success\r\nActionID: %s\r\nPing: Pong\r\n\r\n" % ping.action_id.encode())
        pbx.reactor.advance(20.0)
        (ping2,) = session.actions()
        assert ping2.name == "Ping" and ping2.action_id != ping.action_id
        pbx.reactor.advance(9.9)
        assert not session.transport.aborted
        pbx.reactor.advance(0.1)  # no pong within 10 s
        assert session.transport.aborted
        assert links == [True, False]
    assert any("half-open" in formatEvent(e) for e in logs)
    pbx.reactor.advance(2.0)
    pbx.login_md5(pbx.accept())
    assert links == [True, False, True]


def test_shutdown_then_close_reconnects_and_relogs_in_17(pbx):
    client, session, links, events = live(pbx)
    d = client.send_action(actions.ping())
    session.actions()
    monitor = replay("17_shutdown_restart.monitor.raw", {})
    session.send(monitor)
    assert "Shutdown" in [m.name for m in events]
    assert links == [True, False], "link reported down as soon as Asterisk says Shutdown"
    assert failure_of(d).check(LinkDown)
    assert failure_of(client.send_action(actions.ping())).check(LinkDown)
    session.close()  # the EOF ~10 ms later
    pbx.reactor.advance(2.0)
    s2 = pbx.accept()
    (ch,) = s2.actions()
    s2.send(b"Response: Success\r\nActionID: %s\r\nChallenge: 1\r\n\r\n" % ch.action_id.encode())
    (login,) = s2.actions()
    s2.send(replay("17_after_restart_reconnect.raw", {"login-after-restart": login.action_id}))
    assert client.connected and links == [True, False, True]
    booted = [m for m in events if m.name == "FullyBooted"]
    assert booted[-1].get("Uptime") == "0"


def test_shutdown_without_close_is_aborted_after_grace(pbx):
    client, session, links, _ = live(pbx, pong_timeout=10.0)
    session.send(b"Event: Shutdown\r\nPrivilege: system,all\r\nShutdown: Cleanly\r\nRestart: False\r\n\r\n")
    pbx.reactor.advance(10.0)
    assert session.transport.aborted


def test_backoff_grows_and_is_capped_with_jitter():
    from twisted.application.internet import backoffPolicy

    pbx = FakeAsterisk()
    jitters = iter([0.25] * 100)
    client = pbx.client(retry_policy=backoffPolicy(initialDelay=0.5, maxDelay=30.0, factor=2.0, jitter=lambda: next(jitters)))
    client.startService()
    delays = []
    for _ in range(9):
        pbx.refuse()
        (call,) = pbx.reactor.getDelayedCalls()
        delay = call.getTime() - pbx.reactor.seconds()
        delays.append(delay)
        pbx.reactor.advance(delay)
    assert delays == [1.25, 2.25, 4.25, 8.25, 16.25, 30.25, 30.25, 30.25, 30.25]
    pbx.login_md5(pbx.accept())
    assert client.connected
    # after a good login the count starts again
    pbx.reactor.advance(0)
    client.protocol.transport.close()
    (call,) = [c for c in pbx.reactor.getDelayedCalls() if c.func == client._connect]
    assert call.getTime() - pbx.reactor.seconds() == 1.25


def test_default_retry_policy_is_capped():
    from asttapi_server.ami.link import default_retry_policy

    policy = default_retry_policy()
    assert 1.0 <= policy(1) < 2.0
    assert all(30.0 <= policy(n) < 31.0 for n in range(6, 60))


def test_observers_survive_reconnect_pitfall_2(pbx):
    client, session, _, events = live(pbx)
    session.send(b"Event: UserEvent\r\nUserEvent: TAPI\r\nTAPIEVENT: A\r\n\r\n")
    session.close()
    pbx.reactor.advance(2.0)
    s2 = pbx.accept()
    pbx.login_md5(s2)
    s2.send(b"Event: UserEvent\r\nUserEvent: TAPI\r\nTAPIEVENT: B\r\n\r\n")
    assert [m.get("TAPIEVENT") for m in events] == ["A", "B"]
    late = []
    client.add_event_observer(late.append)  # added while live: seen on this link too
    s2.send(b"Event: Hangup\r\nUniqueid: 3\r\n\r\n")
    assert [m.name for m in late] == ["Hangup"]


def test_a_failing_observer_does_not_stop_the_others(pbx):
    client, session, _, events = live(pbx)

    def broken(msg):
        raise RuntimeError("plugin bug")

    client._event_observers.insert(0, broken)
    with capturedLogs() as logs:
        session.send(b"Event: Hangup\r\nUniqueid: 3\r\n\r\nEvent: Hangup\r\nUniqueid: 4\r\n\r\n")
    assert [m.get("Uniqueid") for m in events] == ["3", "4"]
    assert sum(1 for e in logs if "log_failure" in e) == 2


def test_stop_service_closes_and_leaves_no_timers(pbx):
    client, session, links, _ = live(pbx)
    d = client.send_action(actions.ping())
    stopped = client.stopService()
    assert failure_of(d).check(LinkDown)
    assert stopped.called and links == [True, False]
    assert pbx.reactor.getDelayedCalls() == []
    assert pbx.pending_connects() == 0


def test_stop_while_waiting_to_retry(pbx):
    client = pbx.client()
    client.startService()
    pbx.refuse()
    assert len(pbx.reactor.getDelayedCalls()) == 1
    assert client.stopService().called
    assert pbx.reactor.getDelayedCalls() == []


def test_stop_while_logging_in(pbx):
    client = pbx.client()
    client.startService()
    session = pbx.accept()
    d = client.stopService()
    assert d.called and session.transport.disconnecting
    pbx.reactor.advance(60)
    assert pbx.pending_connects() == 0


def test_on_action_id_names_the_actionid_before_it_is_written_10(pbx):
    """The bridge matches an async Originate's later OriginateResponse by this ActionID."""
    client, session, _, events = live(pbx)
    seen = []
    d = client.send_action(actions.originate("Local/alice@phones", application="Wait", data="2", async_=True),
                           on_action_id=seen.append)
    (a,) = session.actions()
    assert seen == [a.action_id]
    session.send(replay("10_originate_async.driver.raw", {"orig-async-1": a.action_id}, 3, None))
    assert result_of(d).get("Message") == "Originate successfully queued"
    assert [m.action_id for m in events if m.name == "OriginateResponse"][0] == seen[0]


def test_each_link_reads_at_most_read_bytes_a_turn():
    """One read per ready link per reactor turn, of at most READ_BYTES: a PBX flooding
    its link puts that much work, not Twisted's 64 KiB, ahead of another PBX's events."""
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from asttapi_server.ami.protocol import READ_BYTES, AMIProtocol

    transport = StringTransport()
    transport.bufferSize = 65536
    proto = AMIProtocol(Clock(), greeting_timeout=0)
    proto.makeConnection(transport)
    assert transport.bufferSize == READ_BYTES == 16384
