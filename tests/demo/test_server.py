"""The demo PBX's AMI server, action by action, on a Clock and a StringTransport."""

from __future__ import annotations

import hashlib

from .helpers import SECRET, USER, Session, action, get, make_pbx


def test_banner_first():
    _, _, factory = make_pbx()
    s = Session(factory)
    assert s.raw() == b"Asterisk Call Manager/11.0.0\r\n"


def test_plain_login_events_on_as_in_the_capture():
    _, _, factory = make_pbx()
    s = Session(factory)
    s.send(action("Login", ("ActionID", "login-1"), ("Username", USER), ("Secret", SECRET),
                  ("Events", "on")))
    msgs = s.take()
    assert msgs[0] == [("Response", "Success"), ("ActionID", "login-1"),
                       ("Message", "Authentication accepted")]
    assert [k for k, _ in msgs[1]] == ["Event", "Privilege", "Uptime", "LastReload", "Status"]
    assert get(msgs[1], "Event") == "FullyBooted"
    assert get(msgs[2], "Event") == "SuccessfulAuth"
    assert get(msgs[2], "UsingPassword") == "1"


def test_events_off_gets_only_the_response():
    _, _, factory = make_pbx()
    s = Session(factory)
    s.send(action("Login", ("ActionID", "login-1"), ("Username", USER), ("Secret", SECRET),
                  ("Events", "off")))
    assert s.take() == [[("Response", "Success"), ("ActionID", "login-1"),
                         ("Message", "Authentication accepted")]]


def test_md5_challenge_login():
    _, _, factory = make_pbx()
    s = Session(factory)
    s.send(action("Challenge", ("ActionID", "challenge-1"), ("AuthType", "MD5")))
    [resp] = s.take()
    assert [k for k, _ in resp] == ["Response", "ActionID", "Challenge"]
    challenge = get(resp, "Challenge")
    assert challenge.isdigit()
    key = hashlib.md5((challenge + SECRET).encode()).hexdigest()
    s.send(action("Login", ("ActionID", "login-2"), ("AuthType", "MD5"), ("Username", USER),
                  ("Key", key), ("Events", "off")))
    assert s.take() == [[("Response", "Success"), ("ActionID", "login-2"),
                         ("Message", "Authentication accepted")]]


def test_md5_wrong_key_fails_after_a_second_and_closes():
    clock, _, factory = make_pbx()
    s = Session(factory)
    s.send(action("Challenge", ("ActionID", "c"), ("AuthType", "MD5")))
    s.take()
    s.send(action("Login", ("ActionID", "login-2"), ("AuthType", "MD5"), ("Username", USER),
                  ("Key", "0" * 32)))
    assert s.take() == []
    clock.advance(1.0)
    assert s.take() == [[("Response", "Error"), ("ActionID", "login-2"),
                         ("Message", "Authentication failed")]]
    assert s.transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_wrong_secret_fails_and_closes():
    clock, _, factory = make_pbx()
    s = Session(factory)
    s.send(action("Login", ("ActionID", "login-1"), ("Username", USER), ("Secret", "nope")))
    clock.advance(1.0)
    assert s.take() == [[("Response", "Error"), ("ActionID", "login-1"),
                         ("Message", "Authentication failed")]]
    assert s.transport.disconnecting


def test_unknown_user_fails_too():
    clock, _, factory = make_pbx()
    s = Session(factory)
    s.send(action("Login", ("ActionID", "x"), ("Username", "mallory"), ("Secret", SECRET)))
    clock.advance(1.0)
    assert get(s.take()[0], "Message") == "Authentication failed"


def test_actions_before_login_are_denied_then_login_works():
    _, _, factory = make_pbx()
    s = Session(factory)
    s.send(action("Ping", ("ActionID", "ping-before-login")))
    s.send(action("Status", ("ActionID", "status-before-login")))
    assert s.take() == [
        [("Response", "Error"), ("ActionID", "ping-before-login"), ("Message", "Permission denied")],
        [("Response", "Error"), ("ActionID", "status-before-login"), ("Message", "Permission denied")],
    ]
    s.login(events="off")
    s.send(action("Ping", ("ActionID", "p")))
    assert get(s.take()[0], "Ping") == "Pong"


def test_ping_with_and_without_actionid_and_lf_only():
    clock, _, factory = make_pbx()
    s = Session(factory)
    s.login(events="off")
    s.send(action("Ping", ("ActionID", "ping-1")))
    s.send(action("Ping"))
    s.send(b"Action: Ping\nActionID: ping-lf-only\n\n")
    a, b, c = s.take()
    assert a == [("Response", "Success"), ("ActionID", "ping-1"), ("Ping", "Pong"),
                 ("Timestamp", f"{clock.seconds():.6f}")]
    assert [k for k, _ in b] == ["Response", "Ping", "Timestamp"]
    assert get(c, "ActionID") == "ping-lf-only"


