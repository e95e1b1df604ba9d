"""The built-in mapping of AstTapi's dialplan UserEvents to TAPI signals, as a plugin.

The dialplan runs ``UserEvent(TAPI,TAPIEVENT: [~${UNIQUEID}&line_1] LINE_CALLSTATE
LINECALLSTATE_CONNECTED)``; Asterisk sends it as ``Event: UserEvent`` with
``UserEvent: TAPI`` (1.2: ``Event: UserEventTAPI``). This plugin normalises the
versions (:func:`asttapi_server.ami.normalise.user_event`), parses the text
(:func:`asttapi_server.core.grammar.parse_tapievent`) and returns one
``TapiSignal``. It is registered always and ``trylast``, so a site plugin that
maps the same events runs first and can override it by returning a list.

The text may hold what an outside caller typed into a caller id (a dialplan
that does not filter it; see docs/security.md), so a text that fails the
grammar creates nothing and is reported as a
:class:`~asttapi_server.core.effects.Diagnostic` in the returned list, keyed
by the kind of problem (never by the text), quoted with ``repr`` (no line
breaks or control characters reach the log) and cut to its first characters.
The server logs it, each kind at most once a minute: this module keeps no
state, no clock and no logger.
"""

from __future__ import annotations

from asttapi_server.ami.actions import scrub
from asttapi_server.ami.normalise import caller_of, user_event
from asttapi_server.core.effects import Diagnostic
from asttapi_server.core.grammar import MAX_LINES, NEWCALL, VERBS, Screen, TapiSignal, clip, parse_tapievent
from asttapi_server.errors import TapiSyntaxError
from asttapi_server.hookspecs import hookimpl

#: Where Asterisk keeps the presentation of the caller a LINE_NEWCALL names (the channel that ran it).
CALLER_PRES = "CALLERID(pres)"
#: ``Event:`` names carrying TAPI user events (1.4+ and 1.2's concatenated form).
EVENT_NAMES = ("UserEvent", "UserEventTAPI")
USER_EVENT_NAME = "TAPI"


@hookimpl(trylast=True)
def asttapi_ami_event_names():
    return EVENT_NAMES


@hookimpl(trylast=True)
def asttapi_map_ami_event(message, app):
    event = user_event(message)
    if event is None or event.name.upper() != USER_EVENT_NAME:
        return None
    if not event.body:
        return [Diagnostic(("tapi_userevent", "no text"),
                           "TAPI UserEvent without TAPIEVENT text on channel {channel}; headers: {headers}",
                           {"channel": event.channel, "headers": clip(repr(scrub(_headers(message))), 400)})]
    max_lines = getattr(getattr(getattr(app, "config", None), "calls", None), "max_lines", MAX_LINES)
    try:
        command = parse_tapievent(event.body, max_lines)
    except TapiSyntaxError as exc:
        # One dialplan typo repeats on every call: one key per kind, throttled by the server.
        return [Diagnostic(("tapi_userevent", _verb_of(event.body)),
                           "Malformed TAPIEVENT {raw!r} on channel {channel} ignored: {error}",
                           {"raw": clip(event.body), "channel": event.channel, "error": exc.reason})]
    if command.verb == NEWCALL:
        # The channel snapshot names the caller: LINE_NEWCALL carries it, so a
        # screen pop needs no second event (read once per call, not per event).
        # The core reads the caller's presentation before it shows them
        # (a withheld number never reaches a client: core/parties.py).
        num, name, exten = caller_of(message)
        screen = Screen(CALLER_PRES, num, name) if (num or name) else None
        return [TapiSignal(command=command, uniqueid=event.uniqueid, channel=event.channel,
                           callerid=num, calleridname=name, exten=exten, screen=screen)]
    return [TapiSignal(command=command, uniqueid=event.uniqueid, channel=event.channel)]


def _headers(message) -> list:
    items = getattr(message, "items", None)
    return list(items()) if callable(items) else [("?", str(message))]


def _verb_of(body: str) -> str:
    """The verb of a TAPIEVENT text, past any ``[spec]``, if it is one the grammar knows.

    A throttle key must not be the bad text itself (a PBX could vary it at
    will): unknown verbs share one key.
    """
    words = body.rpartition("]")[2].split(None, 1)
    verb = words[0].upper() if words else ""
    return verb if verb in VERBS else "unknown verb"
