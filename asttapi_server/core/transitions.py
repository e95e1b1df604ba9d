"""The per-line call state machine: every rule about call states lives here.

Each line that tracks a call has its own LINECALLSTATE. A line starts in
:data:`NEW` (tracked, no state announced yet: the call was just announced
with LINE_NEWCALL, or a client just made it with lineMakeCall); clients
reading the call then see ``LINECALLSTATE_UNKNOWN``, which is what TAPI says
a call whose state is not known yet is in. TAPI allows a new call to start
in any state, so :data:`NEW` may go anywhere.

The rules, applied by :func:`verdict` to every LINE_CALLSTATE for one line:

* **Same state again** -> ``DUPLICATE``: not sent (dialplans fire the same
  TAPIEVENT twice, across macros and the ``h`` extension).
* **Listed in TRANSITIONS[old]** -> ``EMIT``: the line takes the new state
  and clients get LINE_CALLSTATE.
* **Not listed** -> ``IMPOSSIBLE``: the model logs it and drops the event;
  the line keeps its old state. In particular nothing leaves IDLE (a line
  that went IDLE is done with the call; a new LINE_NEWCALL is the only way
  back), and DISCONNECTED and BUSY only go to IDLE (DISCONNECTED also from
  BUSY): a call that was torn down never comes back to life, whatever a late
  event says.

``LINECALLSTATE_HANGUP`` from the manual is not a TAPI state: it is read as
DISCONNECTED (mode NORMAL unless the dialplan gives one), see :data:`ALIASES`.

Device lines (calls followed from a phone's own channel events) name a *fact* per
event; :data:`DEVICE_FACTS` says which of these moves it makes, so their calls
follow this same table, in the same model.

``python -m asttapi_server.core.transitions`` prints the table as Graphviz.
"""

from __future__ import annotations

from typing import Final

from .constants import (
    ACCEPTED,
    BUSY,
    CONFERENCED,
    CONNECTED,
    DIALING,
    DIALTONE,
    DISCONNECTED,
    IDLE,
    LINECALLSTATE_HANGUP,
    OFFERING,
    ONHOLD,
    ONHOLDPENDCONF,
    ONHOLDPENDTRANSFER,
    PROCEEDING,
    RINGBACK,
    SPECIALINFO,
    UNKNOWN,
)

#: Tracked but no state announced yet (shown to clients as LINECALLSTATE_UNKNOWN).
NEW: Final = "NEW"

EMIT: Final = "emit"
DUPLICATE: Final = "duplicate"
IMPOSSIBLE: Final = "impossible"

#: Dialplan words that are not TAPI states -> (state, default mode).
ALIASES: dict[str, tuple[str, str | None]] = {
    LINECALLSTATE_HANGUP: (DISCONNECTED, "LINEDISCONNECTMODE_NORMAL"),
}

#: Mode for a DISCONNECTED that the dialplan sent without one.
DEFAULT_DISCONNECT_MODE = "LINEDISCONNECTMODE_NORMAL"

# Every call ends the same way; listed once to keep the table readable.
_END = {DISCONNECTED, IDLE}

#: state -> the states it may move to. Read it as "from X, the dialplan may say ...".
TRANSITIONS: dict[str, frozenset[str]] = {
    NEW: frozenset(
        {OFFERING, ACCEPTED, DIALTONE, DIALING, PROCEEDING, RINGBACK, BUSY, SPECIALINFO,
         CONNECTED, ONHOLD, ONHOLDPENDCONF, ONHOLDPENDTRANSFER, CONFERENCED, UNKNOWN} | _END
    ),
    # inbound: ringing at us
    OFFERING: frozenset({ACCEPTED, CONNECTED, ONHOLD, CONFERENCED, SPECIALINFO, UNKNOWN} | _END),
    ACCEPTED: frozenset({CONNECTED, ONHOLD, CONFERENCED, SPECIALINFO, UNKNOWN} | _END),
    # outbound: we are dialling out
    DIALTONE: frozenset({DIALING, PROCEEDING, RINGBACK, BUSY, SPECIALINFO, CONNECTED, UNKNOWN} | _END),
    DIALING: frozenset({DIALTONE, PROCEEDING, RINGBACK, BUSY, SPECIALINFO, CONNECTED, UNKNOWN} | _END),
    PROCEEDING: frozenset({DIALING, RINGBACK, BUSY, SPECIALINFO, CONNECTED, UNKNOWN} | _END),
    RINGBACK: frozenset({PROCEEDING, BUSY, SPECIALINFO, CONNECTED, UNKNOWN} | _END),
    # the far end could not be reached: only teardown follows
    BUSY: frozenset(_END),
    SPECIALINFO: frozenset({UNKNOWN} | _END),
    # talking
    CONNECTED: frozenset({ONHOLD, ONHOLDPENDCONF, ONHOLDPENDTRANSFER, CONFERENCED, UNKNOWN} | _END),
    ONHOLD: frozenset({CONNECTED, ONHOLDPENDCONF, ONHOLDPENDTRANSFER, CONFERENCED, UNKNOWN} | _END),
    ONHOLDPENDCONF: frozenset({CONNECTED, ONHOLD, CONFERENCED, UNKNOWN} | _END),
    ONHOLDPENDTRANSFER: frozenset({CONNECTED, ONHOLD, UNKNOWN} | _END),
    CONFERENCED: frozenset({CONNECTED, ONHOLD, UNKNOWN} | _END),
    # we lost track; anything may follow
    UNKNOWN: frozenset(
        {OFFERING, ACCEPTED, DIALTONE, DIALING, PROCEEDING, RINGBACK, BUSY, SPECIALINFO,
         CONNECTED, ONHOLD, ONHOLDPENDCONF, ONHOLDPENDTRANSFER, CONFERENCED} | _END
    ),
    # ending
    DISCONNECTED: frozenset({IDLE}),
    IDLE: frozenset(),
}