def test_unknown_action():
    _, _, factory = make_pbx()
    s = Session(factory)
    s.login(events="off")
    s.send(action("NoSuchAction", ("ActionID", "bogus-1")))
    assert s.take() == [[("Response", "Error"), ("ActionID", "bogus-1"), (
        "Message",
        "Invalid/unknown command: NoSuchAction. Use Action: ListCommands to show available commands.",
    )]]


def test_action_split_across_reads():
    _, _, factory = make_pbx()
    s = Session(factory)
    s.login(events="off")
    for byte in action("Ping", ("ActionID", "split")):
        s.send(bytes([byte]))
    assert get(s.take()[0], "ActionID") == "split"


def test_logoff_says_goodbye_and_closes():
    _, _, factory = make_pbx()
    s = Session(factory)
    s.login(events="off")
    s.send(action("Logoff", ("ActionID", "logoff-2")))
    assert s.take() == [[("Response", "Goodbye"), ("ActionID", "logoff-2"),
                         ("Message", "Thanks for all the fish.")]]
    assert s.transport.disconnecting


def test_core_show_channels_empty_and_during_a_call():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="off")
    s.send(action("CoreShowChannels", ("ActionID", "csc-empty")))
    assert s.take() == [
        [("Response", "Success"), ("ActionID", "csc-empty"), ("EventList", "start"),
         ("Message", "Channels will follow")],
        [("Event", "CoreShowChannelsComplete"), ("ActionID", "csc-empty"),
         ("EventList", "Complete"), ("ListItems", "0")],
    ]
    engine.play("inbound")
    s.send(action("CoreShowChannels", ("ActionID", "csc-1")))
    msgs = s.take()
    items = [m for m in msgs if get(m, "Event") == "CoreShowChannel"]
    assert len(items) == 5  # trunk + bob ;1/;2 + bobbett ;1/;2
    assert get(msgs[-1], "ListItems") == "5"
    assert all(get(m, "ActionID") == "csc-1" for m in items)
    s.send(action("CoreShowChannels"))
    assert "ActionID" not in [k for m in s.take() for k, _ in m]


def test_originate_async_honours_channel_id_and_plays_the_outbound_flow():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    s.send(action("Originate", ("ActionID", "orig-1"), ("Channel", "Local/bob@phones"),
                  ("Context", "trunklocal"), ("Exten", "95551234"), ("Priority", "1"),
                  ("CallerID", '"TAPI" <line_1>'), ("Async", "true"),
                  ("ChannelId", "tapi-7"), ("OtherChannelId", "tapi-7-2"),
                  ("Variable", "TAPI_LINE=line_1")))
    assert s.take() == [[("Response", "Success"), ("ActionID", "orig-1"),
                         ("Message", "Originate successfully queued")]]
    clock.advance(0)
    first = s.take()
    chans = {get(m, "Channel"): get(m, "Uniqueid") for m in first if get(m, "Event") == "Newchannel"}
    assert sorted(chans.values()) == ["tapi-7", "tapi-7-2"]
    clock.advance(5)
    msgs = first + s.take()
    [resp] = [m for m in msgs if get(m, "Event") == "OriginateResponse"]
    assert [k for k, _ in resp] == ["Event", "Privilege", "ActionID", "Response", "Channel",
                                    "Context", "Exten", "Reason", "Uniqueid", "CallerIDNum",
                                    "CallerIDName"]
    assert (get(resp, "ActionID"), get(resp, "Response"), get(resp, "Reason"),
            get(resp, "Uniqueid")) == ("orig-1", "Success", "4", "tapi-7")
    assert get(resp, "Channel").endswith(";1")
    events = [(u, t) for u, t in ((get(m, "Uniqueid"), get(m, "TAPIEVENT")) for m in msgs) if t]
    assert events[:7] == [
        ("tapi-7", "LINE_NEWCALL line_1"),
        ("tapi-7", "SET CALLORIGIN LINECALLORIGIN_OUTBOUND"),
        ("tapi-7", "SET CALLEDID 95551234"),
        ("tapi-7", "LINE_CALLINFO LINECALLINFOSTATE_CALLEDID"),
        ("tapi-7", "LINE_CALLSTATE LINECALLSTATE_DIALTONE"),
        ("tapi-7", "LINE_CALLSTATE LINECALLSTATE_DIALING"),
        ("tapi-7", "LINE_CALLSTATE LINECALLSTATE_PROCEEDING"),
    ]
    # the OriginateResponse comes before the dialplan's first UserEvent
    assert msgs.index(resp) < next(i for i, m in enumerate(msgs) if get(m, "Event") == "UserEvent")
    run_all(clock)
    rest = [(get(m, "Uniqueid"), get(m, "TAPIEVENT")) for m in s.take() if get(m, "TAPIEVENT")]
    assert rest == [
        (rest[0][0], "[~tapi-7] LINE_CALLSTATE LINECALLSTATE_CONNECTED"),  # on the pstn leg
        ("tapi-7", "LINE_CALLSTATE LINECALLSTATE_IDLE"),
    ]
    assert rest[0][0] != "tapi-7"
    assert engine.channels == {}
    assert engine.flows == []


