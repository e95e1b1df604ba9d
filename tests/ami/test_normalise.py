"""user_event / hangup / originate_response across every Asterisk dialect."""

from __future__ import annotations

import pytest

from asttapi_server.ami.message import Message
from asttapi_server.ami.normalise import (
    live_channels,
    hangup,
    originate_response,
    user_event,
)
from asttapi_server.ami.parser import AMIParser

from .helpers import LEGACY, load, parse_all

A, B = "1136996111.5", "1136996111.7"
BODIES = [
    "LINE_NEWCALL line_1",
    "LINE_CALLSTATE LINECALLSTATE_OFFERING",
    "SET CALLERID 0301234567",
    "LINE_CALLINFO LINECALLINFOSTATE_CALLERID",
    f"[~{A}&line_1] LINE_CALLSTATE LINECALLSTATE_CONNECTED",
    f"[~{A}&!line_1] LINE_CALLSTATE LINECALLSTATE_HANGUP",
    "LINE_CALLSTATE LINECALLSTATE_IDLE",
]
UIDS = [A, A, A, A, B, B, A]


def legacy(name: str) -> list:
    _, messages = parse_all((LEGACY / name).read_bytes())
    return [u for u in map(user_event, messages) if u is not None]


@pytest.mark.parametrize(
    "name,uids,channels",
    [
        ("asterisk-1.2.raw", UIDS, ["Zap/1-1"] * 4 + ["SIP/bob-0a1b2c3d"] * 2 + ["Zap/1-1"]),
        ("asterisk-1.4.raw", UIDS, [None] * 7),
        ("asterisk-1.4-no-uniqueid.raw", [None] * 7, [None] * 7),
        ("asterisk-11.raw", UIDS, [None] * 7),
        ("modern-with-pipe-dialplan.raw", None, None),
    ],
)
def test_legacy_dialects_hand_made(name, uids, channels):
    """HAND-MADE streams (tests/data/ami-legacy/README.txt), one per dialect."""
    events = legacy(name)
    assert [u.name for u in events] == ["TAPI"] * 7
    assert [u.body for u in events] == BODIES
    if uids is not None:
        assert [u.uniqueid for u in events] == uids
        assert [u.channel for u in events] == channels
    else:
        assert all(u.uniqueid and u.channel and u.linkedid for u in events)


def test_manual_typo_form_without_colon():
    (u,) = legacy("asterisk-1.2-manual-typo.raw")
    assert (u.name, u.body, u.uniqueid, u.channel) == (
        "TAPI",
        f"[~{A}&sip/bob] LINE_CALLSTATE LINECALLSTATE_CONNECTED",
        B,
        "SIP/bob-0a1b2c3d",
    )


def test_real_asterisk_22_capture_full_snapshot():
    _, messages = parse_all(load("05_inbound_call.monitor.raw"))
    events = [u for u in map(user_event, messages) if u is not None]
    assert len(events) == 7
    connected = [u for u in events if "CONNECTED" in (u.body or "")][0]
    assert connected.body == "[~1795674354.1&line_1] LINE_CALLSTATE LINECALLSTATE_CONNECTED"
    assert connected.uniqueid == "1795674354.2"
    assert connected.linkedid == "1795674354.0"
    assert connected.channel == "Local/bob@phones-00000001;1"
    assert connected.message.get("ChannelStateDesc") == "Up"  # snapshot passed through


def test_flood_bodies():
    _, messages = parse_all(load("16_userevent_flood_events_user.monitor.raw.gz"))
    bodies = [u.body for u in map(user_event, messages) if u is not None]
    assert bodies[:2] == ["FLOOD 0", "FLOOD 1"] and bodies[-1] == "FLOOD DONE"


def one(raw: bytes) -> Message:
    (m,) = AMIParser().feed(raw)
    return m


