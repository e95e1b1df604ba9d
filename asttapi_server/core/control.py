"""Call control: the call and request lifecycle, pure.

The call model (:mod:`.model`) knows calls and their states. This module
knows everything else the server decides about them, so the Twisted side
(:mod:`asttapi_server.bridge`) only carries out what it is told:

* **Facts from the PBX**, already framed and parsed: the TAPI signals the
  mapping plugins made, and the events the core itself needs
  (:data:`CORE_EVENTS`, handled by :meth:`CallControl.event_handlers`, which
  the composition puts in the one route table beside the plugins'
  mappings): ``Hangup`` (the safety net's grace), ``Newchannel``
  (the channel name of a Uniqueid, for versions whose UserEvents carry
  none), ``OriginateResponse`` (click-to-dial). Names the core acts on come
  only from Asterisk's own headers, checked by :mod:`asttapi_server.ami.normalise`;
  never a Uniqueid or caller id turned into a channel name.
* **One line, one source** (:mod:`.sources`): a signal that is not a
  device's (a TAPI UserEvent's, whichever plugin mapped it) may not drive a
  device line; the core takes those lines out of it, whatever the hook order.
* **The link**: lost -> LINEDEVSTATE_OUTOFSERVICE at once; back -> ask for
  the channel list (``CoreShowChannels``), end the calls that died
  meanwhile, then LINEDEVSTATE_INSERVICE. ``link_up`` (in service) is
  derived from that one state.
* **Client requests** (lineMakeCall, lineDrop, lineBlindTransfer): checked,
  turned into an action built by :mod:`asttapi_server.ami.actions` (the only
  place that builds one) with a token; the action's answer comes back
  through :meth:`CallControl.answered` and becomes a :class:`~.effects.Reply`
  (the AMI error mapped to a LINEERR by :func:`asttapi_server.errors.lineerr_of`).
  An Originate is correlated with its later OriginateResponse by the
  ActionID the link gave it (:meth:`CallControl.sent`), which works on every
  Asterisk version.
* **Contact lookups**: a call's first caller id, and each new one, starts a
  lookup (:class:`~.effects.ContactWanted`), except on calls placed from
  the line's own phone; its answer (:meth:`CallControl.contact_found`)
  becomes LINE_CALLINFO OTHER with ``callinfo.contact``, found or not.
* **Withheld parties**: a signal that carries a party from a channel (a
  :class:`~.grammar.Screen`: a LINE_NEWCALL's caller, a device line's new
  connected party) is held, with every later signal of its call, until
  ``Getvar`` of the party's presentation answers (one AMI round trip, at
  most :data:`SCREEN_TIMEOUT` s); then :mod:`.parties` decides what may be
  shown and the call's signals reach the model without a withheld number
  or name in them. The verdicts are kept per call, in memory only, so a
  later SET of the same number is hidden too.
* **Calls finished**: whatever the model reports in ``Effects.finished``.

Everything returns :class:`~.effects.Effects`; nothing here logs, reads a
clock or does I/O.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from ..ami import actions, normalise
from ..errors import InvalidActionHeader, TelephonyError, lineerr_of, link_down, unexpected
from .constants import CALLINFO_CALLERID, DEVSTATE, IDLE, INSERVICE, NEWCALL, OUTOFSERVICE
from . import parties
from .dialling import Dialled, parse_phone, to_dial
from .dialstring import dialable
from . import sources
from .effects import ContactWanted, Diagnostic, Effects
from .events import TapiEvent
from .grammar import Screen
from .legs import CallsView, DeviceNote
from .model import Call, CallModel

#: AMI events the core itself needs, whatever the plugins map.
CORE_EVENTS = ("Hangup", "Newchannel", "OriginateResponse")
#: Newchannel names remembered (Uniqueid -> Channel), oldest dropped first.
SEEN_CHANNELS = 4096
#: Seconds a presentation read (Getvar) may take; no answer by then: the party stays hidden.
SCREEN_TIMEOUT = 2.0
#: Calls whose parties' verdicts are remembered (a call that ended is forgotten at once; a bound for the rest).
JUDGED_CALLS = 4096


# Link states: DOWN -> (logged in) RESYNCING -> (channel list in) UP -> DOWN ...
DOWN, RESYNCING, UP = "down", "resyncing", "up"

# What an action in flight was for (the value kept per token).
_ORIGINATE, _ACT, _RESYNC, _SCREEN = "originate", "act", "resync", "screen"


class _Held:
    """A call's signals waiting for the presentation read of ``screen``'s party (token ``token``)."""

    __slots__ = ("token", "screen", "channel", "signals", "hangup")

    def __init__(self, token: int, screen: Screen, channel: str, signal: Any) -> None:
        self.token = token
        self.screen = screen
        self.channel = channel
        self.signals = [signal]
        self.hangup: tuple[int | None] | None = None  # (cause,) of a Hangup that came meanwhile


class CallControl:
    """The core the bridge feeds; see the module docstring.

    ``lines``: the ``[lines.NAME]`` entries (``LineConfig``: ``channel``,
    ``context``, ``callerid``, ``device``), replaced at run time with
    :meth:`set_lines`. ``originate_timeout``: seconds a lineMakeCall rings
    the user's phone. ``looks_up_contacts``: whether any plugin answers
    contact lookups (without one, no lookup and no ``contact`` ever).
    """

    def __init__(
        self,
        model: CallModel,
        lines: Mapping[str, Any],
        *,
        originate_timeout: float = 30.0,
        looks_up_contacts: bool = True,
        pbx: str = "default",
        owners: Any = None,
    ) -> None:
        self.model = model
        #: The PBX this control is for, and the server's :class:`~.lines.LineOwners`
        #: (None: every line is this PBX's); signals about other PBXs' lines are refused.
        self.pbx = pbx
        self.owners = owners
        self.lines: Mapping[str, Any] = {}
        self._device_lines: frozenset[str] = frozenset()
        self.set_lines(lines)
        self.originate_timeout = originate_timeout
        self.looks_up_contacts = looks_up_contacts
        self._link = DOWN
        self._told: bool | None = None  # the last link state clients were told
        self._resync_token: int | None = None
        #: ``now`` of the last login (the resync's channel list is as of about then).
        self.established_at: float | None = None
        self._next_token = 1
        # token -> (what, action name, detail): actions sent and not answered yet.
        self._pending: dict[int, tuple[str, str, Any]] = {}
        # ActionID of an Originate -> ChannelId we gave the call.
        self._originates: dict[str, str] = {}
        # Uniqueid -> Channel from Newchannel (and the resync's list): the
        # channel names Asterisk reported, for calls whose own events named none.
        self._seen_channels: dict[str, str] = {}
        # (device, Uniqueid) of a call -> its signals held for a presentation read.
        self._held: dict[tuple[bool, str], _Held] = {}
        # (device, Uniqueid) of a call -> party number/name -> verdict (parties.ALLOWED or a hiding flag).
        self._judged: dict[tuple[bool, str], dict[str, str]] = {}
        #: What the model knows of device channels, read only, with the signals held here counted:
        #: what a mapping that follows calls from channel events is handed with each event.
        self.view: CallsView = model.view(self._held)

    # -- configuration -------------------------------------------------------

    def set_lines(self, lines: Mapping[str, Any]) -> None:
        """Use these ``[lines.NAME]`` entries from now on (a configuration reload).

        Calls under way keep their handles and states; requests and contact
        decisions made after this read the new entries.
        """
        self.lines = dict(lines)
        # Lines only their device's channel events may drive (core/sources.py).
        self._device_lines = frozenset(name for name, conf in self.lines.items() if getattr(conf, "device", None))

    # -- link ------------------------------------------------------------------

    @property
    def link_up(self) -> bool:
        """In service: logged in and resynchronised (requests may be sent)."""
        return self._link == UP

    def link_lost(self, now: float) -> Effects:
        """The AMI link went down: out of service at once; pending Originates are forgotten."""
        was_up = self._link == UP
        self._link = DOWN
        self._resync_token = None
        self._originates.clear()
        return self._tell(False) if was_up else Effects()

    def link_established(self, now: float) -> Effects:
        """Logged in (again): ask Asterisk which channels exist before going in service."""
        self._link = RESYNCING
        self.established_at = now
        token = self._token(_RESYNC, "CoreShowChannels", None)
        self._resync_token = token
        fx = Effects()
        fx.send(token, actions.coreshowchannels())
        return fx

    def _tell(self, up: bool) -> Effects:
        if self._told is up:
            return Effects()
        self._told = up
        param = INSERVICE if up else OUTOFSERVICE
        return Effects((TapiEvent(DEVSTATE, None, None, param),))

    def is_resync(self, token: int) -> bool:
        """Is ``token`` the resync's ``CoreShowChannels``? (Its answer goes to the
        mapping plugins' ``asttapi_map_channel_list`` too, see :meth:`answered`.)"""
        return token == self._resync_token

    def _resynced(self, token: int, response: Any, error: Exception | None, now: float,
                  signals: Iterable[Any]) -> Effects:
        if token != self._resync_token:
            return Effects()  # the link dropped again meanwhile
        self._resync_token = None
        self._link = UP
        if error is not None:
            # Without the channel list stale calls cannot be ended yet, but the
            # link works: go in service; the hangup grace and max age still clean up.
            fx = self._tell(True)
            fx.diagnose(("resync", "failed"), "CoreShowChannels after reconnect failed ({error}); going in"
                        " service without resync", "error", error=_describe(error))
            return fx
        messages = response if isinstance(response, list) else []
        for message in messages:
            if message.kind == "event" and message.name.lower() in ("coreshowchannel", "status"):
                self._newchannel(message, now)
        live = normalise.live_channels(messages)
        # The mappings' own picture first (device lines adopt listed channels
        # and end theirs that are gone, with their own events), then the
        # safety net for every call whose channel is gone.
        fx = self.signals(signals, now)
        fx.merge(self.model.resync(live, now))
        ended = sum(1 for e in fx if e.param == IDLE)
        if ended:
            fx.diagnose(("resync", "ended"), "Resync after (re)connect: {n} call(s) ended because their"
                        " channels are gone", "info", n=ended)
        fx.merge(self._tell(True))
        fx.diagnose(("resync", "done"), "PBX link in service ({live} live channel(s))", "info", live=len(live))
        return fx

    # -- facts from the PBX ------------------------------------------------------

    def event_handlers(self) -> dict[str, Any]:
        """The core's handler of each of :data:`CORE_EVENTS`: ``handler(message, now) -> Effects``.

        The composition puts them in the one route table (``asttapi_server.routes``)
        beside the plugins' mappings; nothing here looks an event name up again.
        """
        return {
            "Hangup": self._hangup,
            "Newchannel": self._newchannel,
            "OriginateResponse": self._originate_response,
        }

    def signals(self, signals: Iterable[Any], now: float) -> Effects:
        """TAPI signals from the mapping plugins, applied in order.

        A :class:`~.effects.Diagnostic` among them (a mapping's report of a
        malformed event) is passed on as one. A signal that is not a device's
        loses the device lines it names (:func:`.sources.guard`), with a
        diagnostic saying so. A :class:`~.legs.DeviceNote` (what a device-line
        mapping learnt of a channel) goes to the model at once, never held
        back with its call's signals.
        """
        fx: Effects | None = None
        device_lines = self._device_lines
        owners = self.owners
        several = owners is not None and not owners.single
        for signal in signals:
            kind = type(signal)
            if kind is Diagnostic:
                out = Effects()
                out.diagnostics = [signal]
            elif kind is DeviceNote:
                self.model.note(signal, now)
                continue
            elif several or (device_lines and not signal.device):
                out = self._admitted(signal, now, several)
            else:
                out = self._signal(signal, now)
            fx = out if fx is None else fx.merge(out)
        if fx is None:
            return Effects()
        if fx:
            self._follow(fx)
        if fx.finished:
            self._forget(fx)
        return fx

    def _admitted(self, signal: Any, now: float, several: bool) -> Effects:
        """One signal after the rules of who may name which line: only this PBX's lines
        (several PBXs, :class:`~.lines.LineOwners`), and no device line unless it is a
        device's signal (:func:`.sources.guard`); what is cut is said in a diagnostic."""
        notes: list[Diagnostic] = []
        if several:
            signal, refused_pbx = self.owners.admit(self.pbx, signal)
            if refused_pbx is not None:
                notes.append(refused_pbx)
        if signal is not None and self._device_lines and not signal.device:
            guarded, refused = sources.guard(signal, self._device_lines)
            if refused:
                notes.append(sources.refusal(signal, refused))
            signal = guarded
        out = self._signal(signal, now) if signal is not None else Effects()
        if notes:
            out.diagnostics = [*(out.diagnostics or ()), *notes]
        return out

    def _signal(self, signal: Any, now: float) -> Effects:
        """One signal to the model, unless its call waits for a presentation read (see the module doc)."""
        if signal.screen is None and not self._held and not self._judged:
            return self.model.apply(signal, now)  # nothing to judge, nothing held, nothing judged
        uid = signal.command.call_id or signal.uniqueid
        if uid is None:
            return self.model.apply(signal, now)
        key = (signal.device, uid)
        held = self._held.get(key)
        if held is not None:
            held.signals.append(signal)
            return Effects()
        judged = self._judged.get(key)
        screen = signal.screen
        if screen is not None and parties.verdict(judged or {}, screen) is None:
            fx = self._read_presentation(key, signal, screen)
            if fx is not None:
                return fx
            judged = self._judged.get(key)
        return self.model.apply(parties.masked(signal, judged or {}), now)

    def _read_presentation(self, key: tuple[bool, str], signal: Any, screen: Screen) -> Effects | None:
        """Getvar of the party's presentation; the call's signals wait. None: it cannot be read
        (no channel named, the link down): the party is hidden as not verified."""
        channel = signal.channel
        action = None
        if channel and self._link != DOWN:
            try:
                action = _checked(actions.getvar, channel, screen.function)
            except TelephonyError:
                action = None
        if action is None:
            parties.judge(self._judged_of(key), screen, parties.UNKNOWN)
            return None
        token = self._token(_SCREEN, action.name, key)
        self._held[key] = _Held(token, screen, channel, signal)
        fx = Effects()
        fx.send(token, action, SCREEN_TIMEOUT)
        return fx

    def _screened(self, token: int, key: tuple[bool, str], response: Any, error: Exception | None,
                  now: float) -> Effects:
        """The presentation read is in: judge the party, let the call's signals through."""
        held = self._held.get(key)
        if held is None or held.token != token:
            return Effects()
        del self._held[key]
        judged = parties.presentation(None if error is not None else _value_of(response))
        parties.judge(self._judged_of(key), held.screen, judged)
        fx = self.signals(held.signals, now)
        if error is not None or judged == parties.UNKNOWN:
            fx.diagnose(("presentation", type(error).__name__ if error is not None else "unreadable"),
                        "Could not read {function} of {channel} ({error}): that party is shown as"
                        " LINECALLPARTYID_UNKNOWN, without number or name", function=held.screen.function,
                        channel=held.channel, error=_describe(error) if error is not None else "no such value")
        if held.hangup is not None:
            again = self._held.get(key)
            if again is not None:
                again.hangup = held.hangup  # held once more (another party to read): replay it then
            else:
                fx.merge(self.model.channel_hangup(key[1], held.hangup[0], now))
        return fx

    def _judged_of(self, key: tuple[bool, str]) -> dict[str, str]:
        judged = self._judged.get(key)
        if judged is None:
            if len(self._judged) >= JUDGED_CALLS:
                del self._judged[next(iter(self._judged))]
            judged = self._judged[key] = {}
        return judged

    def _forget(self, fx: Effects) -> None:
        """Calls that ended (``fx.finished``, not empty) need their verdicts no more."""
        if self._judged:
            for call in fx.finished:
                for uid in call.uniqueids:
                    self._judged.pop((call.device, uid), None)

    def _newchannel(self, message: Any, now: float) -> Effects:
        uid = normalise.uniqueid(message.get("Uniqueid"))
        channel = normalise.channel_name(message.get("Channel"))
        if uid is not None and channel is not None:
            seen = self._seen_channels
            if len(seen) >= SEEN_CHANNELS and uid not in seen:
                del seen[next(iter(seen))]
            seen[uid] = channel
        return Effects()

    def _hangup(self, message: Any, now: float) -> Effects:
        parsed = normalise.hangup(message)
        if parsed is None:
            return Effects()
        uniqueid, cause, _channel = parsed
        self._seen_channels.pop(uniqueid, None)
        for key in ((False, uniqueid), (True, uniqueid)):
            held = self._held.get(key)
            if held is not None:
                held.hangup = (cause,)  # its call is not in the model yet: the safety net waits for it
        fx = self.model.channel_hangup(uniqueid, cause, now)
        if fx.finished:
            self._forget(fx)
        return fx

    def _originate_response(self, message: Any, now: float) -> Effects:
        result = normalise.originate_response(message)
        if result is None:
            return Effects()
        # Asterisk 12+ echoes our ChannelId as Uniqueid; older versions only
        # echo the ActionID, so that is the key that works everywhere.
        channel_id = self._originates.pop(result.action_id, None) if result.action_id else None
        if channel_id is None and result.uniqueid:
            call = self.model.by_uniqueid(result.uniqueid)
            if call is not None and call.channel_id == result.uniqueid:
                channel_id = result.uniqueid
        if channel_id is None:
            return Effects()  # not one of ours
        fx = self.model.originate_response(
            channel_id, result.uniqueid, result.channel, result.success, now, reason=result.reason)
        if not result.success:
            fx.diagnose(("originate", "failed"), "Originate {channel_id} failed (reason {reason})",
                        channel_id=channel_id, reason=result.reason)
        if fx:
            self._follow(fx)
        return fx

    # -- time ------------------------------------------------------------------

    def tick(self, now: float) -> Effects:
        """Run the model's timers due by ``now`` (hangup grace, max age, linger)."""
        fx = self.model.tick(now)
        if fx.finished:
            self._forget(fx)
        return fx

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has work (None: nothing scheduled)."""
        return self.model.next_deadline()

    # -- contact lookups ------------------------------------------------------------

    def _follow(self, fx: Effects) -> None:
        """Start a lookup for each call that shows a caller number not looked up yet
        (no plugin looks contacts up: nothing to start)."""
        if not self.looks_up_contacts:
            return
        for event in fx:
            if event.msg != NEWCALL and event.param != CALLINFO_CALLERID:
                continue
            number = event.callinfo.get("callerid")
            if not number:
                continue
            call = self.model.get(event.call)
            if call is None or call.ended is not None or call.looked_up == number:
                continue  # (a call ended in the same batch, or this number was looked up)
            call.looked_up = number
            if self._customer_number(call, event.callinfo):
                fx.want_contact(ContactWanted(call.handle, number, event.callinfo))

    def _customer_number(self, call: Call, callinfo: Mapping[str, Any]) -> bool:
        """Is the call's callerid worth a contact lookup?

        Not when no plugin looks contacts up (then ``contact`` never appears),
        and not on a call placed from the line's own phone or by lineMakeCall:
        there callerid is the user's own extension, not a customer.
        """
        if not self.looks_up_contacts:
            return False
        if callinfo.get("origin") == "LINECALLORIGIN_OUTBOUND":
            return False
        if call.channel:
            for line in call.seen_lines:
                conf = self.lines.get(line)
                # (a device line's calls are all on its phone's channels, inbound ones too)
                if conf is not None and conf.channel and not getattr(conf, "device", None) and is_phone_channel(
                        call.channel, conf.channel):
                    return False
        return True

    def contact_found(self, handle: int, number: str, contact: Mapping[str, Any] | None, now: float) -> Effects:
        """A lookup ended: found, or not (``None``: no match, a plugin error, the timeout).

        The client hears once that the lookup is over: LINE_CALLINFO OTHER
        with ``contact`` the object or null. Unless the call ended or
        changed caller meanwhile.
        """
        call = self.model.get(handle)
        if call is None or call.ended is not None or call.looked_up != number:
            return Effects()
        return self.model.annotate(handle, "contact", contact or None, now, always=True)

    def adopt_restored(self, calls: Iterable[Call]) -> Effects:
        """Calls the call store put back into the model: followed as if never interrupted.

        Their caller id counts as looked up (its contact, if any, is in the
        restored callinfo), so the restart starts no second lookup. They are
        reconciled with the PBX by the resync every link-up does.
        """
        for call in calls:
            call.looked_up = call.callinfo.get("callerid")
        fx = Effects()
        fx.reschedule = True
        return fx

    # -- client requests ---------------------------------------------------------

    def make_call(self, line: str, number: str, owner: Hashable, now: float) -> tuple[int, Effects]:
        """lineMakeCall: ring the line's phone, then dial ``number`` from it.

        Returns the request's token (its :class:`~.effects.Reply` carries the
        call handle) and the effects; raises :class:`TelephonyError` for a
        request refused before anything is sent.
        """
        self._require_link()
        conf = self.lines.get(line)
        if conf is None or not conf.channel:
            raise TelephonyError(
                "LINEERR_OPERATIONUNAVAIL",
                f"Line {line!r} has no [lines.{line}] entry with a phone channel, so it cannot place calls.",
            )
        dialled = _dial(number, conf)
        number = dialled.number
        call = self.model.make_call(line, number, owner, now, device=bool(getattr(conf, "device", None)))
        fx = self.model.take_events()
        channel_id = call.channel_id
        assert channel_id is not None
        try:
            action = _checked(
                actions.originate,
                conf.channel,
                context=conf.context,
                exten=number,
                priority=1,
                callerid=conf.callerid or None,
                timeout_ms=int(self.originate_timeout * 1000),
                async_=True,
                channel_id=channel_id,
                other_channel_id=channel_id + "-2",
                variables=(("TAPI_LINE", line), ("TAPI_CALL", str(call.handle)),
                           *((("TAPI_EXTENSION", dialled.ext),) if dialled.ext else ())),
            )
        except TelephonyError:
            self.model.originate_response(channel_id, None, None, False, now)
            raise
        token = self._token(_ORIGINATE, action.name, (channel_id, call.handle))
        fx.send(token, action)
        return token, fx

    def drop(self, handle: int, now: float) -> tuple[int, Effects]:
        """lineDrop: hang up the call's channel."""
        self._require_link()
        _call, channel = self._channel_of(handle)
        return self._act(_checked(actions.hangup, channel, 16))

    def blind_transfer(self, handle: int, number: str, now: float) -> tuple[int, Effects]:
        """lineBlindTransfer: send the far party of the call to ``number`` in the line's context.

        Which AMI action depends on whose channel the call is known by. An
        inbound call is known by the caller's channel: ``Redirect`` moves the
        caller. A call made from the user's phone (dialled there, or by
        lineMakeCall) is known by the phone's own channel; redirecting that
        would move the user and drop the customer, so ``BlindTransfer``
        (Asterisk 12+) moves the phone's bridged peer instead, exactly as the
        phone's own transfer key would.
        """
        self._require_link()
        call, channel = self._channel_of(handle)
        conf = self._line_conf_for(call)
        dialled = _dial(number, conf)
        if dialled.ext:
            raise TelephonyError(
                "LINEERR_INVALADDRESS",
                f"{number[:80]!r} needs extension {dialled.ext} dialled after the answer, which a transfer cannot do.",
            )
        number = dialled.number
        if is_phone_channel(channel, conf.channel):
            return self._act(_checked(actions.blind_transfer, channel, conf.context, number))
        return self._act(_checked(actions.redirect, channel, conf.context, number, 1))

    def sent(self, token: int, action_id: str) -> None:
        """The link gave the action of ``token`` this ActionID (before writing it)."""
        pending = self._pending.get(token)
        if pending is not None and pending[0] == _ORIGINATE:
            self._originates[action_id] = pending[2][0]
            self._pending[token] = (_ORIGINATE, pending[1], (*pending[2][:2], action_id))

    def answered(self, token: int, response: Any, error: Exception | None, now: float, *,
                 signals: Iterable[Any] = ()) -> Effects:
        """The answer to the action sent with ``token``: ``response``, or ``error``
        (``ActionFailed``, ``ActionTimeout``, ``LinkDown``, anything else).

        ``signals``: for the resync's answer (:meth:`is_resync`), what the
        mapping plugins made of the channel list, applied before the calls
        whose channels are gone are ended.
        """
        pending = self._pending.pop(token, None)
        if pending is None:
            return Effects()
        what, name, detail = pending
        if what == _RESYNC:
            return self._resynced(token, response, error, now, signals)
        if what == _SCREEN:
            return self._screened(token, detail, response, error, now)
        if error is None:
            fx = Effects()
            fx.reply(token, detail[1] if what == _ORIGINATE else None)
            return fx
        fx = Effects()
        if what == _ORIGINATE:
            channel_id, _handle, *action_id = detail
            if action_id:
                self._originates.pop(action_id[0], None)
            fx = self.model.originate_response(channel_id, None, None, False, now)
        mapped = lineerr_of(error, name)
        if mapped is None:
            fx.diagnose(("action", name, type(error).__name__), "Unexpected error from {action}: {error}",
                        "error", action=name, error=_describe(error))
            mapped = unexpected(name)
        fx.reply(token, error=mapped)
        return fx

    # -- helpers --------------------------------------------------------------------

    def _token(self, what: str, name: str, detail: Any) -> int:
        token = self._next_token
        self._next_token = token + 1
        self._pending[token] = (what, name, detail)
        return token

    def _act(self, action: actions.Action) -> tuple[int, Effects]:
        token = self._token(_ACT, action.name, None)
        fx = Effects()
        fx.send(token, action)
        return token, fx

    def _require_link(self) -> None:
        if self._link != UP:
            raise link_down()

    def _channel_of(self, handle: int) -> tuple[Call, str]:
        call = self.model.get(handle)
        if call is None:
            raise TelephonyError("LINEERR_INVALCALLHANDLE", f"No call with handle {handle}.")
        if call.ended is not None:
            raise TelephonyError("LINEERR_INVALCALLSTATE", f"Call {handle} has no live channel to act on.")
        if not call.confirmed:
            # Restored from the call store and not yet seen in Asterisk's channel list
            # (the resync failed): its channel is only the file's word.
            raise TelephonyError(
                "LINEERR_INVALCALLSTATE",
                f"Call {handle} was restored after a restart and Asterisk has not confirmed its channel yet.",
            )
        channel = call.channel
        if channel is None:
            seen = self._seen_channels
            channel = next((seen[uid] for uid in call.uniqueids if uid in seen), None)
        if channel is None:
            # Never the Uniqueid as a channel name: it may come from dialplan text.
            raise TelephonyError(
                "LINEERR_INVALCALLSTATE",
                f"Call {handle}: Asterisk has not reported its channel name, so it cannot be acted on.",
            )
        return call, channel

    def _line_conf_for(self, call: Call) -> Any:
        for line in call.seen_lines:
            conf = self.lines.get(line)
            if conf is not None:
                return conf
        raise TelephonyError(
            "LINEERR_OPERATIONUNAVAIL",
            "None of the call's lines has a [lines.NAME] entry with a dialplan context to transfer into.",
        )


