"""The bridge: where the AMI link, the call model, plugins and clients meet.

It owns no telephony semantics (the call model does) and no wire format (the
AMI and client protocols do). It only routes:

* AMI events in: Hangup and OriginateResponse feed the safety net and
  click-to-dial bookkeeping; events plugins asked for are mapped to TAPI
  signals (the built-in TAPI UserEvent mapping is such a plugin) and applied
  to the model.
* TAPI events out: each goes through the plugins' enrich/filter hook, then to
  the hub; the first caller id of a call starts a contact lookup whose answer
  arrives later as a LINE_CALLINFO (a slow CRM never delays a call event).
* Client requests in: lineMakeCall, lineDrop and lineBlindTransfer become
  Originate, Hangup and Redirect actions. They act only on a channel name
  Asterisk itself reported for the call (the Channel of its own UserEvents,
  of its OriginateResponse, or of the Newchannel that created its Uniqueid),
  never on an id from a TAPIEVENT or a client turned into a channel name: a
  ``~id`` is dialplan text an outside caller may have written, and to the
  Hangup action ``/^/`` is a regex matching every channel.
* Link state: lost -> LINEDEVSTATE_OUTOFSERVICE at once; back -> ask Asterisk
  which channels exist, end the calls that died meanwhile, then
  LINEDEVSTATE_INSERVICE.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .ami import actions, normalise
from .config import Config
from .core.events import TapiEvent
from .core.model import CallModel
from .errors import ActionFailed, ActionTimeout, InvalidActionHeader, LinkDown, TelephonyError
from .core.dialstring import dialable
from .throttle import LogThrottle

log = Logger()

_IDLE = "LINECALLSTATE_IDLE"
_NEW: Any = object()
_CALLERID = "LINECALLINFOSTATE_CALLERID"
#: Newchannel events remembered (Uniqueid -> Channel) for calls whose
#: UserEvents carry no Channel header (Asterisk 1.4 - 11); oldest dropped first.
_SEEN_CHANNELS = 4096


class Bridge:
    """Routes between AMI client, call model, plugins and hub.

    Implements the ``Telephony`` interface the client protocol relies on.
    """

    def __init__(
        self,
        *,
        config: Config,
        ami: Any,
        model: CallModel,
        plugins: Any,
        hub: Any,
        clock: IReactorTime,
    ) -> None:
        self.config = config
        self.ami = ami
        self.model = model
        self.plugins = plugins
        self.hub = hub
        self.clock = clock
        self.link_up = False
        self._wanted = frozenset(plugins.wanted_event_names())
        # Only these events are worth decoding; the AMI parser drops the rest
        # (VarSet, Newexten, ... are most of the traffic) after reading the name.
        ami.set_event_filter(self._wanted | {"Hangup", "OriginateResponse", "Newchannel"})
        self._timer: IDelayedCall | None = None
        self._timer_at: float | None = None
        # Calls under way (handle -> the caller id already looked up, or None):
        # what tells the first IDLE that ends a call from the ones after it,
        # and a repeated CALLINFO from a new caller id.
        self._calls: dict[int, str | None] = {}
        # ActionID of an Originate -> ChannelId we gave the call, so an
        # OriginateResponse finds its call on every Asterisk version.
        self._originates: dict[str, str] = {}
        self._resync_generation = 0
        self._link_up_at: float | None = None
        #: Called after anything that may have changed a call (the call store's ``changed``).
        self.on_change: Callable[[], None] = _nothing
        # Uniqueid -> Channel from Newchannel: the channel names Asterisk
        # reported, for calls whose own events named none (bounded).
        self._seen_channels: dict[str, str] = {}
        # An event that makes us fail once will do so every time the PBX sends it.
        self._failure_log = LogThrottle()
        ami.add_event_observer(self.on_ami_event)
        ami.add_link_observer(self.on_link_state)

    # -- AMI events in -------------------------------------------------------

    def on_ami_event(self, message: Any) -> None:
        """Route one AMI event; never raises (a bad event is logged, not fatal)."""
        name = message.name
        try:
            if name == "Hangup":
                self._on_hangup(message)
            elif name == "Newchannel":
                self._on_newchannel(message)
            elif name == "OriginateResponse":
                self._on_originate_response(message)
            if name in self._wanted:
                now = self.clock.seconds()
                events: list[TapiEvent] = []
                for signal in self.plugins.map_ami_event(message):
                    events.extend(self.model.apply(signal, now))
                if events:
                    self._publish(events)
        except Exception:
            held = self._failure_log.allow(name, self.clock.seconds())
            if held is not None:
                log.failure("Could not handle AMI event {name!r} ({held} more like it since the last report)",
                            name=name[:80], held=held)
        self._reschedule()

    def _on_newchannel(self, message: Any) -> None:
        """Newchannel, and each channel of the resync's CoreShowChannels list
        (a call restored after a restart, or one older Asterisk versions
        never named in its UserEvents): remember the channel Asterisk named."""
        uid = normalise.uniqueid(message.get("Uniqueid"))
        channel = normalise.channel_name(message.get("Channel"))
        if uid is None or channel is None:
            return
        seen = self._seen_channels
        if len(seen) >= _SEEN_CHANNELS:
            del seen[next(iter(seen))]
        seen[uid] = channel

    def _on_hangup(self, message: Any) -> None:
        parsed = normalise.hangup(message)
        if parsed is None:
            return
        uniqueid, cause, _channel = parsed
        self._seen_channels.pop(uniqueid, None)
        events = self.model.channel_hangup(uniqueid, cause, self.clock.seconds())
        if events:
            self._publish(events)

    def _on_originate_response(self, message: Any) -> None:
        result = normalise.originate_response(message)
        if result is None:
            return
        # Asterisk 12+ echoes our ChannelId as Uniqueid; older versions only
        # echo the ActionID, so that is the key that works everywhere.
        channel_id = self._originates.pop(result.action_id, None) if result.action_id else None
        if channel_id is None and result.uniqueid:
            call = self.model.by_uniqueid(result.uniqueid)
            if call is not None and call.channel_id == result.uniqueid:
                channel_id = result.uniqueid
        if channel_id is None:
            return  # not one of ours
        events = self.model.originate_response(
            channel_id, result.uniqueid, result.channel, result.success, self.clock.seconds(),
            reason=result.reason,
        )
        if not result.success:
            log.warn(
                "Originate {channel_id} failed (reason {reason})",
                channel_id=channel_id,
                reason=result.reason,
            )
        if events:
            self._publish(events)

    # -- link state ----------------------------------------------------------

    def on_link_state(self, up: bool) -> None:
        """PBX link went up or down (called by the AMI client)."""
        if not up:
            self._resync_generation += 1
            was_up, self.link_up = self.link_up, False
            self._originates.clear()
            if was_up:
                self._publish(self.model.link_state(False))
            return
        self._resync_generation += 1
        generation = self._resync_generation
        self._link_up_at = self.clock.seconds()
        d = self.ami.send_action("CoreShowChannels")
        d.addCallback(self._resynced, generation)
        d.addErrback(self._resync_failed, generation)

    def _resynced(self, messages: list[Any], generation: int) -> None:
        if generation != self._resync_generation:
            return  # the link dropped again meanwhile
        live = normalise.channel_uniqueids(messages)
        for message in messages:
            if message.kind == "event" and message.name.lower() in ("coreshowchannel", "status"):
                self._on_newchannel(message)
        now = self.clock.seconds()
        # Device lines first: their calls end (or are adopted) with their own events.
        from .mappings import channel_events

        events = []
        for signal in channel_events.resync(self.plugins, messages, now, since=self._link_up_at):
            events.extend(self.model.apply(signal, now))
        events += self.model.resync(live, now)
        if events:
            log.info(
                "Resync after (re)connect: {n} call(s) ended because their channels are gone",
                n=sum(1 for e in events if e.param == "LINECALLSTATE_IDLE"),
            )
        self.link_up = True
        self._publish(events + self.model.link_state(True))
        log.info("PBX link in service ({live} live channel(s))", live=len(live))
        self._reschedule()

    def _resync_failed(self, failure: Failure, generation: int) -> None:
        if generation != self._resync_generation:
            return
        # Without the channel list we cannot end stale calls yet, but the link
        # works: go in service; the hangup grace and max age still clean up.
        log.failure("CoreShowChannels after reconnect failed; going in service without resync", failure)
        self.link_up = True
        self._publish(self.model.link_state(True))

    # -- events out ----------------------------------------------------------

    def _publish(self, events: Iterable[TapiEvent]) -> None:
        self.on_change()
        for event in events:
            out = self.plugins.client_event(event)
            if out is not None:
                self.hub.publish(out)
            if event.call is not None:
                # The model's event, not the plugins' version: bookkeeping
                # must not depend on what a plugin chose to show clients.
                self._follow_call(event)

    def _follow_call(self, event: TapiEvent) -> None:
        handle = event.call
        assert handle is not None
        calls = self._calls
        if event.param == _IDLE:
            call = self.model.get(handle)
            if (call is None or call.ended is not None) and handle in calls:
                del calls[handle]
                if call is not None:
                    self.plugins.call_finished(call)
            return
        looked_up = calls.get(handle, _NEW)
        if looked_up is _NEW:
            call = self.model.get(handle)
            if call is None or call.ended is not None:
                return  # a DISCONNECTED in the batch that ended the call
            calls[handle] = looked_up = None
        number = event.callinfo.get("callerid")
        if not number or looked_up == number:
            return
        if event.msg != "LINE_NEWCALL" and event.param != _CALLERID:
            return
        calls[handle] = number
        if not self._customer_number(handle, event.callinfo):
            return
        d = self.plugins.lookup_contact(number, dict(event.callinfo))
        d.addCallback(self._contact_found, handle, number)

    def _customer_number(self, handle: int, callinfo: Any) -> bool:
        """Is the call's callerid worth a contact lookup?

        Not when no plugin looks contacts up (then ``contact`` never appears),
        and not on a call placed from the line's own phone or by lineMakeCall:
        there callerid is the user's own extension, not a customer.
        """
        if not getattr(self.plugins, "looks_up_contacts", True):
            return False
        if callinfo.get("origin") == "LINECALLORIGIN_OUTBOUND":
            return False
        call = self.model.get(handle)
        if call is not None and call.channel:
            for line in call.seen_lines:
                conf = self.config.lines.get(line)
                # (a device line's calls are all on its phone's channels, inbound ones too)
                if conf is not None and conf.channel and not conf.device and _is_phone_channel(
                        call.channel, conf.channel):
                    return False
        return True

    def _contact_found(self, contact: dict | None, handle: int, number: str) -> None:
        if self._calls.get(handle) != number:
            return  # the call ended or changed caller meanwhile
        # Found or not (no match, a plugin error, the timeout), the client
        # hears once that this lookup is over: ``contact`` is the object or null.
        events = self.model.annotate(handle, "contact", contact or None, self.clock.seconds(), always=True)
        self._publish(events)

    # -- timers --------------------------------------------------------------

    def _reschedule(self) -> None:
        self.on_change()
        deadline = self.model.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self.clock.seconds())
            self._timer = self.clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            events = self.model.tick(self.clock.seconds())
            if events:
                self._publish(events)
        except Exception:
            log.failure("Call model timer failed")
        self._reschedule()

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    # -- Telephony: client requests -----------------------------------------

    def _require_link(self) -> None:
        if not self.link_up:
            raise TelephonyError(
                "LINEERR_DISCONNECTED", "The PBX link is down; try again when the line is back in service."
            )

    def make_call(self, line: str, number: str, owner: Hashable) -> Deferred:
        """lineMakeCall: ring the line's phone, then dial ``number`` from it."""
        try:
            self._require_link()
            line_conf = self.config.lines.get(line)
            if line_conf is None:
                raise TelephonyError(
                    "LINEERR_OPERATIONUNAVAIL",
                    f"Line {line!r} has no [lines.{line}] entry with a phone channel, so it cannot place calls.",
                )
            number = _dialable(number)
        except TelephonyError as e:
            return _failed(e)
        now = self.clock.seconds()
        call = self.model.make_call(line, number, owner, now)
        evicted = self.model.take_events()
        if evicted:
            self._publish(evicted)
        headers = [
            ("Channel", line_conf.channel),
            ("Context", line_conf.context),
            ("Exten", number),
            ("Priority", "1"),
            ("Async", "true"),
            ("Timeout", str(int(self.config.ami.originate_timeout * 1000))),
            ("ChannelId", call.channel_id),
            ("OtherChannelId", call.channel_id + "-2"),
            ("Variable", f"TAPI_LINE={line}"),
            ("Variable", f"TAPI_CALL={call.handle}"),
        ]
        if line_conf.callerid:
            headers.insert(5, ("CallerID", line_conf.callerid))
        d = self.ami.send_action("Originate", headers, on_action_id=self._note_originate(call.channel_id))
        handle = call.handle

        def queued(_response: Any) -> int:
            return handle

        def failed(failure: Failure) -> Failure:
            events = self.model.originate_response(call.channel_id, None, None, False, self.clock.seconds())
            self._publish(events)
            self._reschedule()
            return Failure(_telephony_error(failure, "Originate"))

        d.addCallbacks(queued, failed)
        self._reschedule()
        return d

    def _note_originate(self, channel_id: str):
        def note(action_id: str) -> None:
            self._originates[action_id] = channel_id

        return note

    def _channel_of(self, handle: int) -> tuple[Any, str]:
        call = self.model.get(handle)
        if call is None:
            raise TelephonyError("LINEERR_INVALCALLHANDLE", f"No call with handle {handle}.")
        if call.ended is not None:
            raise TelephonyError("LINEERR_INVALCALLSTATE", f"Call {handle} has no live channel to act on.")
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

    def drop(self, handle: int) -> Deferred:
        """lineDrop: hang up the call's channel."""
        try:
            self._require_link()
            _call, channel = self._channel_of(handle)
        except TelephonyError as e:
            return _failed(e)
        return self._act(actions.hangup, channel, 16)

    def blind_transfer(self, handle: int, number: str) -> Deferred:
        """lineBlindTransfer: send the far party of the call to ``number`` in the line's context.

        Which AMI action depends on whose channel the call is known by. An
        inbound call is known by the caller's channel: ``Redirect`` moves the
        caller. A call made from the user's phone (dialled there, or by
        lineMakeCall) is known by the phone's own channel; redirecting that
        would move the user and drop the customer, so ``BlindTransfer``
        (Asterisk 12+) moves the phone's bridged peer instead, exactly as the
        phone's own transfer key would.
        """
        try:
            self._require_link()
            call, channel = self._channel_of(handle)
            number = _dialable(number)
            line_conf = self._line_conf_for(call)
        except TelephonyError as e:
            return _failed(e)
        if _is_phone_channel(channel, line_conf.channel):
            return self._act(actions.blind_transfer, channel, line_conf.context, number)
        return self._act(actions.redirect, channel, line_conf.context, number, 1)

    def _act(self, build: Any, *args: Any) -> Deferred:
        """Send the action ``build(*args)`` (an :mod:`.ami.actions` builder); a
        value it refuses fails the request, nothing is sent."""
        try:
            action = build(*args)
            action.encode()  # the checks the wire applies (a /regex/ channel), before anything is sent
        except InvalidActionHeader as e:
            return _failed(TelephonyError("LINEERR_OPERATIONFAILED", f"Not sent to Asterisk: {e}"))
        name = action.name
        d = self.ami.send_action(name, list(action.headers))
        d.addCallbacks(lambda _r: None, lambda f: Failure(_telephony_error(f, name)))
        return d

    def _line_conf_for(self, call: Any) -> Any:
        for line in call.seen_lines:
            conf = self.config.lines.get(line)
            if conf is not None:
                return conf
        raise TelephonyError(
            "LINEERR_OPERATIONUNAVAIL",
            "None of the call's lines has a [lines.NAME] entry with a dialplan context to transfer into.",
        )

    # -- restart -------------------------------------------------------------

    def adopt_restored(self, calls: Iterable[Any]) -> None:
        """Calls the call store put back into the model: follow them as if never interrupted.

        Their caller id counts as looked up (its contact, if any, is in the
        restored callinfo), so the restart starts no second lookup, and the
        call's end still reaches ``call_finished``. They are reconciled with
        the PBX by the resync every link-up does (``on_link_state``).
        """
        for call in calls:
            self._calls[call.handle] = call.callinfo.get("callerid")
        self._reschedule()


