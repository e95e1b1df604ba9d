"""normalise.caller_of: the caller in a channel event's snapshot, with Asterisk's 'unknown' spellings as None."""

from __future__ import annotations

from asttapi_server.ami.message import Message
from asttapi_server.ami.normalise import caller_of
from asttapi_server.ami.parser import AMIParser

from .helpers import load


def test_real_userevent_of_asterisk_22():
    blocks = [m for m in AMIParser().feed(load("05_inbound_call.monitor.raw"))
              if m.kind == "event" and m.name == "UserEvent"]
    assert caller_of(blocks[0]) == ("0301234567", "Ext Caller", "100")


def test_unknown_and_absent_are_none():
    msg = Message.from_items([("Event", "UserEvent"), ("CallerIDNum", "<unknown>"),
                              ("CallerIDName", ""), ("UserEvent", "TAPI")])
    assert caller_of(msg) == (None, None, None)
