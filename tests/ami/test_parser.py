"""AMIParser and Message: every real capture, every cut, hand-made edge cases."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asttapi_server.ami.message import Message
from asttapi_server.ami.parser import AMIParser

from .helpers import DATA, LEGACY, captures, load, parse_all, signature

RAW = captures(".raw") + captures(".raw.gz")
SMALL_RAW = [p for p in RAW if not p.name.endswith(".gz")]
ALL_STREAMS = RAW + sorted(LEGACY.glob("*.raw"))


def feed_chunks(data: bytes, sizes) -> tuple[AMIParser, list]:
    parser = AMIParser()
    out = []
    pos = 0
    for size in sizes:
        if pos >= len(data):
            break
        out.extend(parser.feed(data[pos : pos + size]))
        pos += size
    out.extend(parser.feed(data[pos:]))
    return parser, out


# -- every capture parses ----------------------------------------------------


@pytest.mark.parametrize("path", ALL_STREAMS, ids=lambda p: p.name)
def test_every_capture_parses_cleanly(path):
    data = load(path)
    parser, messages = parse_all(data)
    assert parser.errors == []
    assert parser.banner is not None and parser.banner.startswith("Asterisk Call Manager/")
    assert parser.buffered == 0, "a capture ends on a complete message"
    assert messages, path.name
    # One message per blank-line-framed block (the banner shares the first one).
    blocks = [b for b in data.split(b"\r\n\r\n") if b.strip()]
    assert len(messages) == len(blocks)
    for m in messages:
        assert m.kind in ("event", "response")
        assert m.name


def test_event_and_response_counts_of_the_inbound_call():
    _, messages = parse_all(load("05_inbound_call.monitor.raw"))
    events = [m for m in messages if m.kind == "event"]
    assert len(events) == 137 - 2  # two responses: login and logoff
    assert sum(1 for m in events if m.name == "UserEvent") == 7
    assert sum(1 for m in events if m.name == "Hangup") == 6


def test_flood_capture_counts():
    _, messages = parse_all(load("15_userevent_flood_events_on.monitor.raw.gz"))
    user = [m for m in messages if m.name == "UserEvent"]
    assert len(user) == 10001  # 10000 + "FLOOD DONE" (RATES.txt)
    assert len([m for m in messages if m.kind == "event"]) == 40026
    assert user[0].get("TAPIEVENT") == "FLOOD 0"
    assert user[-1].get("TAPIEVENT") == "FLOOD DONE"
    _, messages = parse_all(load("16_userevent_flood_events_user.monitor.raw.gz"))
    assert sum(1 for m in messages if m.name == "UserEvent") == 10001


@pytest.mark.parametrize("path", captures(".sent"), ids=lambda p: p.name)
def test_sent_files_parse_as_actions(path):
    """The demo PBX reads actions with the same parser; .sent has no banner."""
    parser, messages = parse_all(load(path))
    assert parser.errors == [] and parser.banner is None and parser.buffered == 0
    assert messages and all(m.kind == "action" for m in messages)


def test_lf_only_action_in_a_crlf_stream_04a():
    _, messages = parse_all(load("04a_ping.sent"))
    assert [m.action_id for m in messages] == ["login-1", "ping-1", None, "bogus-1", "ping-lf-only", "logoff-2"]


# -- any cut gives the same messages ------------------------------------------


@pytest.mark.parametrize("path", SMALL_RAW + sorted(LEGACY.glob("*.raw")), ids=lambda p: p.name)
def test_whole_bytewise_and_random_chunks_agree(path):
    data = load(path)
    whole_parser, whole = parse_all(data)
    expected = signature(whole)
    bytewise_parser, bytewise = feed_chunks(data, [1] * len(data))
    assert signature(bytewise) == expected
    assert bytewise_parser.banner == whole_parser.banner
    rng = random.Random(path.name)
    for _ in range(5):
        _, chunked = feed_chunks(data, [rng.randint(1, 700) for _ in range(len(data))])
        assert signature(chunked) == expected


@pytest.mark.parametrize("name", ["15_userevent_flood_events_on.monitor.raw.gz", "16_userevent_flood_events_user.monitor.raw.gz"])
def test_flood_in_random_chunks_agrees(name):
    data = load(name)
    _, whole = parse_all(data)
    rng = random.Random(name)
    _, chunked = feed_chunks(data, [rng.randint(1, 70000) for _ in range(len(data) // 1000)])
    assert [(m.kind, m.name) for m in chunked] == [(m.kind, m.name) for m in whole]
    head = data[:60000]
    _, head_whole = parse_all(head)
    _, head_bytes = feed_chunks(head, [1] * len(head))
    assert signature(head_bytes) == signature(head_whole)


def test_every_cut_point_of_a_small_capture():
    """Cut at every byte boundary into two pieces (issue: 'cut at every byte boundary')."""
    data = load("03a_login_md5_challenge.raw")
    expected = signature(parse_all(data)[1])
    for cut in range(len(data) + 1):
        _, got = feed_chunks(data, [cut])
        assert signature(got) == expected, cut


# -- real-capture specifics ------------------------------------------------------


def test_event_wins_over_response_header_02d():
    _, messages = parse_all(load("02d_login_failures_seen_by_other_client.monitor.raw"))
    crf = [m for m in messages if m.name == "ChallengeResponseFailed"]
    assert len(crf) == 1
    assert crf[0].kind == "event"
    assert crf[0].get("Response") == "8fb6bbb7d9f12a241308d2c5a601d6b6"


def test_action_id_as_last_header_14():
    _, messages = parse_all(load("14_status_action.driver.raw"))
    status = [m for m in messages if m.name == "Status"]
    assert status and all(m.action_id in ("status-all", "status-one") for m in status)
    assert status[0].items()[-1] == ("ActionID", "status-all")
    assert status[0].get("Privilege") == "Call"


def test_output_headers_asterisk_14_plus_04b():
    _, messages = parse_all(load("04b_command_action.raw"))
    cmd2 = [m for m in messages if m.action_id == "cmd-2"][0]
    assert cmd2.output[1:] == ["0 active channels", "0 active calls", "0 calls processed"]
    assert cmd2.output[0].startswith("Channel ")
    assert cmd2.output[0].endswith("   "), "Output values keep their trailing spaces"
    assert cmd2.get("Message") == "Command output follows"


def test_empty_values_and_values_with_colons():
    _, messages = parse_all(load("05_inbound_call.monitor.raw"))
    ue = [m for m in messages if m.name == "UserEvent"][4]
    assert ue.get("AccountCode") == ""
    ft = [m for m in messages if m.name == "FullyBooted"]
    sa = [m for m in parse_all(load("03a_login_md5_challenge.raw"))[1] if m.name == "SuccessfulAuth"][0]
    assert sa.get("EventTV") == "2026-11-26T06:25:46.499+0000"
    assert sa.get("LocalAddress") == "IPV4/TCP/127.0.0.1/5038"
    assert ft and ft[0].get("status") == "Fully Booted"


# -- hand-made edge cases (HAND-MADE: not captured from a running Asterisk) -------


def msgs(data: bytes, **kw) -> list[Message]:
    parser = AMIParser(**kw)
    return parser.feed(data)


def test_handmade_bare_lf_and_crlf_mixed():
    data = b"Asterisk Call Manager/1.1\nEvent: A\nX: 1\n\nEvent: B\r\nY: 2\r\n\r\nEvent: C\r\nZ: 3\n\n"
    m = msgs(data)
    assert [x.name for x in m] == ["A", "B", "C"]
    assert m[0].get("x") == "1" and m[2].get("Z") == "3"


def test_handmade_bare_lf_inside_a_crlf_message_pitfall_8():
    m = msgs(b"Event: Agents\r\nAgent: 1001\nName: Bob\r\nStatus: AGENT_IDLE\r\n\r\n")
    assert [(k, v) for k, v in m[0].items()] == [("Event", "Agents"), ("Agent", "1001"), ("Name", "Bob"), ("Status", "AGENT_IDLE")]


def test_handmade_keys_any_case_and_repeated_keys_kept_in_order():
    m = msgs(b"event: VarSet\r\nVARIABLE: a=1\r\nvariable: b=2\r\nVariable: c=3\r\n\r\n")[0]
    assert m.kind == "event" and m.name == "VarSet"
    assert m.get("Variable") == "a=1"
    assert m.get_all("variable") == ["a=1", "b=2", "c=3"]
    assert [k for k, _ in m.items()] == ["event", "VARIABLE", "variable", "Variable"]


def test_handmade_colon_forms():
    m = msgs(b"Response: Success\r\nActionID:x1\r\nReportBlock:\r\nMessage: a: b: c\r\nTime:12:30:01\r\n\r\n")[0]
    assert m.action_id == "x1"
    assert m.get("ReportBlock") == ""
    assert m.get("Message") == "a: b: c"
    assert m.get("Time") == "12:30:01"


def test_handmade_lines_without_colon_kept():
    m = msgs(b"Event: UserEventTAPI\r\nChannel: Zap/1-1\r\nTAPIEVENT [~1.5&sip/bob] SET CALLERIDNAME Doe: John\r\nplain words\r\n\r\n")[0]
    assert m.lines == ["TAPIEVENT [~1.5&sip/bob] SET CALLERIDNAME Doe: John", "plain words"]
    assert m.get("Channel") == "Zap/1-1"


def test_handmade_response_follows_old_command_output():
    data = (
        b"Asterisk Call Manager/1.0\r\n"
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: c1\r\n"
        b"Channel              Location\r\n"
        b"\r\n"
        b"SIP/100-0001: Up     s@default:1\r\n"
        b"1 active channel\r\n"
        b"--END COMMAND--\r\n\r\n"
        b"Event: Hangup\r\nUniqueid: 1.1\r\n\r\n"
    )
    expected = ["Channel              Location", "", "SIP/100-0001: Up     s@default:1", "1 active channel"]
    for sizes in ([len(data)], [1] * len(data), [7, 13, 40, 3, 100]):
        _, m = feed_chunks(data, sizes)
        assert [x.name for x in m] == ["Follows", "Hangup"], sizes
        assert m[0].action_id == "c1"
        assert m[0].output == expected
        assert m[0].get("Privilege") == "Command"


def test_handmade_follows_with_end_glued_to_last_line():
    m = msgs(b"Response: Follows\r\nActionID: c2\r\nNo such command\n--END COMMAND--\r\n\r\n")[0]
    assert m.output == ["No such command"]
    m = msgs(b"Response: Follows\r\nActionID: c3\r\nlast line--END COMMAND--\r\n\r\n")[0]
    assert m.output == ["last line"]


def test_output_header_values_lose_only_the_space_after_the_colon_everywhere():
    # From another project's real capture (issue 12): .output and the headers agree.
    m = msgs(b"Response: Success\r\nMessage: Command output follows\r\nOutput: Class: default\r\n"
             b"Output:   indented\r\n\r\n")[0]
    assert m.output == ["Class: default", "  indented"]
    assert m.get_all("Output") == m.output
    assert m.get("Output") == "Class: default"
    assert ("Output", "Class: default") in m.items()


@pytest.mark.parametrize("cuts", [[], list(range(1, 90)), list(range(5, 90, 5)), [60, 61, 62, 63]])
def test_nothing_stays_buffered_after_an_old_command_reply(cuts):
    # Asterisk 1.2-13: "--END COMMAND--" and then the blank line (issue 12).
    data = b"Response: Follows\r\nPrivilege: Command\r\nActionID: 1\r\n0 active channels\n--END COMMAND--\r\n\r\n"
    p = AMIParser()
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(data)]):
        got += p.feed(data[a:b])
    assert [m.output for m in got] == [["0 active channels"]]
    assert p.buffered == 0


def test_empty_event_name_then_blank_lines_leaves_nothing_buffered():
    # The example on which the C accelerator and its Python twin disagreed.
    for wanted in (None, {"Hangup", "UserEvent"}):
        p = AMIParser()
        p.set_event_filter(wanted)
        p.feed(b"Asterisk Call Manager/11.0.0\r\n")
        out = p.feed(b"Event: \n\r\n\r\n\r\n")
        assert p.buffered == 0
        assert [m.name for m in out] == ([""] if wanted is None else [])


def test_handmade_extra_blank_lines_between_messages():
    m = msgs(b"\r\n\r\nEvent: A\r\n\r\n\r\n\r\n\r\n\nEvent: B\r\n\r\n\r\n")
    assert [x.name for x in m] == ["A", "B"]


def test_handmade_no_banner_and_proxy_banner():
    p = AMIParser()
    assert [m.name for m in p.feed(b"Action: Ping\r\n\r\n")] == ["Ping"] and p.banner is None
    p = AMIParser()
    p.feed(b"Asterisk Call Manager Proxy/1.25\r\n")
    assert p.banner == "Asterisk Call Manager Proxy/1.25"


def test_handmade_garbage_is_reported_and_skipped():
    errors = []
    p = AMIParser(on_error=errors.append)
    m = p.feed(b"Asterisk Call Manager/11.0.0\r\n\x00\x01\xff garbage\r\n\r\nEvent: Ok\r\n\r\n")
    assert [x.name for x in m] == ["Ok"]
    assert len(errors) == 1 and "without any header" in errors[0]
    assert p.errors == errors


def test_handmade_latin1_caller_name_survives():
    m = msgs(b"Event: Newchannel\r\nCallerIDName: M\xfcller\r\n\r\n")[0]
    assert m.get("CallerIDName") == "M\u00fcller"


def test_handmade_oversized_message_skipped_buffer_capped():
    p = AMIParser(max_message_bytes=1000)
    out = []
    out += p.feed(b"Event: First\r\n\r\nEvent: Huge\r\n")
    for _ in range(100):
        out += p.feed(b"X: " + b"y" * 97 + b"\r\n")
        assert p.buffered <= 1000
    out += p.feed(b"\r\nEvent: After\r\n\r\n")
    assert [m.name for m in out] == ["First", "After"]
    assert p.error_count == 1 and "longer than 1000" in p.errors[0]


def test_handmade_oversized_message_in_one_read_skipped():
    p = AMIParser(max_message_bytes=100)
    out = p.feed(b"Event: A\r\n\r\nEvent: Big\r\nX: " + b"z" * 200 + b"\r\n\r\nEvent: B\r\n\r\n")
    assert [m.name for m in out] == ["A", "B"]
    assert p.error_count == 1


def test_handmade_endless_line_without_newline_at_start_is_capped():
    p = AMIParser(max_message_bytes=100)
    for _ in range(50):
        p.feed(b"a" * 10)
        assert p.buffered <= 100
    assert p.error_count == 1
    assert [m.name for m in p.feed(b"\r\n\r\nEvent: Later\r\n\r\n")] == ["Later"]


def test_errors_list_is_bounded():
    p = AMIParser()
    p.feed(b"Asterisk Call Manager/11.0.0\r\n")  # else the first junk line is the banner
    for _ in range(500):
        p.feed(b"junk\r\n\r\n")
    assert p.error_count == 500 and len(p.errors) <= 100


def test_lazy_decode_keeps_kind_and_name():
    m = Message(b"Event: X\r\nA: 1\r\n", "event", "X")
    assert m._items is None  # nothing decoded yet
    assert m.get("A") == "1" and m.name == "X" and m.kind == "event"


def test_message_from_items_and_equality():
    a = Message.from_items([("Event", "Hangup"), ("Uniqueid", "1.2")])
    b = msgs(b"Event: Hangup\r\nUniqueid: 1.2\r\n\r\n")[0]
    assert a == b and a.kind == "event" and "uniqueid" in a


CHUNK_SOURCE = (
    b"Asterisk Call Manager/1.0\r\n"
    b"Response: Success\r\nActionID: 1\r\nMessage: ok\r\n\r\n"
    b"Event: UserEvent\nUserEvent: TAPI\nTAPIEVENT: LINE_NEWCALL line_1\n\n"
    b"\r\n\r\nEvent: Hangup\r\nUniqueid: 1.5\r\nCause: 16\r\n\r\n"
    b"Response: Follows\r\nActionID: c\r\nx\r\n\r\ny\r\n--END COMMAND--\r\n\r\n"
    b"Event: UserEventTAPI\r\nTAPIEVENT [~1.5&l] LINE_CALLSTATE X\r\n\r\n"
)


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=60))
def test_handmade_any_chunking_gives_the_same_messages(sizes):
    expected = signature(parse_all(CHUNK_SOURCE)[1])
    assert len(expected) == 5
    _, got = feed_chunks(CHUNK_SOURCE, sizes)
    assert signature(got) == expected


def test_name_caches_are_bounded_in_bytes_as_well_as_count():
    # A hostile PBX sending ever-new long event names (hand-made) cannot grow
    # the parser's per-name caches past 4096 short keys.
    p = AMIParser()
    p.set_event_filter({"Hangup"})
    for i in range(5000):
        p.feed(b"Event: X%06d%s\r\nA: 1\r\n\r\n" % (i, b"y" * (200 if i % 2 else 10)))
    for cache in (p._names, p._kept):
        assert len(cache) <= 4096
        assert all(len(k) <= 64 for k in cache)


def test_asterisk_13s_own_command_reply_keeps_its_blank_lines_until_the_marker():
    """manager.c action_command: CRLF headers, then the CLI's bare-LF output (``sip show
    peer`` starts with two empty lines), then the marker. Only the marker ends it."""
    data = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: sp-1\r\n"
        b"\n\n  * Name       : 100\n  Secret       : <Set>\n\n  Codecs       : (ulaw)\n"
        b"--END COMMAND--\r\n\r\n"
        b"Event: Hangup\r\nUniqueid: 1.1\r\n\r\n"
    )
    for sizes in ([len(data)], [1] * len(data), [30, 5, 200]):
        parser, m = feed_chunks(data, sizes)
        assert [x.name for x in m] == ["Follows", "Hangup"], sizes
        assert m[0].output == ["  * Name       : 100", "  Secret       : <Set>", "", "  Codecs       : (ulaw)"]
        assert parser.errors == []


def test_a_headers_only_follows_ends_at_its_blank_line_and_its_late_marker_is_no_second_report():
    """Not Asterisk's shape (issue 22 item 9): nothing after the blank line waits for a marker."""
    data = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: q-1\r\n\r\n"
        b"Event: Hangup\r\nUniqueid: 1.1\r\n\r\n"
        b"Response: Follows\r\nActionID: q-2\r\n\r\n--END COMMAND--\r\n\r\n"
        b"Event: Hangup\r\nUniqueid: 1.2\r\n\r\n"
        b"--END COMMAND--\r\n\r\n"
    )
    for sizes in ([len(data)], [1] * len(data), [50, 3, 41, 2]):
        parser, m = feed_chunks(data, sizes)
        assert [(x.name, x.action_id or x.get("Uniqueid")) for x in m] == [
            ("Follows", "q-1"), ("Hangup", "1.1"), ("Follows", "q-2"), ("Hangup", "1.2")], sizes
        assert parser.buffered == 0
        # one report per cut reply; a marker with no cut reply before it is garbage as ever
        assert [e[:30] for e in parser.errors] == [
            "AMI 'Response: Follows' with o", "AMI 'Response: Follows' with o", "AMI block without any header s"], sizes
