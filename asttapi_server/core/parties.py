"""A call's parties (caller, called, connected): what of them a client may see, and the flags that say so.

The one rule, for every party of every call (dialplan lines and device
lines alike), written here and nowhere else:

* A party Asterisk presents as **withheld** (``CALLERID(pres)`` or
  ``CONNECTEDLINE(pres)`` ``prohib...``: CLIR, a SIP ``Privacy: id``, the
  dialplan's ``Set(CALLERID(num-pres)=prohib)``), or whose number is an
  anonymous stand-in (``anonymous``: a SIP ``From: "Anonymous"
  <sip:anonymous@anonymous.invalid>``), is shown with number and name
  ``null`` and flags ``[LINECALLPARTYID_BLOCKED]``.
* A party Asterisk says has no id (presentation ``unavailable``) is shown
  with ``null`` and ``[LINECALLPARTYID_UNAVAIL]``; so is one Asterisk gives
  with an empty number and name.
* A party whose presentation could not be read (Asterisk gave an error or
  no answer) is hidden too, ``[LINECALLPARTYID_UNKNOWN]``: a withheld
  number must never be shown by mistake.
* Any other party is shown as it is: flags ``LINECALLPARTYID_ADDRESS`` when
  there is a number, ``LINECALLPARTYID_NAME`` when there is a name;
  ``[LINECALLPARTYID_UNKNOWN]`` while nothing is known of it yet.

The flags are TAPI's ``dwCallerIDFlags`` / ``dwCalledIDFlags`` /
``dwConnectedIDFlags`` (LINECALLINFO), in callinfo as ``calleridflags``,
``calledidflags`` and ``connectedidflags``: a tuple of names (a JSON list on
the wire).

Where a presentation comes from: no AMI event reliably carries it (only
``NewCallerid`` has ``CID-CallingPres``, and only when the number or name
changed, so a dialplan that only sets ``num-pres`` sends nothing), so the
core reads it with ``Getvar`` before it shows a party that came from a
channel (:class:`~.grammar.Screen`, :mod:`.control`): at most one AMI round
trip. :func:`masked` turns the signals of a call into what may be shown,
once the verdicts are in.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import replace
from typing import Final

from . import grammar as G

BLOCKED: Final = "LINECALLPARTYID_BLOCKED"
OUTOFAREA: Final = "LINECALLPARTYID_OUTOFAREA"
NAME: Final = "LINECALLPARTYID_NAME"
ADDRESS: Final = "LINECALLPARTYID_ADDRESS"
UNKNOWN: Final = "LINECALLPARTYID_UNKNOWN"
UNAVAIL: Final = "LINECALLPARTYID_UNAVAIL"

#: A presentation that lets the party be shown (the other verdicts are the hiding flags).
ALLOWED: Final = "allowed"
#: Flags that say why a party is not shown; a SET ...FLAGS may give one of them.
HIDING: Final = frozenset(G.HIDING_FLAGS)

#: party (its number's callinfo key) -> (its name's key, its flags' key)
PARTIES: Mapping[str, tuple[str, str]] = {
    "callerid": ("calleridname", "calleridflags"),
    "calledid": ("calledidname", "calledidflags"),
    "connectedid": ("connectedidname", "connectedidflags"),
}
#: any of a party's callinfo keys -> the party
PARTY_OF: Mapping[str, str] = {key: party for party, keys in PARTIES.items() for key in (party, *keys)}
#: callinfo before anything is known of a party
NOT_KNOWN: Final = (UNKNOWN,)

#: Numbers that stand for "withheld" (a SIP anonymous From, carriers' words), compared lower-case.
ANONYMOUS: Final = frozenset(("anonymous", "restricted", "private", "withheld"))


def presentation(value: str | None) -> str:
    """Asterisk's presentation of a party -> :data:`ALLOWED`, :data:`BLOCKED` or :data:`UNAVAIL`.

    ``value`` is what ``Getvar`` of ``CALLERID(pres)`` / ``CONNECTEDLINE(pres)``
    answers (``allowed_not_screened``, ``prohib_passed_screen``,
    ``unavailable``: ``main/callerid.c``'s ``pres_types``) or the number
    ``NewCallerid`` puts first in ``CID-CallingPres`` (``32 (Presentation
    Prohibited, ...)``: bits 0x60 of ``AST_PRES_*``). Anything else is
    :data:`UNKNOWN`: not verified, so not shown.
    """
    text = (value or "").strip().lower()
    if text.startswith("allowed"):
        return ALLOWED
    if text.startswith("prohib"):
        return BLOCKED
    if text == "unavailable":
        return UNAVAIL
    head = text.split(None, 1)[0] if text else ""
    if head.isdigit():
        restriction = int(head) & 0x60
        return {0x00: ALLOWED, 0x40: UNAVAIL}.get(restriction, BLOCKED)
    return UNKNOWN


def shown(number: str | None, name: str | None,
          judged: str | None = None) -> tuple[str | None, str | None, tuple[str, ...]]:
    """What a client may see of a party: ``(number, name, flags)``.

    ``judged``: the party's presentation (:func:`presentation`), or
    :data:`ALLOWED` for a party the source gave explicitly (a dialplan SET,
    even an empty one), or None when nothing was read (an empty party is
    then still :data:`UNKNOWN`, not :data:`UNAVAIL`). See the module docstring.
    """
    if judged in HIDING:
        return None, None, (judged,)
    if number and number.strip().lower() in ANONYMOUS:
        return None, None, (BLOCKED,)
    flags = ((ADDRESS,) if number else ()) + ((NAME,) if name else ())
    if not flags:
        flags = (UNAVAIL,) if judged == ALLOWED else NOT_KNOWN
    return number, name, flags


def withheld(flags: object) -> bool:
    """Do these callinfo flags say the party withheld its id (``LINECALLPARTYID_BLOCKED``)?"""
    return isinstance(flags, (tuple, list)) and BLOCKED in flags


# -- the signals of a call, once the verdicts are in --------------------------------------------


def verdict(judged: Mapping[str, str], screen: G.Screen) -> str | None:
    """The verdict already reached for ``screen``'s party on this call, or None (read it first).

    A party with neither number nor name needs no reading: there is nothing
    to hide (its flags say :data:`UNAVAIL`).
    """
    if screen.number is None and screen.name is None:
        return ALLOWED
    for value in (screen.number, screen.name):
        if value is not None and value in judged:
            return judged[value]
    return None


def judge(judged: MutableMapping[str, str], screen: G.Screen, presentation: str) -> None:
    """Record the verdict for ``screen``'s number and name on this call; a hiding verdict sticks."""
    for value in (screen.number, screen.name):
        if value is not None and judged.get(value) not in HIDING:
            judged[value] = presentation


def masked(signal: G.TapiSignal, judged: Mapping[str, str]) -> G.TapiSignal:
    """``signal`` as it may reach the call model, given the call's verdicts (value -> presentation).

    A LINE_NEWCALL carries its caller's verdict (``presentation``; the number
    and name dropped when hidden). A SET of a number or name judged hidden
    becomes ``SET <PARTY>FLAGS <flag>`` (number and name null), so the value
    exists nowhere downstream: not in the model, the call store, an event,
    a log line. Every other signal passes unchanged.
    """
    cmd = signal.command
    if cmd.verb == G.NEWCALL:
        judged_now = verdict(judged, signal.screen) if signal.screen is not None else None
        if judged_now is None:
            hit = [judged[v] for v in (signal.callerid, signal.calleridname) if v is not None and v in judged]
            judged_now = next((j for j in hit if j in HIDING), hit[0] if hit else None)
        if judged_now is None and signal.screen is None:
            return signal
        if judged_now in HIDING:
            return replace(signal, callerid=None, calleridname=None, presentation=judged_now, screen=None)
        return replace(signal, presentation=judged_now or signal.presentation, screen=None)
    if cmd.verb == G.SET:
        field, value = cmd.args
        party = PARTY_OF.get(G.SET_FIELDS[field])
        hidden = judged.get(value) if party is not None and field[-5:] != "FLAGS" else None
        if hidden in HIDING:
            args = (G.FIELD_OF[PARTIES[party][1]], hidden)
            raw = G.text_of(cmd.call_id, cmd.lines, cmd.excluded, G.SET, args)
            return replace(signal, command=replace(cmd, args=args, raw=raw), screen=None)
    if signal.screen is not None:
        return replace(signal, screen=None)
    return signal

