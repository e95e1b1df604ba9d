"""Issue 22 item 7: no action value that Asterisk would read differently from what we meant.

The guard in ``ami/actions.py`` is tested against Asterisk's own reading of
the bytes we write, transcribed below from its source (commit none of it):

* ``main/manager.c`` ``get_input``: a header line ends at ``\\r\\n`` or at a
  bare ``\\n``;
* ``__astman_get_header``: the first line whose name matches
  case-insensitively and is followed by ``:``; its value starts after
  ``ast_skip_blanks`` (``include/asterisk/strings.h``: every leading byte
  below 33, up to a NUL);
* ``action_hangup``: ``if (name_or_regex[0] != '/')`` it is a channel name,
  else ``/regex/``: every channel whose name matches.

So ``"\\x01/^/"`` (which ``str.lstrip()`` leaves alone) is a regex to
Asterisk: it hung up every channel on the PBX.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from asttapi_server.ami import actions
from asttapi_server.core.control import CallControl
from asttapi_server.core.model import CallModel
from asttapi_server.errors import InvalidActionHeader, TelephonyError
from tests.core.helpers import sig


def ast_skip_blanks(value: bytes) -> bytes:
    """``include/asterisk/strings.h``: ``while (*str && ((unsigned char) *str) < 33) str++;``"""
    i = 0
    while i < len(value) and value[i] != 0 and value[i] < 33:
        i += 1
    return value[i:]


def asterisk_lines(wire: bytes) -> list[bytes]:
    """``get_input``: lines end at ``\\r\\n`` or a bare ``\\n`` (the ``\\r\\n`` is dropped)."""
    out, start, i = [], 0, 0
    while i < len(wire):
        if wire[i : i + 2] == b"\r\n":
            out.append(wire[start:i])
            i += 2
            start = i
        elif wire[i : i + 1] == b"\n":
            out.append(wire[start:i])
            i += 1
            start = i
        else:
            i += 1
    return out


def asterisk_actions(wire: bytes) -> list[list[bytes]]:
    """The actions Asterisk reads from ``wire``: header lines up to each empty line."""
    actions_read, current = [], []
    for line in asterisk_lines(wire):
        if line:
            current.append(line)
        elif current:
            actions_read.append(current)
            current = []
    return actions_read


def asterisk_header(headers: list[bytes], name: bytes) -> bytes:
    """``__astman_get_header`` (first match): the value as Asterisk's code sees it (to its first NUL)."""
    for h in headers:
        if h[: len(name)].lower() == name.lower() and h[len(name) : len(name) + 1] == b":":
            value = ast_skip_blanks(h[len(name) + 1 :])
            return value.split(b"\0", 1)[0]
    return b""


def hangup_reads_a_regex(wire: bytes) -> bool:
    """``action_hangup``: would Asterisk read this Hangup's Channel as ``/regex/``?"""
    (headers,) = asterisk_actions(wire)
    return asterisk_header(headers, b"Channel")[:1] == b"/"


#: Every byte below 33 (Asterisk's blanks), DEL, and a few look-alikes Python's
#: str.lstrip() treats differently (it strips U+001C..U+001F, U+0085, U+00A0,
#: U+2028, but not U+0001).
PREFIXES = [chr(b) for b in range(1, 33)] + ["\x7f", "\x85", "\xa0", "\u2028", "\u3000", " \x01 ", "\t\t"]


@pytest.mark.parametrize("prefix", PREFIXES, ids=[f"U+{ord(p[0]):04X}x{len(p)}" for p in PREFIXES])
def test_no_channel_asterisk_would_read_as_a_regex_is_ever_written(prefix):
    value = prefix + "/^/"
    try:
        wire = actions.hangup(value).encode("h-1")
    except InvalidActionHeader:
        return
    assert not hangup_reads_a_regex(wire), repr(value)


def test_the_issues_channel_is_refused():
    with pytest.raises(InvalidActionHeader):
        actions.hangup("\x01/^/").encode("h-1")


@pytest.mark.parametrize("control", [chr(b) for b in range(0, 32)] + ["\x7f"])
@pytest.mark.parametrize("build", [
    lambda v: actions.hangup(v),
    lambda v: actions.originate("Local/100@phones", context="x", exten="1", callerid=v),
    lambda v: actions.originate("Local/100@phones", application="Wait", data=v),
    lambda v: actions.originate("Local/100@phones", context="x", exten="1", variables={"TAPI_LINE": v}),
    lambda v: actions.redirect("SIP/x-1", "ctx", v),
    lambda v: actions.blind_transfer("SIP/x-1", v, "100"),
    lambda v: actions.command(v),
    lambda v: actions.encode("Ping", (), v),
], ids=["hangup", "callerid", "data", "variable", "redirect", "transfer", "command", "actionid"])
def test_every_control_byte_anywhere_in_any_value_is_refused(build, control):
    for value in (control + "SIP/x-1", "SIP/x" + control + "-1", "SIP/x-1" + control):
        with pytest.raises(InvalidActionHeader):
            action = build(value)
            if isinstance(action, actions.Action):
                action.encode("a-1")


@pytest.mark.parametrize("key", ["Chan\x01nel", "Chan nel", "\x7fX", "X\tY", "Variable:"])
def test_header_names_with_blanks_or_control_bytes_are_refused(key):
    with pytest.raises(InvalidActionHeader):
        actions.encode("Hangup", [(key, "SIP/x-1")])


def test_a_value_that_is_not_unicode_text_is_refused_not_a_crash():
    with pytest.raises(InvalidActionHeader):
        actions.hangup("SIP/x\ud800-1").encode("h-1")


@given(st.text(alphabet=st.sampled_from(
    [chr(b) for b in range(0, 48)] + ["\x7f", "\x85", "\xa0", "\u2028", "a", "Z", "^", ".", "*", "-", "\ud800"]
), max_size=8))
@example("\x01/^/")
@example(" /^/")
@example("\x00/^/")
def test_what_we_write_is_what_asterisk_reads(prefix):
    """Property: whatever a Channel holds, either it is refused, or Asterisk reads
    exactly one Hangup whose Channel is our value (less the leading blanks it
    always skips) and not a regex."""
    value = prefix + "/^SIP/.*/"
    try:
        wire = actions.hangup(value, 16).encode("h-1")
    except InvalidActionHeader:
        return
    read = asterisk_actions(wire)
    assert len(read) == 1, (value, read)
    assert asterisk_header(read[0], b"Channel") == ast_skip_blanks(value.encode("utf-8"))
    assert asterisk_header(read[0], b"Cause") == b"16"
    assert not hangup_reads_a_regex(wire)


def test_the_core_turns_a_refused_channel_into_a_clean_error_with_nothing_sent():
    model = CallModel()
    control = CallControl(model, {})
    fx = control.link_established(0.0)
    (send,) = fx.actions
    token = send.token
    control.answered(token, [], None, 0.0)
    model.apply(sig("LINE_NEWCALL line_1", "1795674354.1", "SIP/trunk-1"), 1.0)
    call = model.by_uniqueid("1795674354.1")
    call.channel = "\x01/^/"  # whatever path a channel name might take in
    with pytest.raises(TelephonyError) as info:
        control.drop(call.handle, 2.0)
    assert info.value.lineerr == "LINEERR_OPERATIONFAILED"