# HAND-MADE variants of the separators, written from app_userevent.c of each tag.
@pytest.mark.parametrize(
    "raw,expected",
    [
        (b"Event: UserEvent\r\nUserEvent: TAPI,TAPIEVENT: LINE_NEWCALL line_1\r\n\r\n", ("TAPI", "LINE_NEWCALL line_1", None)),
        (b"Event: UserEventTAPI,TAPIEVENT: LINE_NEWCALL line_1\r\nUniqueid: 9.1\r\n\r\n", ("TAPI", "LINE_NEWCALL line_1", "9.1")),
        (b"Event: UserEventTAPI|TAPIEVENT: LINE_NEWCALL line_1\r\nUniqueid: 9.1\r\n\r\n", ("TAPI", "LINE_NEWCALL line_1", "9.1")),
        (b"Event: UserEvent\r\nUserEvent: TAPI\r\nTAPIEVENT: LINE_NEWCALL line_1|Uniqueid: 9.2\r\n\r\n", ("TAPI", "LINE_NEWCALL line_1", "9.2")),
        (b"Event: UserEvent\r\nUserEvent: TAPI|TAPIEVENT: LINE_NEWCALL line_1|UniqueID: 9.3\r\n\r\n", ("TAPI", "LINE_NEWCALL line_1", "9.3")),
        (b"Event: UserEvent\r\nUserEvent: TAPI\r\nUniqueID: 9.4\r\nTAPIEVENT: SET CALLERIDNAME Doe, John\r\n\r\n", ("TAPI", "SET CALLERIDNAME Doe, John", "9.4")),
        (b"Event: UserEvent\r\nUserEvent: TAPI\r\ntapievent:   LINE_CALLSTATE X  \r\n\r\n", ("TAPI", "LINE_CALLSTATE X", None)),
        (b"Event: UserEvent\r\nUserEvent: Other\r\nFoo: bar\r\n\r\n", ("Other", None, None)),
        (b"Event: UserEventTAPI\r\nUniqueid: 9.5\r\nTAPIEVENT [~9.1&l] SET CALLERIDNAME Doe: John\r\n\r\n", ("TAPI", "[~9.1&l] SET CALLERIDNAME Doe: John", "9.5")),
    ],
)
def test_handmade_separator_variants(raw, expected):
    u = user_event(one(raw))
    assert (u.name, u.body, u.uniqueid) == expected


def test_not_user_events():
    assert user_event(one(b"Event: Newexten\r\nUniqueid: 1\r\n\r\n")) is None
    assert user_event(one(b"Response: Success\r\nUserEvent: TAPI\r\n\r\n")) is None
    assert user_event(one(b"Event: UserEventually\r\n\r\n")) is not None  # 1.2 form: name "ually"


def test_hangup_from_capture():
    _, messages = parse_all(load("05_inbound_call.monitor.raw"))
    hangups = [h for h in map(hangup, messages) if h is not None]
    assert len(hangups) == 6
    assert ("1795674354.4", 26, "Local/bobbett@phones-00000002;1") in hangups
    assert hangup(one(b"Event: Hangup\r\nUniqueid: 1.1\r\nCause: x\r\n\r\n")) == ("1.1", None, None)
    assert hangup(one(b"Event: Hangup\r\nCause: 16\r\n\r\n")) is None
    assert hangup(one(b"Event: Newstate\r\nUniqueid: 1.1\r\n\r\n")) is None


def test_originate_response_from_capture_10():
    _, messages = parse_all(load("10_originate_async.driver.raw"))
    results = {r.action_id: r for r in map(originate_response, messages) if r is not None}
    ok = results["orig-async-1"]
    assert ok.success and ok.reason == 4 and ok.uniqueid == "lab-1795674392-a"
    assert ok.channel == "Local/alice@phones-0000000b;1"
    bad = results["orig-async-fail-2"]
    assert not bad.success and bad.reason == 0 and bad.uniqueid is None
    assert not results["orig-dup-id-2"].success


def test_live_channels_from_capture_11():
    _, messages = parse_all(load("11_coreshowchannels.driver.raw"))
    listed = [m for m in messages if m.action_id == "csc-1"]
    assert live_channels(listed) == {"1795674401.33": "Local/carol@phones-00000011;1",
                                     "1795674401.34": "Local/carol@phones-00000011;2"}
    assert live_channels([m for m in messages if m.action_id == "csc-empty"]) == {}
