"""encode_event reuses a call version's callinfo JSON: the bytes must be exactly the plain encoding's."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asttapi_server.clients import codec
from asttapi_server.core.events import TapiEvent
from tests.integration.test_device_lines import device_bridge, replay

DATA = Path(__file__).resolve().parent.parent / "data"


def plain(event: TapiEvent, seq: int, line: str | None = None) -> bytes:
    return codec.encode_notification(event.msg, codec.event_params(event, seq, line))


@pytest.mark.parametrize("capture", ["s01_inbound_ringgroup_answered.raw", "s08_blind_transfer_ami.raw",
                                     "s10_hold_unhold.raw"])
def test_every_event_of_a_capture_encodes_as_the_plain_encoding(tmp_path, capture):
    bridge, hub, clock, _ = device_bridge(tmp_path)
    replay((DATA / "ami-native" / capture).read_bytes(), bridge, clock)
    assert any(e.call is not None for e in hub.events)
    for seq, event in enumerate(hub.events, 1):
        assert codec.encode_event(event, seq) == plain(event, seq)
        assert codec.encode_event(event, seq, "other line") == plain(event, seq, "other line")


def test_a_new_version_or_a_mutable_callinfo_is_encoded_afresh():
    info = {"callerid": "201", "calleridname": "Bob \u2028 \ud800"}
    first = TapiEvent("LINE_CALLSTATE", "bob", 7, "LINECALLSTATE_OFFERING", callinfo=MappingProxyType(dict(info)))
    assert codec.encode_event(first, 1) == plain(first, 1)
    second = TapiEvent("LINE_CALLSTATE", "bob", 7, "LINECALLSTATE_CONNECTED", mode=None,
                       callinfo=MappingProxyType({**info, "connectedid": "203"}))
    assert json.loads(codec.encode_event(second, 2))["params"]["callinfo"]["connectedid"] == "203"
    mutable = dict(info)
    third = TapiEvent("LINE_CALLINFO", "bob", 7, "LINECALLINFOSTATE_OTHER", callinfo=mutable)
    assert codec.encode_event(third, 3) == plain(third, 3)
    mutable["contact"] = {"name": "Ann"}
    assert codec.encode_event(third, 4) == plain(third, 4)
    assert json.loads(codec.encode_event(third, 4))["params"]["callinfo"]["contact"] == {"name": "Ann"}


_TEXT = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(["\ud800", '"', "\\", "\n", "\x00", "\u2028"]),
                max_size=12)


@given(
    msg=st.sampled_from(["LINE_CALLSTATE", "LINE_CALLINFO", "LINE_LINEDEVSTATE", "LINE_NEWCALL", "LINE_OTHER"]) | _TEXT,
    line=st.none() | _TEXT | st.integers(),
    call=st.none() | st.integers() | st.booleans(),
    param=st.none() | _TEXT | st.floats(allow_nan=False),
    mode=st.none() | _TEXT,
    seq=st.integers(min_value=0),
    synthetic=st.booleans(),
    other_line=st.none() | _TEXT,
)
def test_the_event_template_writes_the_plain_encoding_of_any_event(msg, line, call, param, mode, seq, synthetic,
                                                                   other_line):
    """The template (a head per message name, each value encoded alone) against the dicts encoded whole:
    any text (quotes, control characters, a lone surrogate), any type a plugin may have put in."""
    event = TapiEvent(msg, line, call, param, mode, callinfo=MappingProxyType({"callerid": "1"}), synthetic=synthetic)
    assert _outcome(lambda: codec.encode_event(event, seq, other_line)) == _outcome(lambda: plain(event, seq, other_line))


def _outcome(encode):
    """The bytes, or the refusal (an infinite float is no JSON: both ways refuse it alike)."""
    try:
        return encode()
    except ValueError as e:
        return ("refused", str(e))