def is_phone_channel(channel: str, phone: str) -> bool:
    """Is ``channel`` (e.g. ``PJSIP/bob-0000002a``) a channel of the line's phone (``PJSIP/bob``)?

    Asterisk names a channel ``<phone>-<sequence>`` (Local channels add
    ``;1``/``;2``), and the case of the technology may differ (``SIP``/``sip``).
    """
    return channel.lower().startswith(phone.lower() + "-")


def _dial(number: str, conf: Any) -> Dialled:
    """What the line of ``conf`` dials for ``number`` (a number as written or a tel:/callto: URI),
    by its dial rule (:mod:`.dialling`) and the wire rule (:mod:`.dialstring`)."""
    try:
        dialled = to_dial(parse_phone(number), getattr(conf, "dial", None))
        return Dialled(dialable(dialled.number), dialled.ext)
    except ValueError as e:
        raise TelephonyError("LINEERR_INVALADDRESS", f"Not a dialable number {number[:80]!r}: {e}") from None


def _checked(build: Any, *args: Any, **kwargs: Any) -> actions.Action:
    """``build(*args, **kwargs)`` if the wire would take it (no line break, no ``/regex/``
    channel, ...); else the request fails with nothing sent."""
    try:
        action = build(*args, **kwargs)
        action.encode()
    except InvalidActionHeader as e:
        raise TelephonyError("LINEERR_OPERATIONFAILED", f"Not sent to Asterisk: {e}") from None
    return action


def _value_of(response: Any) -> str | None:
    """The ``Value`` of a Getvar answer (None when there is none)."""
    get = getattr(response, "get", None)
    return get("Value") if get is not None else None


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"
