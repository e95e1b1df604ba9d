"""Action builders against the lab client's .sent bytes; header injection refused."""

from __future__ import annotations

import pytest

from asttapi_server.ami import actions
from asttapi_server.errors import AMIError, InvalidActionHeader

from .helpers import sent_actions


def test_md5_key_matches_capture_03a():
    assert actions.md5_key("145467744", "asttapi-secret") == "624a8e70119eb35b9bbb1f3c707aaa48"


def test_login_layouts():
    plain = sent_actions("01a_login_plain_events_off.sent")
    assert actions.login("asttapi", "asttapi-secret", "off").encode("login-1") == plain[0]
    assert actions.logoff().encode("logoff-2") == plain[1]
    md5 = sent_actions("03a_login_md5_challenge.sent")
    assert actions.challenge().encode("challenge-1") == md5[0]
    key = actions.md5_key("145467744", "asttapi-secret")
    assert actions.login_md5("asttapi", key, "on").encode("login-2") == md5[1]


def test_ping_command_layouts():
    ping = sent_actions("04a_ping.sent")
    assert actions.ping().encode("ping-1") == ping[1]
    assert actions.ping().encode() == ping[2]
    cmd = sent_actions("04b_command_action.sent")
    assert actions.command("core show version").encode("cmd-1") == cmd[1]


def test_originate_layouts_10_with_variables_one_per_line():
    sent = sent_actions("10_originate_async.driver.sent")
    got = actions.originate(
        "Local/alice@phones",
        application="Wait",
        data="2",
        callerid='"TAPI" <line_1>',
        async_=True,
        channel_id="lab-1795674392-a",
        other_channel_id="lab-1795674392-a-2",
        variables=[("TAPI_LINE", "line_1"), ("TAPI_CALLID", "42")],
    ).encode("orig-async-1")
    assert got == sent[1]
    assert got.count(b"Variable: ") == 2 and b"," not in got.split(b"Variable: ")[1]
    sync = actions.originate("Local/bobbett@phones", application="Wait", data="2", timeout_ms=3000)
    assert sync.encode("orig-sync-timeout-1") == sent[4]
    hup = actions.hangup("/^Local/carol@phones-.*/")
    # The lab's clean-up hung up by regex; only an explicit allow_regex writes that.
    assert hup.encode("cleanup-1", allow_regex=True) == sent[8]
    with pytest.raises(InvalidActionHeader):
        hup.encode("cleanup-1")


def test_originate_dialplan_target_14():
    sent = sent_actions("14_status_action.driver.sent")
    got = actions.originate("Local/carol@phones", context="hold", exten="s", priority=1, callerid='"Carol" <202>', async_=True)
    assert got.encode("orig-status") == sent[2]
    assert actions.status().encode("status-all") == sent[3]
    assert actions.status("Local/carol@phones-00000015;1").encode("status-one") == sent[4]


def test_hangup_redirect_coreshowchannels_layouts():
    hup = sent_actions("12_hangup_action.driver.sent")
    assert actions.hangup("Local/carol@phones-00000012;1", 16).encode("hangup-1") == hup[2]
    red = sent_actions("13_redirect_action.driver.sent")
    assert actions.redirect("Local/carol@phones-00000016;1", "redirected", "s", 1).encode("redirect-1") == red[2]
    assert actions.redirect("Local/carol@phones-00000017;1", "trunklocal", "95551234").encode("redirect-3") == red[5]
    csc = sent_actions("11_coreshowchannels.driver.sent")
    assert actions.coreshowchannels().encode("csc-empty") == csc[1]
    assert actions.coreshowchannels().encode() == csc[4]


@pytest.mark.parametrize(
    "build",
    [
        lambda: actions.originate("Local/100\r\nAction: Command@phones", context="x", exten="1"),
        lambda: actions.originate("Local/100@phones", exten="100\nCommand: core stop now"),
        lambda: actions.originate("SIP/x", callerid="Bob\r"),
        lambda: actions.originate("SIP/x", variables={"A": "1\r\nB=2"}),
        lambda: actions.originate("SIP/x", variables={"A=B": "1"}),
        lambda: actions.redirect("SIP/x", "ctx", "95551234\r\n\r\nAction: Logoff"),
        lambda: actions.hangup("SIP/x\x00"),
        lambda: actions.encode("Ping", [("Bad: Key", "v")]),
        lambda: actions.encode("Ping\r\nAction: Logoff"),
        lambda: actions.encode("Ping", [("ActionID", "mine")], "ours-1"),
    ],
)
def test_header_injection_refused(build):
    with pytest.raises(InvalidActionHeader) as info:
        build()
    assert isinstance(info.value, AMIError) and isinstance(info.value, ValueError)


def test_action_is_a_name_headers_pair():
    name, headers = actions.hangup("SIP/x", 16)
    assert name == "Hangup" and headers == (("Channel", "SIP/x"), ("Cause", "16"))


_SAMPLES = [
    ("Getvar", (("Channel", "PJSIP/trunk-00000001"), ("Variable", "CALLERID(pres)"))),
    ("Hangup", (("Channel", " /^PJSIP/"), ("Cause", "16"))),  # a regex channel: only with allow_regex
    ("Originate", (("Channel", "PJSIP/bob"), ("Variable", "TAPI_LINE=line_1"), ("Variable", "TAPI_CALL=7"))),
    ("Ping", (("ActionID", "theirs"),)),  # an ActionID header: refused once the client assigns one
    ("Getvar", (("Channel", "PJSIP/x"), ("Variable", "caf\u00e9"))),
    ("Getvar", (("Channel", "PJSIP/x"), ("Variable", "\ud800"))),  # not valid Unicode text
]


def _outcome(build):
    try:
        return build()
    except InvalidActionHeader as e:
        return ("refused", str(e))


@pytest.mark.parametrize("name, headers", _SAMPLES)
def test_an_action_checked_once_encodes_and_refuses_exactly_as_checked_afresh(name, headers):
    """Encoding remembers actions that passed every check (built, checked by the core, sent:
    three encodings per Getvar); every way of encoding one gives the bytes or the refusal
    a first encoding gives."""
    ways = [((), {}), (("asttapi-1",), {}), ((), {"allow_regex": True}), (("asttapi-2",), {"allow_regex": True}),
            (("\udc00",), {})]
    fresh = []
    for args, kw in ways:
        actions._ENCODED.clear()
        fresh.append(_outcome(lambda: actions.encode(name, headers, *args, **kw)))
    for first in ways:  # whichever way came first, the others answer as afresh
        actions._ENCODED.clear()
        _outcome(lambda: actions.encode(name, headers, *first[0], **first[1]))
        again = [_outcome(lambda: actions.encode(name, list(headers), *args, **kw)) for args, kw in ways]
        assert again == fresh


def test_a_login_secret_is_not_kept_once_sent():
    actions._ENCODED.clear()
    actions.encode(*actions.login("asttapi", "s3cret"), "asttapi-1")
    actions.encode(*actions.login_md5("asttapi", actions.md5_key("123", "s3cret")), "asttapi-2")
    actions.encode(*actions.ping(), "asttapi-3")
    assert list(actions._ENCODED) == [("Ping", ())]
