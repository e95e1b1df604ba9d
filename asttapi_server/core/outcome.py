"""What a call's states and disconnect modes add up to: answered, busy, failed or missed.

One rule for everyone who reports a finished call: the metrics
(``asttapi_calls_finished``) and the call webhooks (their ``call_finished``
event and Zammad's hangup ``cause``). A call is ``answered`` if any line
reached CONNECTED, else ``busy`` (a BUSY state or mode), else ``failed`` (a
disconnect mode that says the call could not be put through), else
``missed``. Callers keep the flags of a call as its events pass
(:func:`flags_of`, or-ed together) and read :func:`outcome` at the end. Pure.
"""

from __future__ import annotations

from .constants import CONNECTED
from .constants import BUSY as BUSY_STATE

__all__ = ["ANSWERED", "BUSY", "FAILED", "OUTCOMES", "flags_of", "outcome"]

ANSWERED, BUSY, FAILED = 1, 2, 4
OUTCOMES = ("answered", "missed", "busy", "failed")

_FLAG_OF_STATE = {CONNECTED: ANSWERED, BUSY_STATE: BUSY}
_FLAG_OF_MODE = {
    "LINEDISCONNECTMODE_BUSY": BUSY,
    **dict.fromkeys(
        (
            "LINEDISCONNECTMODE_BADADDRESS", "LINEDISCONNECTMODE_UNREACHABLE", "LINEDISCONNECTMODE_UNAVAIL",
            "LINEDISCONNECTMODE_REJECT", "LINEDISCONNECTMODE_NUMBERCHANGED", "LINEDISCONNECTMODE_OUTOFORDER",
            "LINEDISCONNECTMODE_CONGESTION", "LINEDISCONNECTMODE_TEMPFAILURE", "LINEDISCONNECTMODE_QOSUNAVAIL",
            "LINEDISCONNECTMODE_BLOCKED",
        ),
        FAILED,
    ),
}


def flags_of(state: str | None, mode: str | None) -> int:
    """The flags one LINE_CALLSTATE adds to its call."""
    return _FLAG_OF_STATE.get(state, 0) | _FLAG_OF_MODE.get(mode, 0)  # type: ignore[arg-type]


def outcome(flags: int) -> str:
    """answered > busy > failed > missed: what a call's flags add up to."""
    if flags & ANSWERED:
        return "answered"
    if flags & BUSY:
        return "busy"
    if flags & FAILED:
        return "failed"
    return "missed"
