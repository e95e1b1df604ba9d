"""What one entry of a PBX's event log holds, and back (the fields of a stream entry).

Fields: ``s`` the cluster-wide seq (the ``seq`` every node gives its clients),
``p`` the seq of the PBX's entry before it (a reader that finds ``p`` is not
the last seq it read from that stream knows entries went missing: a gap),
``t`` the fencing token that wrote it, ``k`` the kind (:data:`EVENT`, or
:data:`GAP`: a node took the PBX over and cannot know what happened while
nobody held it), ``d`` the data: for an event, the :class:`TapiEvent` as JSON.

A LINE_NEWCALL's ``owner`` is a session of one node; it travels as
``"INCARNATION/SID"`` and only the node of that incarnation turns it back
into its own session id (the originating client already holds the handle).

Pure module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Any

from asttapi_server.core.events import TapiEvent

__all__ = ["EVENT", "GAP", "RemoteOwner", "encode_event", "decode_event"]

EVENT = "e"
GAP = "g"


@dataclass(frozen=True)
class RemoteOwner:
    """The ``owner`` of a call a client of another node asked for (a forwarded lineMakeCall)."""

    incarnation: str
    sid: int | str

    def __str__(self) -> str:
        return f"{self.incarnation}/{self.sid}"


def encode_event(event: TapiEvent, incarnation: str) -> bytes:
    """``event`` as the ``d`` field; ``incarnation`` names this process (for ``owner``)."""
    data: dict[str, Any] = {"m": event.msg, "l": event.line}
    if event.call is not None:
        data["c"] = event.call
        data["i"] = dict(event.callinfo)
    if event.param is not None:
        data["p"] = event.param
    if event.mode is not None:
        data["o"] = event.mode
    if event.synthetic:
        data["y"] = True
    if event.owner is not None:
        owner = event.owner
        data["w"] = str(owner) if isinstance(owner, RemoteOwner) else f"{incarnation}/{owner}"
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def decode_event(data: bytes, incarnation: str) -> TapiEvent:
    """The event of a ``d`` field; ValueError if it is not one (a foreign or corrupt entry)."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("m"), str):
        raise ValueError("no message name")
    line = raw.get("l")
    call = raw.get("c")
    callinfo = raw.get("i", {})
    if (line is not None and not isinstance(line, str)) or (call is not None and type(call) is not int) \
            or not isinstance(callinfo, Mapping):
        raise ValueError("bad line, call or callinfo")
    owner: Hashable | None = None
    who = raw.get("w")
    if isinstance(who, str):
        node, _, sid = who.rpartition("/")
        if node == incarnation:
            owner = int(sid) if sid.isdigit() else sid
    return TapiEvent(msg=raw["m"], line=line, call=call, param=_text(raw.get("p")), mode=_text(raw.get("o")),
                     callinfo=MappingProxyType(dict(callinfo)), synthetic=raw.get("y") is True, owner=owner)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
