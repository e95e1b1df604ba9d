"""What the call model says happened: TAPI messages for one line.

The model returns these; plugins may enrich them; the hub numbers them and
sends them to every client that has the line open. Frozen, so an observer can
never change what another observer sees.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})

#: The keys every call event's ``callinfo`` carries (plugins may add more).
CALLINFO_KEYS = (
    "callerid",
    "calleridname",
    "calleridflags",
    "calledid",
    "calledidname",
    "calledidflags",
    "connectedid",
    "connectedidname",
    "connectedidflags",
    "origin",
    "uniqueid",
)


@dataclass(frozen=True, slots=True)
class TapiEvent:
    """One TAPI message for one line.

    ``param`` is the TAPI constant name of the message's first parameter:
    the call state for LINE_CALLSTATE, the info state for LINE_CALLINFO, the
    device state for LINE_LINEDEVSTATE, ``None`` for LINE_NEWCALL.
    ``mode`` is the state detail TAPI passes as dwParam2 (for DISCONNECTED
    the LINEDISCONNECTMODE_*). ``owner`` is set on a LINE_NEWCALL for a call
    one of our clients originated: that client already holds the handle, so
    the hub must not announce the call to it again.
    """

    msg: str
    line: str | None
    call: int | None
    param: str | None = None
    mode: str | None = None
    # A factory, not default=_EMPTY: dataclasses refuse an unhashable default
    # (mappingproxy has no hash), which made this module fail to import.
    # (calleridflags, calledidflags, connectedidflags: tuples of LINECALLPARTYID_* names,
    # core/parties.py; a withheld party's number and name are None)
    callinfo: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    synthetic: bool = False
    owner: Hashable | None = None

    def with_callinfo(self, **extra: Any) -> "TapiEvent":
        """A copy whose callinfo also holds ``extra`` (used by enriching plugins)."""
        merged = dict(self.callinfo)
        merged.update(extra)
        return replace(self, callinfo=MappingProxyType(merged))
