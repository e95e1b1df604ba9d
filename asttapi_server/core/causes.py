"""Why a call ended, in TAPI terms: Q.850 causes and Originate reasons -> LINEDISCONNECTMODE_*.

Asterisk's ``Hangup`` event carries the channel's Q.850 cause (``Cause: 16``,
``Cause-txt: Normal Clearing``); the failed ``OriginateResponse`` carries a
``Reason`` that is Asterisk's AST_CONTROL_* code for how the dialled leg
ended. TAPI wants one LINEDISCONNECTMODE_* as dwParam2 of
LINECALLSTATE_DISCONNECTED. Anything we cannot map honestly is UNKNOWN.

Decisions worth knowing:

* 26 "non-selected user clearing" (Asterisk: "Answered elsewhere", the
  ring-group member that lost) -> PICKUP: TAPI's "the call was picked up
  from elsewhere" is exactly that.
* 18 "no user responding" and 19 "no answer" -> NOANSWER; 20 "subscriber
  absent" -> UNREACHABLE.
* 0 (Asterisk: "not set") and 127 (interworking) -> UNKNOWN.
"""

from __future__ import annotations

UNKNOWN_MODE = "LINEDISCONNECTMODE_UNKNOWN"

#: Q.850 cause -> LINEDISCONNECTMODE_* name.
Q850_TO_MODE: dict[int, str] = {
    1: "LINEDISCONNECTMODE_BADADDRESS",  # unallocated number
    2: "LINEDISCONNECTMODE_UNREACHABLE",  # no route to transit network
    3: "LINEDISCONNECTMODE_UNREACHABLE",  # no route to destination
    6: "LINEDISCONNECTMODE_UNAVAIL",  # channel unacceptable
    16: "LINEDISCONNECTMODE_NORMAL",  # normal clearing
    17: "LINEDISCONNECTMODE_BUSY",  # user busy
    18: "LINEDISCONNECTMODE_NOANSWER",  # no user responding
    19: "LINEDISCONNECTMODE_NOANSWER",  # no answer (user alerted)
    20: "LINEDISCONNECTMODE_UNREACHABLE",  # subscriber absent
    21: "LINEDISCONNECTMODE_REJECT",  # call rejected
    22: "LINEDISCONNECTMODE_NUMBERCHANGED",  # number changed
    23: "LINEDISCONNECTMODE_FORWARDED",  # redirected to new destination
    26: "LINEDISCONNECTMODE_PICKUP",  # non-selected user clearing ("answered elsewhere")
    27: "LINEDISCONNECTMODE_OUTOFORDER",  # destination out of order
    28: "LINEDISCONNECTMODE_BADADDRESS",  # invalid number format
    29: "LINEDISCONNECTMODE_REJECT",  # facility rejected
    31: "LINEDISCONNECTMODE_NORMAL",  # normal, unspecified
    34: "LINEDISCONNECTMODE_CONGESTION",  # no circuit/channel available
    38: "LINEDISCONNECTMODE_OUTOFORDER",  # network out of order
    41: "LINEDISCONNECTMODE_TEMPFAILURE",  # temporary failure
    42: "LINEDISCONNECTMODE_CONGESTION",  # switching equipment congestion
    44: "LINEDISCONNECTMODE_CONGESTION",  # requested channel not available
    47: "LINEDISCONNECTMODE_CONGESTION",  # resource unavailable, unspecified
    49: "LINEDISCONNECTMODE_QOSUNAVAIL",  # quality of service unavailable
    50: "LINEDISCONNECTMODE_BLOCKED",  # requested facility not subscribed
    52: "LINEDISCONNECTMODE_BLOCKED",  # outgoing calls barred
    54: "LINEDISCONNECTMODE_BLOCKED",  # incoming calls barred
    55: "LINEDISCONNECTMODE_BLOCKED",  # incoming calls barred within CUG
    57: "LINEDISCONNECTMODE_INCOMPATIBLE",  # bearer capability not authorised
    58: "LINEDISCONNECTMODE_INCOMPATIBLE",  # bearer capability not available
    65: "LINEDISCONNECTMODE_INCOMPATIBLE",  # bearer capability not implemented
    66: "LINEDISCONNECTMODE_INCOMPATIBLE",  # channel type not implemented
    88: "LINEDISCONNECTMODE_INCOMPATIBLE",  # incompatible destination
    102: "LINEDISCONNECTMODE_TEMPFAILURE",  # recovery on timer expiry
}

#: OriginateResponse ``Reason`` (AST_CONTROL_*) -> LINEDISCONNECTMODE_* name.
ORIGINATE_REASON_TO_MODE: dict[int, str] = {
    0: "LINEDISCONNECTMODE_UNREACHABLE",  # channel could not be created / no such extension
    1: "LINEDISCONNECTMODE_REJECT",  # AST_CONTROL_HANGUP: hung up while ringing
    3: "LINEDISCONNECTMODE_NOANSWER",  # AST_CONTROL_RINGING: rang until the timeout
    5: "LINEDISCONNECTMODE_BUSY",  # AST_CONTROL_BUSY
    8: "LINEDISCONNECTMODE_CONGESTION",  # AST_CONTROL_CONGESTION
}


def mode_for_cause(cause: int | None) -> str:
    """LINEDISCONNECTMODE_* for a Q.850 hangup cause (None or unknown -> UNKNOWN)."""
    if cause is None:
        return UNKNOWN_MODE
    return Q850_TO_MODE.get(cause, UNKNOWN_MODE)


def mode_for_originate_reason(reason: int | None) -> str:
    """LINEDISCONNECTMODE_* for a failed Originate's Reason (None or unknown -> UNKNOWN)."""
    if reason is None:
        return UNKNOWN_MODE
    return ORIGINATE_REASON_TO_MODE.get(reason, UNKNOWN_MODE)