def test_originate_failures():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    s.send(action("Originate", ("ActionID", "f1"), ("Channel", "SIP/nosuchpeer"),
                  ("Application", "Wait"), ("Data", "2"), ("Async", "true")))
    s.send(action("Originate", ("ActionID", "f2"), ("Channel", "Local/nosuchphone@phones"),
                  ("Application", "Wait"), ("Data", "2"), ("Async", "true"), ("ChannelId", "x-b")))
    s.send(action("Originate", ("ActionID", "f3"), ("Channel", "SIP/nosuchpeer"),
                  ("Application", "Wait"), ("Data", "2")))
    clock.advance(0)
    msgs = s.take()
    assert [get(m, "Message") for m in msgs[:3]] == ["Originate successfully queued"] * 2 + [
        "Originate failed"]
    fails = [m for m in msgs if get(m, "Event") == "OriginateResponse"]
    assert [(get(m, "ActionID"), get(m, "Response"), get(m, "Reason"), get(m, "Uniqueid"))
            for m in fails] == [("f1", "Failure", "0", "<unknown>"), ("f2", "Failure", "0", "x-b")]
    assert clock.getDelayedCalls() == []


def test_originate_reusing_a_live_channel_id_fails():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    for aid in ("d1", "d2"):
        s.send(action("Originate", ("ActionID", aid), ("Channel", "Local/carol@phones"),
                      ("Application", "Wait"), ("Data", "5"), ("Async", "true"),
                      ("ChannelId", "dup")))
    clock.advance(0)
    resp = {get(m, "ActionID"): get(m, "Response") for m in s.take()
            if get(m, "Event") == "OriginateResponse"}
    assert resp == {"d1": "Success", "d2": "Failure"}
    run_all(clock)
    assert engine.channels == {}


def run_all(clock, limit=200):
    for _ in range(limit):
        if not clock.getDelayedCalls():
            return
        clock.advance(1)


def _hold(s, clock, aid="h"):
    s.send(action("Originate", ("ActionID", aid), ("Channel", "Local/carol@phones"),
                  ("Context", "hold"), ("Exten", "s"), ("Priority", "1"),
                  ("CallerID", '"Carol" <202>'), ("Async", "true")))
    clock.advance(0)
    return [get(m, "Channel") for m in s.take() if get(m, "Event") == "Newchannel"]


def test_hangup_by_name_by_uniqueid_and_unknown():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="off")
    names = _hold(s, clock)
    assert len(names) == 0  # events off: nothing but responses
    [name] = [n for n in engine.channels if n.endswith(";1")]
    s.send(action("Hangup", ("ActionID", "hangup-1"), ("Channel", name), ("Cause", "16")))
    assert s.take() == [[("Response", "Success"), ("ActionID", "hangup-1"),
                         ("Message", "Channel Hungup")]]
    clock.advance(0)
    assert engine.channels == {}
    s.send(action("Hangup", ("ActionID", "hangup-2"), ("Channel", "Local/nosuch@phones-deadbeef;1")))
    assert s.take() == [[("Response", "Error"), ("ActionID", "hangup-2"),
                         ("Message", "No such channel")]]
    _hold(s, clock, "h2")
    [ch] = [c for n, c in engine.channels.items() if n.endswith(";1")]
    s.send(action("Hangup", ("ActionID", "hangup-3"), ("Channel", ch.uniqueid)))
    assert get(s.take()[0], "Message") == "Channel Hungup"
    clock.advance(0)
    assert engine.channels == {}
    s.send(action("Hangup", ("ActionID", "hangup-4"), ("Channel", "/^Local/nomatch.*$/")))
    assert s.take() == [
        [("Response", "Success"), ("ActionID", "hangup-4"), ("EventList", "start"),
         ("Message", "Channels hung up will follow")],
        [("Event", "ChannelsHungupListComplete"), ("ActionID", "hangup-4"),
         ("EventList", "Complete"), ("ListItems", "0")],
    ]
    assert clock.getDelayedCalls() == []