# -- device lines: the facts of a phone's channel and the moves they make --------------------------
#
# A device line's calls come from Asterisk's channel events (core/device_lines.py). The mapping
# names each event's fact; this table says which state the call moves to on the device's lines,
# from which state (the call model's: every move is one TRANSITIONS allows, a test checks it).
# Anything not listed changes nothing, so late and repeated events are harmless.

#: A device channel whose call is not announced (no LINE_NEWCALL sent for it yet, or its call ended).
UNSEEN: Final = "UNSEEN"

INCOMING: Final = "incoming"  # DialBegin, the device DestChannel, a calling Channel -> OFFERING
ORIGINATED: Final = "originated"  # DialBegin, the device DestChannel, no Channel (an Originate)
OFFHOOK: Final = "offhook"  # Newchannel OffHook (overlap dialling) -> DIALTONE
DIALLED: Final = "dialled"  # Newchannel Dialing/Ring (the whole number) -> DIALING
ANSWERED: Final = "answered"  # Newstate Up of the device channel
PROCEEDS: Final = "proceeding"  # DialBegin, the device Channel: the PBX dials out
RINGS_BACK: Final = "ringback"  # DialState RINGING, the device Channel
FAR_ANSWERED: Final = "far_answered"  # DialEnd ANSWER, the device Channel
FAR_BUSY: Final = "far_busy"  # DialEnd BUSY once every destination failed
FAR_FAILED: Final = "far_failed"  # DialEnd NOANSWER/CONGESTION/... once every destination failed
BRIDGED: Final = "bridged"  # BridgeEnter
HOLD: Final = "hold"
UNHOLD: Final = "unhold"
TRANSFERRED: Final = "transferred"  # a successful Blind/AttendedTransfer by the device, a Pickup by it
HANGUP: Final = "hangup"  # Hangup -> DISCONNECTED, then IDLE

_DIALLING = (DIALTONE, DIALING, PROCEEDING, RINGBACK)
_LIVE = (NEW, OFFERING, *_DIALLING, CONNECTED, ONHOLD)

#: fact -> {state the device's call is in: state it moves to}. Not listed: nothing happens.
DEVICE_FACTS: dict[str, dict[str, str]] = {
    INCOMING: {UNSEEN: OFFERING},
    ORIGINATED: {UNSEEN: NEW},
    OFFHOOK: {UNSEEN: DIALTONE},
    DIALLED: {UNSEEN: DIALING, DIALTONE: DIALING},
    ANSWERED: {
        UNSEEN: CONNECTED,  # a device channel that answered without a Dial we saw
        NEW: DIALTONE,  # click-to-dial: the user picked up; the PBX dials next
        OFFERING: CONNECTED,
        DIALING: CONNECTED,  # a phone calling an application that answers (voicemail)
        PROCEEDING: CONNECTED,
        RINGBACK: CONNECTED,
    },
    PROCEEDS: {NEW: PROCEEDING, DIALTONE: PROCEEDING, DIALING: PROCEEDING},
    RINGS_BACK: {DIALTONE: RINGBACK, DIALING: RINGBACK, PROCEEDING: RINGBACK},
    FAR_ANSWERED: {s: CONNECTED for s in _DIALLING},
    FAR_BUSY: {s: BUSY for s in _DIALLING},
    FAR_FAILED: {s: DISCONNECTED for s in _DIALLING},
    BRIDGED: {s: CONNECTED for s in (NEW, OFFERING, *_DIALLING)},
    HOLD: {CONNECTED: ONHOLD},
    UNHOLD: {ONHOLD: CONNECTED},
    TRANSFERRED: {s: IDLE for s in (*_LIVE, BUSY, DISCONNECTED)},
    HANGUP: {s: DISCONNECTED for s in _LIVE},  # then IDLE; BUSY and DISCONNECTED go straight to IDLE
}



def verdict(old: str, new: str) -> str:
    """EMIT, DUPLICATE or IMPOSSIBLE for a line in ``old`` told to go to ``new``."""
    if old == new:
        return DUPLICATE
    if new in TRANSITIONS[old]:
        return EMIT
    return IMPOSSIBLE


def shown(state: str) -> str:
    """The TAPI state name a client sees for an internal state."""
    return UNKNOWN if state == NEW else state


def to_dot() -> str:
    """The transition table as a Graphviz digraph (for docs)."""
    short = lambda s: s.replace("LINECALLSTATE_", "")  # noqa: E731
    out = ["digraph callstate {", "  rankdir=LR;"]
    for old, targets in TRANSITIONS.items():
        for new in sorted(targets):
            out.append(f"  {short(old)} -> {short(new)};")
    out.append("}")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    print(to_dot())
