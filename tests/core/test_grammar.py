"""The TAPIEVENT grammar: every verb of the manual, the spec, leniency, errors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asttapi_server.core import constants as C
from asttapi_server.core.grammar import SET_FIELDS, TapiCommand, parse_tapievent, try_parse
from asttapi_server.errors import TapiSyntaxError


def test_newcall_without_spec():
    cmd = parse_tapievent("LINE_NEWCALL line_1")
    assert cmd == TapiCommand(None, (), (), "LINE_NEWCALL", ("line_1",), "LINE_NEWCALL line_1")


def test_manual_macro_tapi_spec():
    cmd = parse_tapievent("[~1795674354.1&sip/bob] LINE_CALLSTATE LINECALLSTATE_CONNECTED")
    assert (cmd.call_id, cmd.lines, cmd.excluded) == ("1795674354.1", ("sip/bob",), ())
    assert cmd.args == ("LINECALLSTATE_CONNECTED",)
    cmd = parse_tapievent("[~1795674354.1&!sip/bob] LINE_CALLSTATE LINECALLSTATE_HANGUP")
    assert (cmd.call_id, cmd.lines, cmd.excluded) == ("1795674354.1", (), ("sip/bob",))
    assert cmd.args == ("LINECALLSTATE_HANGUP",)


@pytest.mark.parametrize(
    "text",
    [
        "TAPIEVENT: [~1.5&sip/bob] LINE_CALLSTATE LINECALLSTATE_CONNECTED",
        "TAPIEVENT [~1.5&sip/bob] LINE_CALLSTATE LINECALLSTATE_CONNECTED",  # the manual's typo
        "TAPIEVENT:[~1.5&sip/bob] LINE_CALLSTATE LINECALLSTATE_CONNECTED",
        "TAPI|TAPIEVENT: [~1.5&sip/bob] LINE_CALLSTATE LINECALLSTATE_CONNECTED",  # pipe dialplan on 22
        "  [ ~1.5 & sip/bob ]   LINE_CALLSTATE   LINECALLSTATE_CONNECTED  ",
        "[~1.5&sip/bob&] line_callstate linecallstate_connected",
        "[~1.5&sip/bob] LINE_CALLSTATE CONNECTED",
    ],
)
def test_lenient_forms(text):
    cmd = parse_tapievent(text)
    assert (cmd.call_id, cmd.lines, cmd.verb, cmd.args) == (
        "1.5", ("sip/bob",), "LINE_CALLSTATE", ("LINECALLSTATE_CONNECTED",))
    assert cmd.raw == text


@pytest.mark.parametrize("line", ["sip/bob", "PJSIP/bob-0001", "Local/bob@phones-00000001;1", "line_1", "SIP/200.1"])
def test_line_names(line):
    assert parse_tapievent(f"LINE_NEWCALL {line}").args == (line,)
    cmd = parse_tapievent(f"[~9.9&{line}&!{line}x] LINE_CALLINFO LINECALLINFOSTATE_CALLERID")
    assert cmd.lines == (line,) and cmd.excluded == (line + "x",)


@pytest.mark.parametrize("state", sorted(C.LINECALLSTATE) + ["LINECALLSTATE_HANGUP"])
def test_every_callstate_of_the_appendix(state):
    assert parse_tapievent(f"LINE_CALLSTATE {state}").args == (state,)


def test_callstate_with_mode():
    cmd = parse_tapievent("LINE_CALLSTATE LINECALLSTATE_DISCONNECTED LINEDISCONNECTMODE_NOANSWER")
    assert cmd.args == ("LINECALLSTATE_DISCONNECTED", "LINEDISCONNECTMODE_NOANSWER")


@pytest.mark.parametrize("info", sorted(C.LINECALLINFOSTATE))
def test_callinfo_states(info):
    assert parse_tapievent(f"LINE_CALLINFO {info}").args == (info,)


def test_linedevstate():
    assert parse_tapievent("LINE_LINEDEVSTATE LINEDEVSTATE_RINGING").args == ("LINEDEVSTATE_RINGING",)
    cmd = parse_tapievent("[line_1] LINE_LINEDEVSTATE RINGING")
    assert cmd.lines == ("line_1",) and cmd.args == ("LINEDEVSTATE_RINGING",)


@pytest.mark.parametrize("field", sorted(f for f in SET_FIELDS if f != "CALLORIGIN" and not f.endswith("FLAGS")))
def test_set_fields_keep_spaces_and_may_be_empty(field):
    assert parse_tapievent(f"SET {field} 0301234567").args == (field, "0301234567")
    assert parse_tapievent(f"SET {field}   Ext  Caller ").args == (field, "Ext  Caller")
    assert parse_tapievent(f"SET {field}").args == (field, "")
    assert parse_tapievent(f"SET {field.lower()} x").args == (field, "x")


@pytest.mark.parametrize("field", ["CALLERIDFLAGS", "CALLEDIDFLAGS", "CONNECTEDIDFLAGS"])
def test_set_flags_take_one_flag_that_hides_a_party(field):
    for flag in ("LINECALLPARTYID_BLOCKED", "LINECALLPARTYID_UNAVAIL", "LINECALLPARTYID_UNKNOWN",
                 "LINECALLPARTYID_OUTOFAREA"):
        assert parse_tapievent(f"SET {field} {flag}").args == (field, flag)
    assert parse_tapievent(f"SET {field} blocked").args == (field, "LINECALLPARTYID_BLOCKED")
    # a flag that says a party *is* shown, or a number where a flag belongs, is refused
    for bad in ("LINECALLPARTYID_ADDRESS", "0301234567", ""):
        with pytest.raises(TapiSyntaxError):
            parse_tapievent(f"SET {field} {bad}")


@pytest.mark.parametrize("origin", sorted(C.LINECALLORIGIN))
def test_set_callorigin_every_origin(origin):
    assert parse_tapievent(f"SET CALLORIGIN {origin}").args == ("CALLORIGIN", origin)
    short = origin.removeprefix("LINECALLORIGIN_").lower()
    assert parse_tapievent(f"SET CALLORIGIN {short}").args == ("CALLORIGIN", origin)


def test_newcall_line_from_spec_and_several_lines():
    assert parse_tapievent("[line_2] LINE_NEWCALL").args == ("line_2",)
    assert parse_tapievent("LINE_NEWCALL sip/bob sip/bobbett sip/bob").args == ("sip/bob", "sip/bobbett")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "TAPIEVENT:",
        "FLOOD 17",  # the flood capture's dialplan
        "FLOOD DONE",
        "LINE_NEWCALL",
        "LINE_CALLSTATE",
        "LINE_CALLSTATE LINECALLSTATE_BOGUS",
        "LINE_CALLSTATE LINECALLSTATE_IDLE LINEDISCONNECTMODE_BOGUS",
        "LINE_CALLSTATE LINECALLSTATE_IDLE a b",
        "LINE_CALLINFO",
        "LINE_CALLINFO LINECALLINFOSTATE_NOPE",
        "LINE_LINEDEVSTATE LINEDEVSTATE_RINGING LINEDEVSTATE_OTHER",
        "SET",
        "SET NOSUCHFIELD 1",
        "SET CALLORIGIN LINECALLORIGIN_MARS",
        "SET CALLORIGIN",
        "[~1.5 LINE_CALLSTATE LINECALLSTATE_IDLE",
        "[~1.5&[x]] LINE_CALLSTATE LINECALLSTATE_IDLE",
        "[~] LINE_CALLSTATE LINECALLSTATE_IDLE",
        "[!] LINE_CALLSTATE LINECALLSTATE_IDLE",
        "[~1.5&~1.6] LINE_CALLSTATE LINECALLSTATE_IDLE",
        "[sip/bob bob] LINE_CALLSTATE LINECALLSTATE_IDLE",
        "[~1.5]",
        "[~1.5&line_1] LINE_CALLSTATE LINECALLSTATE_BOGUS",  # the verb part's errors quote the whole text too
        "[~1.5] LINE_NEWCALL",
        "TAPIEVENT: [~1.5&!line_1] SET NOSUCHFIELD 1",
    ],
)
def test_malformed_raises_with_raw_text(text):
    with pytest.raises(TapiSyntaxError) as info:
        parse_tapievent(text)
    assert info.value.raw == text


def test_the_verb_part_parses_once_for_every_uniqueid():
    from asttapi_server.core import grammar

    grammar._verb_cached.cache_clear()
    for n in range(50):
        cmd = parse_tapievent(f"[~1795674354.{n}&line_1] LINE_CALLSTATE CONNECTED")
        assert (cmd.call_id, cmd.lines, cmd.verb, cmd.args) == (
            f"1795674354.{n}", ("line_1",), "LINE_CALLSTATE", ("LINECALLSTATE_CONNECTED",))
    assert grammar._verb_cached.cache_info().misses == 1


def test_try_parse_returns_none_for_a_malformed_text():
    assert try_parse("FLOOD 1") is None
    assert try_parse("LINE_NEWCALL line_1").verb == "LINE_NEWCALL"


def test_not_a_string():
    with pytest.raises(TapiSyntaxError):
        parse_tapievent(None)  # type: ignore[arg-type]


@given(st.text(max_size=80))
def test_never_anything_but_syntax_error(text):
    try:
        cmd = parse_tapievent(text)
    except TapiSyntaxError:
        return
    assert cmd.verb in ("LINE_NEWCALL", "LINE_CALLSTATE", "LINE_CALLINFO", "LINE_LINEDEVSTATE", "SET")


@given(
    st.sampled_from(["", "TAPIEVENT: ", "TAPIEVENT ", "TAPI|TAPIEVENT: "]),
    st.from_regex(r"[0-9]{10}\.[0-9]{1,4}", fullmatch=True),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_/;@.\-]{0,20}", fullmatch=True),
    st.sampled_from(sorted(C.LINECALLSTATE)),
)
def test_roundtrip_generated(prefix, uid, line, state):
    cmd = parse_tapievent(f"{prefix}[~{uid}&!{line}] LINE_CALLSTATE {state}")
    assert (cmd.call_id, cmd.excluded, cmd.args) == (uid, (line,), (state,))


# -- issue 11: what an outside caller can reach through an unfiltered caller id


@pytest.mark.parametrize("uid", ["1795674354.1", "pbx1-1795674354.1", "asttapi-1a2b3c4d-7",
                                 "6f1c2a1e-7d3b-4c9a-9f0e-2b8d1c3a4e5f", "9" * 150])
def test_spec_ids_that_asterisk_makes_are_accepted(uid):
    assert parse_tapievent(f"[~{uid}] LINE_CALLSTATE LINECALLSTATE_IDLE").call_id == uid


@pytest.mark.parametrize("uid", ["/^/", "/.*/", "-1.2", ".5", "9" * 151, "1.1;x", "a b", "1.1\u00e9", "x\x00"])
def test_spec_ids_that_are_no_uniqueid_are_refused(uid):
    with pytest.raises(TapiSyntaxError, match="uniqueid|spec"):
        parse_tapievent(f"[~{uid}] LINE_CALLSTATE LINECALLSTATE_IDLE")


@pytest.mark.parametrize("line", ["/^/", "/x", "-x", "x" * 81, ";x", "@x"])
def test_line_names_that_are_none_are_refused_everywhere(line):
    for text in (f"LINE_NEWCALL {line}", f"[{line}] LINE_NEWCALL", f"[~1.1&!{line}] LINE_CALLSTATE IDLE"):
        with pytest.raises(TapiSyntaxError):
            parse_tapievent(text)


def test_lines_per_event_are_capped():
    names = [f"l{i}" for i in range(65)]
    assert len(parse_tapievent("LINE_NEWCALL " + " ".join(names[:64])).args) == 64
    with pytest.raises(TapiSyntaxError, match="more than 64 lines"):
        parse_tapievent("LINE_NEWCALL " + " ".join(names))
    with pytest.raises(TapiSyntaxError, match="more than 64 lines"):
        parse_tapievent("[" + "&".join(names) + "] LINE_CALLSTATE IDLE")
    with pytest.raises(TapiSyntaxError, match="more than 3 lines"):
        parse_tapievent("LINE_NEWCALL a b c d", max_lines=3)


def test_long_texts_are_not_cached_and_errors_quote_only_their_start():
    from asttapi_server.core import grammar

    before = grammar._parse_cached.cache_info().currsize
    long = "SET CALLERIDNAME " + "x" * 100_000
    assert parse_tapievent(long).args[1] == "x" * 100_000
    assert grammar._parse_cached.cache_info().currsize == before
    with pytest.raises(TapiSyntaxError) as info:
        parse_tapievent("LINE_BOGUS " + "y" * 100_000)
    assert len(str(info.value)) < 400 and info.value.raw.endswith("y" * 10)
