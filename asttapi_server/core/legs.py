"""Device legs: what the call model knows of each channel of a configured device.

Why this file: a device line's calls come from Asterisk's channel events
(:mod:`.device_lines`, the mapping). To turn the next event into the right
TAPI signals the mapping needs to remember facts of the channel: who the
phone is, what it dialled, how the Dial that rang it ended, its connected
party, ... Those facts belong to the call, so the call model owns them
(:attr:`CallModel.legs <asttapi_server.core.model.CallModel.legs>`), saves
them with the call and restores them after a restart; the mapping keeps
nothing between two events. Per event it reads a :class:`CallsView` (what
the model knows, read only) and returns, besides its signals,
:class:`DeviceNote` values saying what to remember; the model applies them.

A leg has no state of its own: its call's state is the model's
(:mod:`.transitions`), :meth:`CallsView.state` reads it (``UNSEEN`` while
no call is announced for the channel).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from .constants import CALLSTATE, IDLE, NEWCALL
from .transitions import NEW, TRANSITIONS, UNSEEN

#: Local ;1/;2 channel facts kept at most (their Hangups clean them up; the bound is for Hangups
#: that never came): the oldest goes first.
CHAIN_MAX = 4096

#: What a :class:`DeviceNote` is about.
LEG, CHAIN, MEMBER_END, RESET = "leg", "chain", "member_end", "reset"


@dataclass(slots=True)
class Leg:
    """The facts of one channel of a configured device (the model keeps them; read, do not change)."""

    uniqueid: str
    channel: str
    lines: tuple[str, ...]
    created: float
    updated: float = 0.0
    own: tuple[str | None, str | None] = (None, None)  # the device's number and name (Newchannel)
    exten: str | None = None  # what the phone dialled (Newchannel Exten)
    ringing: bool = False
    dial_status: str | None = None  # the first DialEnd status of the Dial that rang this channel
    via: str | None = None  # the channel whose Dial rang this one (a Local ;2 for queue/ring group members)
    picked: bool = False  # another phone picked this ringing call up (Pickup's TargetChannel)
    placed: bool = False  # the user's own call (the phone dialled, or click-to-dial)
    connected: tuple[str | None, str | None] = (None, None)  # the channel's ConnectedLine
    far: tuple[str | None, str | None] = (None, None)  # the dialled party (DialBegin Dest)
    dialling: dict[str, str | None] = field(default_factory=dict)  # its Dial's destinations -> DialEnd status
    info: dict[str, str | None] = field(default_factory=dict)  # what the mapping told the model

    def saved(self, shown: Collection[str]) -> dict[str, Any]:
        """The leg as the call store records it (JSON-able, fresh containers).

        ``shown``: every text the call's callinfo shows. A number or name of
        the leg that is not among them is left out (None): a withheld
        caller's number, which the call hides, never reaches the file.
        """
        def keep(value: str | None) -> str | None:
            return value if value in shown else None

        return {
            "uniqueid": self.uniqueid, "channel": self.channel, "lines": list(self.lines),
            "created": self.created, "updated": self.updated,
            "own": [keep(v) for v in self.own], "exten": keep(self.exten), "ringing": self.ringing,
            "dial_status": self.dial_status, "via": self.via, "picked": self.picked, "placed": self.placed,
            "connected": [keep(v) for v in self.connected], "far": [keep(v) for v in self.far],
            "dialling": dict(self.dialling), "info": {k: v for k, v in self.info.items() if v in shown},
        }

    def key(self) -> tuple:
        """Equal at two moments exactly when :meth:`saved` is (plain values: see ``CallModel.save_key``)."""
        return (self.channel, self.lines, self.created, self.updated, self.own, self.exten, self.ringing,
                self.dial_status, self.via, self.picked, self.placed, self.connected, self.far,
                tuple(self.dialling.items()), tuple(self.info.items()))


#: The fields of a :class:`Leg`, in order (copies are made field by field: no ``dataclasses`` call per event).
LEG_FIELDS: Final = Leg.__slots__


class DeviceNote(NamedTuple):
    """What the mapping asks the model to remember after one event (in the signal list it returns).

    ``kind`` :data:`LEG`: ``key`` a Uniqueid, ``value`` its :class:`Leg` (None: forget it);
    :data:`CHAIN`: ``key`` a Local ``;1`` channel, ``value`` (the number its caller dialled, the
    caller is a configured device) or None; :data:`MEMBER_END`: ``key`` a Local ``;2`` channel,
    ``value`` how the Dial of its ``;1`` ended, or None; :data:`RESET`: forget every leg and
    channel fact (Asterisk shut down). Never held back: the model applies it at once.
    """

    kind: str
    key: str | None = None
    value: Any = None  # (a tuple: made per event on the hot path, cheaper than a dataclass)


class CallsView:
    """What one call model knows of device channels, read only: what the mapping is handed per event.

    ``held``: the signals the core holds back for a presentation read, by
    ``(device, Uniqueid)`` (``CallControl``): a leg's state counts them, since
    the model applies them once the read is in.
    """

    __slots__ = ("_model", "_held")

    def __init__(self, model: Any, held: Mapping[tuple[bool, str], Any] | None = None) -> None:
        self._model = model
        self._held = held

    def leg(self, uniqueid: str) -> Leg | None:
        """The facts of the device channel ``uniqueid`` (read, do not change), or None."""
        return self._model.legs.get(uniqueid)

    def uniqueid_of(self, channel: str) -> str | None:
        """The Uniqueid of a device channel the model follows, by name."""
        return self._model.leg_channels.get(channel)

    def uniqueids(self) -> Iterable[str]:
        """Every device channel the model follows (a snapshot: safe to read while notes are applied)."""
        return tuple(self._model.legs)

    def chain(self, channel: str) -> tuple[str | None, bool] | None:
        """A Local ``;1`` channel's caller: (the number dialled, the caller is a configured device)."""
        return self._model.chain.get(channel)

    def member_end(self, channel: str) -> str | None:
        """How the queue's or ring group's Dial of a Local member ended (keyed by its ``;2``)."""
        return self._model.member_end.get(channel)

    def state(self, uniqueid: str) -> str:
        """The state of the device channel's call on its lines: :data:`UNSEEN` while no call is
        announced for it (or its call ended), else the model's (``transitions.NEW`` or a
        LINECALLSTATE), held signals counted."""
        found = self.leg_state(uniqueid)
        return UNSEEN if found is None else found[1]

    def leg_state(self, uniqueid: str) -> tuple[Leg, str] | None:
        """:meth:`leg` and :meth:`state` in one look (None: no such leg)."""
        model = self._model
        leg = model.legs.get(uniqueid)
        if leg is None:
            return None
        call = model._by_leg.get(uniqueid)
        state = UNSEEN
        if call is not None and call.ended is None and (call.owner_line is None or call.owner_announced):
            states = call.states
            for line in leg.lines:
                if line in states:
                    state = states[line]
                    break
        held = self._held
        if held:
            waiting = held.get((True, uniqueid))
            if waiting is not None:
                state = after(state, waiting.signals)
        return leg, state


def after(state: str, signals: Iterable[Any]) -> str:
    """The state a leg in ``state`` is in once ``signals`` (its call's, held back) are applied."""
    for signal in signals:
        verb = signal.command.verb
        if verb == NEWCALL:
            if state == UNSEEN or state == IDLE:
                state = NEW
        elif verb == CALLSTATE and state != UNSEEN:
            new = signal.command.args[0]
            if new != state and new in TRANSITIONS[state]:  # (transitions.verdict EMIT, inlined)
                state = new
    return state
