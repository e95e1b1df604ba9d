"""Event-name filter: the parser drops unwanted events unread, and what it
passes on is exactly the unfiltered stream restricted to the kept messages,
whatever the read boundaries.  Real captures plus hand-made edge cases
(labelled)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asttapi_server.ami import actions
from asttapi_server.ami.message import EVENT
from asttapi_server.ami.parser import ALWAYS_KEPT, AMIParser

from .fakes import FakeAsterisk, replay
from .helpers import captures, load, signature

SERVER_WANTED = {"UserEvent", "UserEventTAPI", "Hangup", "OriginateResponse"}  # what bridge sets
FILTERS = [
    SERVER_WANTED,
    {"newchannel", "VARSET", "coreshowchannel"},  # other case than the wire
    set(),  # nothing wanted: only responses and ALWAYS_KEPT
]
CAPTURES = [p.name for p in captures(".raw") + captures(".raw.gz")]
CUT_BYTES = 1 << 20


def restricted(messages, wanted, action_ids=()):
    keep = {n.lower() for n in wanted} | ALWAYS_KEPT
    return [
        m for m in messages if m.kind != EVENT or m.name.lower() in keep or (m.action_id in action_ids)
    ]


def feed(parser, data, sizes):
    out = []
    pos = 0
    for n in sizes:
        out += parser.feed(data[pos : pos + n])
        pos += n
    out += parser.feed(data[pos:])
    return out


def filtered_parser(wanted, **kw):
    p = AMIParser(**kw)
    p.set_event_filter(wanted)
    return p


@pytest.mark.parametrize("name", CAPTURES)
@pytest.mark.parametrize("wanted", FILTERS, ids=["server", "othercase", "none"])
def test_capture_filtered_equals_unfiltered_restricted(name, wanted):
    data = load(name)
    full = AMIParser()
    expected = signature(restricted(full.feed(data), wanted))
    whole = filtered_parser(wanted)
    assert signature(whole.feed(data)) == expected
    assert whole.errors == full.errors
    # Read boundaries: three random cuttings of the first MiB (the 15 MB flood
    # capture repeats one shape; its first MiB already holds ~800 boundaries
    # a cutting, and cutting the rest took 3 s a filter for nothing new).
    part = data[:CUT_BYTES]
    expected = expected if part == data else signature(restricted(AMIParser().feed(part), wanted))
    rng = random.Random(name)
    for _ in range(3):
        sizes = [rng.randint(1, 9000) for _ in range(len(part) // 4000 + 2)]
        assert signature(feed(filtered_parser(wanted), part, sizes)) == expected


@pytest.mark.parametrize("name", [n for n in CAPTURES if len(load(n)) < 60_000])
def test_capture_filtered_byte_by_byte(name):
    data = load(name)
    expected = signature(restricted(AMIParser().feed(data), SERVER_WANTED))
    p = filtered_parser(SERVER_WANTED)
    got = []
    for i in range(len(data)):
        got += p.feed(data[i : i + 1])
    assert signature(got) == expected


def test_filter_none_delivers_everything_again():
    data = load("05_inbound_call.monitor.raw")
    p = filtered_parser(SERVER_WANTED)
    p.set_event_filter(None)
    assert signature(p.feed(data)) == signature(AMIParser().feed(data))
    assert p.event_filter is None


def test_unwanted_events_are_never_decoded():
    data = load("05_inbound_call.monitor.raw")
    p = filtered_parser(SERVER_WANTED)
    out = p.feed(data)
    assert {m.name for m in out if m.kind == EVENT} <= {"UserEvent", "Hangup", "OriginateResponse", "FullyBooted"}
    assert all(m._items is None for m in out if m.kind == EVENT), "kept events are still decoded lazily"


# -- hand-made edge cases ----------------------------------------------------------

HANDMADE = [
    # bare \n line ends (hand-made)
    b"Event: VarSet\nVariable: x\n\nEvent: Hangup\nUniqueid: 1.1\n\nResponse: Success\nActionID: a\n\n",
    # lower-case key and value case (hand-made): slow path, filtered after decoding
    b"event: VarSet\r\nx: 1\r\n\r\nevent: hangup\r\nUniqueid: 2\r\n\r\nEvent: HANGUP\r\nUniqueid: 3\r\n\r\n",
    # Response: Follows with a blank line in the body, between noise (hand-made)
    b"Event: Newexten\r\nA: 1\r\n\r\nResponse: Follows\r\nActionID: c\r\nline 1\r\n\r\nEvent: VarSet\r\n--END COMMAND--\r\n\r\n"
    b"Event: UserEvent\r\nUserEvent: TAPI\r\nTAPIEVENT: X\r\n\r\n",
    # extra blank lines, leading blank lines, spaces around the name (hand-made)
    b"\r\n\r\nEvent: VarSet\r\n\r\n\r\n\r\nEvent: Hangup \r\nUniqueid: 4\r\n\r\n\r\n\r\n\r\nEvent:  UserEvent\r\nA: b\r\n\r\n",
    # names that only start like a wanted one, odd bytes (hand-made)
    b"Event: HangupRequest\r\nA: 1\r\n\r\nEvent: Hangup\r\nA: 2\r\n\r\nEvent: \xc3\xa9v\r\nA: 3\r\n\r\nEvent: \r\n\r\n",
    # garbage between events (hand-made)
    b"Event: VarSet\r\n\r\nthis is no header\r\n\r\nEvent: Hangup\r\nUniqueid: 5\r\n\r\n",
    # "\n\r\n" that is no separator, mixed endings (hand-made)
    b"Event: VarSet\r\nA: 1\n\r\nEvent: Hangup\r\nB: 2\r\n\r\nEvent: UserEvent\r\nC: 3\r\n\r\n",
    # Shutdown always passes (hand-made)
    b"Event: Shutdown\r\nShutdown: Cleanly\r\nRestart: True\r\n\r\nEvent: FullyBooted\r\nStatus: x\r\n\r\n",
]


@pytest.mark.parametrize("data", HANDMADE)
@pytest.mark.parametrize("wanted", FILTERS, ids=["server", "othercase", "none"])
def test_handmade_filtered_equals_unfiltered_restricted(data, wanted):
    full = AMIParser()
    expected = signature(restricted(full.feed(data), wanted))
    p = filtered_parser(wanted)
    assert signature(p.feed(data)) == expected
    assert p.errors == full.errors
    got = []
    q = filtered_parser(wanted)
    for i in range(len(data)):
        got += q.feed(data[i : i + 1])
    assert signature(got) == expected


def test_oversized_and_garbage_reported_with_a_filter():
    big = b"Event: VarSet\r\nValue: " + b"x" * 3000 + b"\r\n\r\n"
    data = big + b"Event: Hangup\r\nUniqueid: 1\r\n\r\n" + b"\x00garbage\r\n\r\n" + big
    for sizes in ([len(data)], [1000] * (len(data) // 1000 + 1), [1] * len(data)):
        full = AMIParser(max_message_bytes=1000)
        kept = restricted(feed(full, data, sizes), SERVER_WANTED)
        p = filtered_parser(SERVER_WANTED, max_message_bytes=1000)
        assert signature(feed(p, data, sizes)) == signature(kept)
        assert [m.name for m in kept] == ["Hangup"]
        assert p.error_count == full.error_count > 0
        assert p.buffered <= 1000


def test_dropped_names_learned_change_no_verdict():
    """Once the loop has dropped "Event: VarSet", the parser leaves such blocks out before
    the loop; an oversized one is still reported, and one carrying a pending action's
    ActionID still passes, exactly as without what was learned."""
    small = b"Event: VarSet\r\nActionID: csc-1\r\nValue: 1\r\n\r\n"
    big = b"Event: VarSet\r\nValue: " + b"x" * 3000 + b"\r\n\r\n"
    p = filtered_parser(SERVER_WANTED, max_message_bytes=1000)
    assert p.feed(small + b"Event: Hangup\r\nUniqueid: 1\r\n\r\n")[0].name == "Hangup"
    assert p._drops is not None and p._drops(small)
    assert p.feed(small * 3) == [] and p.error_count == 0
    assert p.feed(small + big + b"Event: Hangup\r\nUniqueid: 2\r\n\r\n")[0].get("Uniqueid") == "2"
    assert p.error_count == 1
    p.action_ids = {"csc-1"}
    assert [m.get("Value") for m in p.feed(small)] == ["1"]
    p.set_event_filter(SERVER_WANTED)  # a new filter forgets what was learned
    assert p._drops is None


def test_events_of_pending_actions_pass_the_filter():
    data = load("11_coreshowchannels.driver.raw")
    p = filtered_parser(SERVER_WANTED)
    p.action_ids = {"csc-1"}
    expected = restricted(AMIParser().feed(data), SERVER_WANTED, {"csc-1"})
    got = p.feed(data)
    assert signature(got) == signature(expected)
    assert [m.name for m in got if m.kind == EVENT].count("CoreShowChannel") == 2
    q = filtered_parser(SERVER_WANTED)
    q.action_ids = {"csc-1"}
    assert signature(feed(q, data, [7] * (len(data) // 7))) == signature(expected)
    r = filtered_parser(SERVER_WANTED)  # nothing pending: the list items are dropped
    assert "CoreShowChannel" not in [m.name for m in r.feed(data)]


# -- client ------------------------------------------------------------------------


def result_of(d):
    box = []
    d.addCallback(box.append)
    assert box, "Deferred has not fired"
    return box[0]


def live(pbx, wanted):
    client = pbx.client()
    client.set_event_filter(wanted)  # before connecting, as the bridge does
    events = []
    client.add_event_observer(events.append)
    client.startService()
    session = pbx.accept()
    pbx.login_md5(session)
    assert client.connected
    return client, session, events


def test_client_observers_get_only_wanted_events():
    pbx = FakeAsterisk()
    client, session, events = live(pbx, SERVER_WANTED)
    data = load("05_inbound_call.monitor.raw").split(b"\r\n", 1)[1]
    session.send(data)
    expected = [m for m in AMIParser().feed(data) if m.kind == EVENT and m.name.lower() in {"userevent", "hangup", "originateresponse"}]
    assert signature(events) == signature(expected)
    assert client.event_filter == frozenset(n.lower() for n in SERVER_WANTED)


@pytest.mark.parametrize(
    "capture, ids, make, names",
    [
        ("11_coreshowchannels.driver.raw", "csc-1", actions.coreshowchannels, ["Success", "CoreShowChannel", "CoreShowChannel", "CoreShowChannelsComplete"]),
        ("14_status_action.driver.raw", "status-all", actions.status, ["Success", "Status", "Status", "StatusComplete"]),
    ],
)
def test_list_actions_collect_their_events_with_a_filter(capture, ids, make, names):
    pbx = FakeAsterisk()
    client, session, events = live(pbx, SERVER_WANTED)
    d = client.send_action(make())
    (a,) = session.actions()
    data = replay(capture, {ids: a.action_id}, 4, 8)
    for i in range(len(data)):  # byte by byte
        session.send(data[i : i + 1])
    assert [m.name for m in result_of(d)] == names
    assert events == []


def test_only_actions_that_may_answer_with_events_open_the_filter():
    """A Getvar (one per offered call) or a Ping answers with one response: while
    one is pending, dropped events are not searched for its ActionID; a
    CoreShowChannels pending opens the filter to the events carrying its own."""
    pbx = FakeAsterisk()
    client, session, events = live(pbx, SERVER_WANTED)
    parser = client.protocol.parser
    client.send_action(actions.getvar("PJSIP/bob-1", "CALLERID(pres)"))
    client.send_action(actions.ping())
    getvar, ping = session.actions()
    assert getvar.action_id not in parser.action_ids and ping.action_id not in parser.action_ids
    d = client.send_action(actions.coreshowchannels())
    (csc,) = session.actions()
    assert list(parser.action_ids) == [csc.action_id]
    data = replay("11_coreshowchannels.driver.raw", {"csc-1": csc.action_id}, 4, 8)
    session.send(data)
    assert [m.name for m in result_of(d)][-1] == "CoreShowChannelsComplete"
    assert not parser.action_ids and events == []
    session.send(b"Response: Success\r\nActionID: %s\r\nVariable: CALLERID(pres)\r\n"
                 b"Value: allowed\r\n\r\n" % getvar.action_id.encode())
    assert len(client.protocol._pending) == 1  # the Ping's


def test_filter_set_before_connect_survives_reconnect():
    pbx = FakeAsterisk()
    client, session, events = live(pbx, {"Hangup"})
    session.send(b"Event: VarSet\r\nA: 1\r\n\r\nEvent: Hangup\r\nUniqueid: 1.1\r\n\r\n")
    session.close()
    pbx.reactor.advance(5.0)
    s2 = pbx.accept()
    pbx.login_md5(s2)
    assert client.connected
    assert client.protocol.parser.event_filter == frozenset({"hangup"}) | ALWAYS_KEPT
    s2.send(b"Event: VarSet\r\nA: 2\r\n\r\nEvent: hangup\r\nUniqueid: 2.2\r\n\r\nEvent: UserEvent\r\nA: 3\r\n\r\n")
    assert [m.get("Uniqueid") for m in events] == ["1.1", "2.2"]
    client.set_event_filter(None)  # live change
    s2.send(b"Event: VarSet\r\nA: 4\r\n\r\n")
    assert [m.name for m in events][-1] == "VarSet"


def test_set_event_filter_rejects_a_bare_string():
    pbx = FakeAsterisk()
    with pytest.raises(TypeError):
        pbx.client().set_event_filter("Hangup")


# -- Message.get before the full decode --------------------------------------------

LAZY_ODD = [  # hand-made
    b"Event: X\r\nUniqueid: a\r\nUNIQUEID: b\r\nuniqueid:c\r\n",
    b"Event: X\r\nOutput: a\r\nOutput:  b\r\nKey: v\r\n",
    b"Event: X\r\nKey: v\nOther: w\r\nbare line\r\nA b: c\r\nEmpty:\r\n",
    b"Event: X\r\nKey:  spaced \t\r\nKey2: a: b\r\n:novalue\r\nK\xc3\xa9y: z\r\n",
    b"Event: X\r\nKey: v\rstray\r\nLast: end",
]


def _lazy_vs_full(raw):
    from asttapi_server.ami.message import Message

    full = Message(raw, EVENT, "X")
    full.items()
    keys = {k for k, _ in full.items()} | {"Uniqueid", "UNIQUEID", "output", "Output", "", "a b", "Key:", "Missing", "event"}
    for key in keys:
        lazy = Message(raw, EVENT, "X")
        assert lazy.get(key, "dflt") == full.get(key, "dflt"), (raw, key)


@pytest.mark.parametrize("raw", LAZY_ODD)
def test_lazy_get_equals_full_decode_handmade(raw):
    _lazy_vs_full(raw)


@pytest.mark.parametrize("name", [n for n in CAPTURES if not n.endswith(".gz")])
def test_lazy_get_equals_full_decode_on_captures(name):
    for m in AMIParser().feed(load(name)):
        if m.kind == EVENT and m.raw is not None:
            _lazy_vs_full(m.raw)


_KEYS = st.sampled_from(["ActionID", "actionid", "ACTIONID", "ActionId", " ActionID", "ActionID ", "XActionID",
                         "Action", "ActionIDs", "Uniqueid", "Channel", ""])
_LINES = st.builds(lambda key, sep, value, end: key + sep + value + end, _KEYS, st.sampled_from([":", ": ", " :", ""]),
                   st.sampled_from(["csc-1", " csc-1 ", "csc-2", "", "csc-1\r", "c\u00e9"]),
                   st.sampled_from(["\r\n", "\n", "\r"]))


@given(st.lists(_LINES, max_size=6))
def test_a_dropped_event_of_a_pending_action_is_found_as_the_case_blind_regex_found_it(lines):
    """The parser's ActionID check on dropped events (a plain find in the lower-cased
    block since it runs on every dropped event while a Getvar is pending) gives the
    verdict of the MULTILINE, IGNORECASE regex it replaced."""
    import re

    block = ("Event: VarSet\r\n" + "".join(lines)).rstrip("\r\n").encode()
    m = re.compile(rb"^actionid:([^\n]*)", re.IGNORECASE | re.MULTILINE).search(block)
    p = AMIParser()
    p.action_ids = {"csc-1"}
    assert p._pending_id(block) == (m is not None and m.group(1).decode("utf-8").strip() in {"csc-1"})
