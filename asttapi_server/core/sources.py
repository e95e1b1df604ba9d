"""One line, one source: which facts may drive which line.

A device line (``[lines.NAME] device = "PJSIP/201"``) follows its phone's
channel events (:mod:`.device_lines`, signals with ``device=True``); every
other line follows the dialplan's TAPI UserEvents. Two pictures of one call
would fight over its state, so a signal that is not a device's may not name
a device line: those names are taken out here, in the core
(:meth:`.control.CallControl.signals`), whichever plugin made the signal
and whatever the hook order. What is left drives the dialplan's own call,
even on a device channel's Uniqueid: the model keeps a device line's call
and a dialplan's call on one Uniqueid apart (``TapiSignal.device``).

Pure: no clock, no logging; a refusal comes back as a
:class:`~.effects.Diagnostic` for the adapter to log, throttled.
"""

from __future__ import annotations

from dataclasses import replace

from . import grammar as G
from .effects import Diagnostic

__all__ = ["guard", "refusal"]


def guard(signal: G.TapiSignal, device_lines: frozenset[str]) -> tuple[G.TapiSignal | None, tuple[str, ...]]:
    """``signal`` (not a device's) with the device lines taken out.

    A UserEvent may not name a device line (``LINE_NEWCALL bob``,
    ``[~ID&bob] ...``, ``[bob] LINE_LINEDEVSTATE``): those names are taken
    out; a ``!bob`` exclusion stays. Returns the signal to apply (None:
    nothing is left) and the device lines it named, for the log.
    """
    cmd = signal.command
    newcall = cmd.verb == G.NEWCALL
    named = cmd.args if newcall else cmd.lines  # LINE_NEWCALL names its lines as arguments
    refused = tuple(line for line in named if line in device_lines)
    if not refused:
        return signal, ()
    kept = tuple(line for line in named if line not in device_lines)
    if not kept:
        return None, refused
    if newcall:
        raw = G.text_of(cmd.call_id, (), (), G.NEWCALL, kept)
        return replace(signal, command=replace(cmd, args=kept, raw=raw)), refused
    raw = G.text_of(cmd.call_id, kept, cmd.excluded, cmd.verb, cmd.args)
    return replace(signal, command=replace(cmd, lines=kept, raw=raw)), refused


def refusal(signal: G.TapiSignal, refused: tuple[str, ...]) -> Diagnostic:
    """The log line for a signal whose device lines :func:`guard` took out.

    One dialplan line repeats on every call: keyed by (line set, verb), so the
    adapter logs each at most once a minute.
    """
    return Diagnostic(
        ("device line named by a UserEvent", refused, signal.command.verb),
        "TAPI UserEvent {raw!r} names device line(s) {lines}: ignored for them (a device"
        " line's calls come from its phone's channel events only)",
        {"raw": G.quoted(signal.command), "lines": ", ".join(refused)},
    )