def _nothing() -> None:
    pass


def _is_phone_channel(channel: str, phone: str) -> bool:
    """Is ``channel`` (e.g. ``PJSIP/bob-0000002a``) a channel of the line's phone (``PJSIP/bob``)?

    Asterisk names a channel ``<phone>-<sequence>`` (Local channels add
    ``;1``/``;2``), and the case of the technology may differ (``SIP``/``sip``).
    """
    return channel.lower().startswith(phone.lower() + "-")


def _dialable(number: str) -> str:
    try:
        return dialable(number)
    except ValueError as e:
        raise TelephonyError("LINEERR_INVALADDRESS", f"Not a dialable number {number[:80]!r}: {e}") from None


def _failed(error: Exception) -> Deferred:
    d: Deferred = Deferred()
    d.errback(Failure(error))
    return d


def _telephony_error(failure: Failure, action: str) -> TelephonyError:
    """Translate an AMI failure into what a client can act on."""
    err = failure.value
    if isinstance(err, TelephonyError):
        return err
    if isinstance(err, LinkDown):
        return TelephonyError("LINEERR_DISCONNECTED", f"The PBX link went down before {action} completed.")
    if isinstance(err, ActionTimeout):
        return TelephonyError("LINEERR_OPERATIONFAILED", f"Asterisk did not answer {action} in time.")
    if isinstance(err, InvalidActionHeader):
        return TelephonyError("LINEERR_OPERATIONFAILED", f"Not sent to Asterisk: {err}")
    if isinstance(err, ActionFailed):
        text = err.message.get("Message") if hasattr(err.message, "get") else str(err.message)
        return TelephonyError("LINEERR_OPERATIONFAILED", f"Asterisk refused {action}: {text}")
    log.failure("Unexpected error from {action}", failure, action=action)
    return TelephonyError("LINEERR_OPERATIONFAILED", f"{action} failed unexpectedly.")

