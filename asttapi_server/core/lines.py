"""Which PBX owns which line, pure.

A line belongs to one PBX. ``[lines.NAME] pbx = "branch"`` pins it (a device
line must be pinned when there are several PBXs, config.py checks that). A
dialplan line no table pins belongs to the first PBX whose TAPIEVENTs name it
(:meth:`LineOwners.admit` claims it then); while the server runs, a second
PBX naming the same line is refused for it, with a
:class:`~.effects.Diagnostic` the adapter logs at most once a minute per kind.
With a single PBX every line is that PBX's, and :meth:`admit` is never asked
(``single``), so the one-PBX hot path pays nothing.

The owners decide where ``lineMakeCall`` goes (:meth:`owner`) and which open
lines a PBX's LINE_LINEDEVSTATE reaches (:meth:`follows`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from .constants import NEWCALL
from .effects import Diagnostic
from .grammar import text_of

#: Lines claimed by TAPIEVENTs kept at most (line names are the PBX's text); past it an
#: unpinned line a PBX names is admitted without being claimed.
MAX_CLAIMS = 65536


class LineOwners:
    """The PBX of every line: pinned by the configuration, else claimed by the first PBX naming it."""

    def __init__(self, pbxs: Iterable[str], pinned: Mapping[str, str] | None = None) -> None:
        self.pbxs: tuple[str, ...] = ()
        self.pinned: dict[str, str] = {}
        self._claimed: dict[str, str] = {}
        self.single = True
        self.reconfigure(pbxs, pinned or {})

    @classmethod
    def from_config(cls, config: Any) -> "LineOwners":
        """From ``config.Config``: its PBXs and every ``[lines.NAME] pbx``."""
        return cls(config.pbx_configs(), pinned_lines(config))

    def reconfigure(self, pbxs: Iterable[str], pinned: Mapping[str, str]) -> None:
        """New PBXs and pins (a reload): claims of a PBX that is gone, and claims a pin now
        contradicts, are forgotten (the line's next TAPIEVENT claims it again)."""
        self.pbxs = tuple(pbxs)
        self.single = len(self.pbxs) <= 1
        self.pinned = {line: pbx for line, pbx in pinned.items() if pbx in self.pbxs}
        self._claimed = {line: pbx for line, pbx in self._claimed.items()
                         if pbx in self.pbxs and line not in self.pinned}

    def owner(self, line: str) -> str | None:
        """The PBX of ``line``: pinned, claimed, or the only one; None while no PBX has named it."""
        if self.single:
            return self.pbxs[0] if self.pbxs else None
        return self.pinned.get(line) or self._claimed.get(line)

    def follows(self, line: str, pbx: str) -> bool:
        """Does ``line``'s device state follow ``pbx``'s link? (Its own PBX's, or, for a line
        no PBX has named yet, every PBX's: such a line is in service while any PBX is.)"""
        owner = self.owner(line)
        return owner is None or owner == pbx

    def lines_of(self, pbx: str) -> list[str]:
        """The lines pinned to or claimed by ``pbx`` (with a single PBX: its pinned ones only)."""
        return [line for line, owner in (*self.pinned.items(), *self._claimed.items()) if owner == pbx]

    def claim(self, pbx: str, line: str) -> bool:
        """``pbx`` names ``line``: True if the line is (now) ``pbx``'s."""
        owner = self.pinned.get(line) or self._claimed.get(line)
        if owner is None:
            if not self.single and len(self._claimed) < MAX_CLAIMS:
                self._claimed[line] = pbx
            return True
        return owner == pbx

    def admit(self, pbx: str, signal: Any) -> tuple[Any | None, Diagnostic | None]:
        """The part of ``signal`` (a TapiSignal from ``pbx``) about ``pbx``'s own lines.

        The lines it names (its spec's, and a LINE_NEWCALL's list) that
        another PBX owns are cut out of it, with a diagnostic; a signal left
        naming no line is dropped (None). A signal naming no line at all (it
        is about its call's lines, which are this PBX's call's) passes.
        """
        command = signal.command
        newcall = command.verb == NEWCALL
        named = (*command.lines, *command.args) if newcall else command.lines
        refused: list[str] = []
        for line in named:
            if not self.claim(pbx, line) and line not in refused:
                refused.append(line)
        if not refused:
            return signal, None
        owners = sorted({self.owner(line) or "?" for line in refused})
        diagnostic = Diagnostic(
            ("line of another PBX", pbx),
            "PBX {pbx} named line(s) {lines} in a TAPI event, but they belong to PBX {owners}: ignored for them"
            " (pin a line with [lines.NAME] pbx = \"...\")",
            {"pbx": pbx, "lines": ", ".join(refused), "owners": ", ".join(owners)},
        )
        lines = tuple(line for line in command.lines if line not in refused)
        args = tuple(line for line in command.args if line not in refused) if newcall else command.args
        if not args if newcall else (command.lines and not lines):
            return None, diagnostic
        raw = (text_of(command.call_id, (), (), NEWCALL, args) if newcall
               else text_of(command.call_id, lines, command.excluded, command.verb, command.args))
        kept = dataclasses.replace(command, lines=lines, args=args, raw=raw)
        return dataclasses.replace(signal, command=kept), diagnostic


def pinned_lines(config: Any) -> dict[str, str]:
    """``{line: pbx}`` of the lines whose table names their PBX."""
    return {name: line.pbx for name, line in config.lines.items() if getattr(line, "pbx", None)}
