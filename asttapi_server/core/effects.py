"""What the core returns: effects for the Twisted side to carry out.

Every method of the core that takes a fact (a TAPI signal, a Hangup, an
OriginateResponse, the channel list after a resync, the link going up or
down, an action's answer, a contact found), a client request or a ``now``
returns one :class:`Effects`. The adapter (:mod:`asttapi_server.bridge`)
carries them out in the order of the attributes below and keeps no telephony
state of its own, so each rule has one owner: the core decides, the bridge
does.

An ``Effects`` *is* the list of TAPI events for the hub, in order, so code
that only cares about events reads it as a list (the call model's tests
compare it with one). The other effects are attributes, empty tuples unless
set, so the common case (a few events, nothing else) costs one list:

* ``finished``: calls that ended (their last line went IDLE, by the PBX or
  by the safety net: hangup grace, max age, ``max_calls``, resync, a failed
  Originate), each exactly once over the model's life, after its IDLE events
  in the list. ``asttapi_call_finished`` is called for them.
* ``contacts``: :class:`ContactWanted`, lookups to start.
* ``actions``: :class:`Send`, AMI actions (built by :mod:`asttapi_server.ami.actions`
  and nowhere else) with the token the answer must be reported with
  (:meth:`asttapi_server.core.control.CallControl.answered`).
* ``replies``: :class:`Reply`, the outcome of a client request.
* ``diagnostics``: :class:`Diagnostic`, things worth a log line; the adapter
  throttles them per ``key`` (a PBX repeats its mistakes on every call).
* ``reschedule``: the earliest deadline may have moved; the adapter asks
  ``next_deadline()`` again only then.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from ..ami.actions import Action
from ..errors import TelephonyError


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``action``; report its answer with ``CallControl.answered(token, ...)``.

    ``timeout``: seconds to wait for the answer (None: the link's ``action_timeout``).
    """

    token: int
    action: Action
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class ContactWanted:
    """Look up the contact behind ``number``; report it with ``CallControl.contact_found``."""

    handle: int
    number: str
    callinfo: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to the client request made with ``token``: ``value``, or ``error`` if set."""

    token: int
    value: Any = None
    error: TelephonyError | None = None


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A log line: ``text`` is a ``twisted.logger`` format over ``fields``.

    ``key`` names the kind (never the PBX's text itself, which it may vary at
    will): the adapter reports each key at most once a minute and says how
    many it held back. ``level`` is ``"info"``, ``"warn"`` or ``"error"``.
    """

    key: Hashable
    text: str
    fields: Mapping[str, Any]
    level: str = "warn"


#: The effects besides events that are lists (``reschedule`` is the one flag).
_LISTS = ("finished", "contacts", "actions", "replies", "diagnostics")


class Effects(list):
    """TAPI events for the hub, in order; the other effects as attributes (see the module doc).

    The class holds every other effect's empty default; an instance holds one
    only once it is set, so an instance whose ``__dict__`` is empty has
    nothing but events (:attr:`quiet`): the common case, checked without
    looking at each kind.
    """

    finished: Any = ()
    contacts: Any = ()
    actions: Any = ()
    replies: Any = ()
    diagnostics: Any = ()
    reschedule: bool = False

    def finish(self, call: Any) -> None:
        if not self.finished:
            self.finished = []
        self.finished.append(call)

    def want_contact(self, wanted: ContactWanted) -> None:
        if not self.contacts:
            self.contacts = []
        self.contacts.append(wanted)

    def send(self, token: int, action: Action, timeout: float | None = None) -> None:
        if not self.actions:
            self.actions = []
        self.actions.append(Send(token, action, timeout))

    def reply(self, token: int, value: Any = None, error: TelephonyError | None = None) -> None:
        if not self.replies:
            self.replies = []
        self.replies.append(Reply(token, value, error))

    def diagnose(self, key: Hashable, text: str, level: str = "warn", **fields: Any) -> None:
        if not self.diagnostics:
            self.diagnostics = []
        self.diagnostics.append(Diagnostic(key, text, fields, level))

    def merge(self, other: "Effects") -> "Effects":
        """Append ``other``'s events and effects after this one's; returns self."""
        if other:
            self.extend(other)
        if other.__dict__:  # anything besides events (see the class doc)
            for name in _LISTS:
                more = getattr(other, name)
                if more:
                    mine = getattr(self, name)
                    setattr(self, name, [*mine, *more] if mine else list(more))
            if other.reschedule:
                self.reschedule = True
        return self

    @property
    def quiet(self) -> bool:
        """Nothing but (maybe) events: the adapter's fast path."""
        return not self.__dict__ or not (self.finished or self.contacts or self.actions or self.replies
                                         or self.diagnostics or self.reschedule)