def test_hangup_of_an_inbound_call_ends_it_with_hangup_events_and_idle():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    flow = engine.play("inbound", ring=3.0)
    trunk = flow.dialplan
    s.take()
    s.send(action("Hangup", ("ActionID", "h"), ("Channel", trunk.name)))
    clock.advance(0)
    msgs = s.take()
    assert get(msgs[0], "Message") == "Channel Hungup"
    hangups = [get(m, "Channel") for m in msgs if get(m, "Event") == "Hangup"]
    assert len(hangups) == 5 and hangups[-1] == trunk.name
    ue = [(get(m, "Uniqueid"), get(m, "TAPIEVENT")) for m in msgs if get(m, "Event") == "UserEvent"]
    assert ue == [(trunk.uniqueid, "LINE_CALLSTATE LINECALLSTATE_IDLE")]
    assert flow.finished and engine.channels == {} and clock.getDelayedCalls() == []


def test_redirect_success_and_unknown_channel():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="off")
    _hold(s, clock)
    [name] = [n for n in engine.channels if n.endswith(";1")]
    s.send(action("Redirect", ("ActionID", "redirect-1"), ("Channel", name),
                  ("Context", "redirected"), ("Exten", "s"), ("Priority", "1")))
    s.send(action("Redirect", ("ActionID", "redirect-2"), ("Channel", "Local/nosuch@phones-deadbeef;1"),
                  ("Context", "redirected"), ("Exten", "s"), ("Priority", "1")))
    assert s.take() == [
        [("Response", "Success"), ("ActionID", "redirect-1"), ("Message", "Redirect successful")],
        [("Response", "Error"), ("ActionID", "redirect-2"),
         ("Message", "Channel does not exist: Local/nosuch@phones-deadbeef;1")],
    ]
    clock.advance(0)
    assert engine.channels[name].context == "redirected"
    run_all(clock)
    assert engine.channels == {}


def test_redirect_of_a_connected_call_ends_it_with_idle():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="user")
    flow = engine.play("inbound", ring=1.0, talk=60.0)
    clock.advance(1.0)
    s.take()
    s.send(action("Redirect", ("ActionID", "r"), ("Channel", flow.dialplan.name),
                  ("Context", "trunklocal"), ("Exten", "95559999"), ("Priority", "1")))
    run_all(clock)
    msgs = s.take()
    assert get(msgs[0], "Message") == "Redirect successful"
    assert [get(m, "TAPIEVENT") for m in msgs[1:]] == ["LINE_CALLSTATE LINECALLSTATE_IDLE"]
    assert flow.finished


def test_events_mask_user_only_gets_user_events():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="user")
    engine.play("busy")
    run_all(clock)
    assert {get(m, "Event") for m in s.take()} == {"UserEvent"}


def test_events_action_switches_events_off():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    s.send(action("Events", ("ActionID", "e"), ("EventMask", "off")))
    assert s.take() == [[("Response", "Success"), ("ActionID", "e"), ("Events", "Off")]]
    engine.play("busy")
    run_all(clock)
    assert s.take() == []


def test_closed_session_gets_nothing_and_leaves_no_listener():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="on")
    s.protocol.connectionLost(None)
    assert engine._listeners == []
    assert factory.sessions == set()


def test_originate_as_the_bridge_sends_it_uses_tapi_line():
    clock, engine, factory = make_pbx()
    s = Session(factory)
    s.login(events="user")
    s.send(action("Originate", ("ActionID", "7"), ("Channel", "Local/bobbett@phones"),
                  ("Context", "trunklocal"), ("Exten", "+49301234567"), ("Priority", "1"),
                  ("Async", "true"), ("Timeout", "30000"), ("ChannelId", "asttapi-1-5"),
                  ("OtherChannelId", "asttapi-1-5-2"), ("Variable", "TAPI_LINE=line_2"),
                  ("Variable", "TAPI_CALL=5")))
    run_all(clock)
    texts = [(get(m, "Uniqueid"), get(m, "TAPIEVENT")) for m in s.take() if get(m, "TAPIEVENT")]
    assert texts[0] == ("asttapi-1-5", "LINE_NEWCALL line_2")
    assert texts[-1] == ("asttapi-1-5", "LINE_CALLSTATE LINECALLSTATE_IDLE")
    assert len(texts) == 9  # NEWCALL, 2 SETs, CALLINFO, DIALTONE, DIALING, PROCEEDING, CONNECTED, IDLE
    assert ("asttapi-1-5", "SET CALLEDID +49301234567") in texts
