"""How the PBX's identifiers are read: AMI event names and Uniqueids, one rule each.

A leaf of the pure ring: it imports nothing of ours, so the framer
(:mod:`asttapi_server.ami.parser`), the AMI readers
(:mod:`asttapi_server.ami.normalise`) and the core (:mod:`asttapi_server.core`)
all use it without importing each other: ``core`` imports ``ami`` (actions,
readers), never the other way round (``tests/core/test_import_cycles.py``).

* **Event names** compare stripped and lower-cased (:func:`wanted_name`),
  everywhere the server asks "is this event wanted" or "who handles it":
  the parser's filter, the link's deliver decision, the route table
  (:class:`ByName`), metrics' labels.
* **Uniqueids** (:data:`UNIQUEID`): what a ``~id`` of a TAPIEVENT, a
  ``Uniqueid`` header or a stored call's id may be.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["ByName", "MAX_NAME_BYTES", "MAX_NAMES", "UNIQUEID", "wanted_name", "wanted_names"]

V = TypeVar("V")

#: What a ``~id`` may be: an Asterisk Uniqueid (``[systemname-]epoch.seq``) or a
#: ChannelId an Originate gave (ours: ``asttapi-<boot>-<n>``; ARI: a UUID).
#: ASCII letters, digits, ``. _ -``, starting with a letter or digit, at most
#: 150 characters (Asterisk's AST_MAX_UNIQUEID).
UNIQUEID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,149}")

#: Names cached per table (and in the parser's own caches), whatever a PBX sends.
MAX_NAMES = 4096
#: Longer names are not cached: caches stay under 4096 x 64 bytes of keys
#: (real event names are under 40 characters).
MAX_NAME_BYTES = 64

def wanted_name(name: str) -> str:
    """The form an event name is compared in: stripped, ``str.lower``."""
    return name.strip().lower()


def wanted_names(names: Iterable[str] | None) -> frozenset[str] | None:
    """An event filter's names in the compared form (``None``: every event), for the
    link, its protocol and the parser alike. One string is refused: it is not a list of names."""
    if names is None:
        return None
    if isinstance(names, (str, bytes)):
        raise TypeError("an event filter takes a collection of names, not one string")
    return frozenset(wanted_name(str(n)) for n in names)


class _Answers(dict):
    """A :class:`ByName`'s answers per name as sent: a hit is a plain dict lookup (in C, no
    Python frame per event); a name not met yet is worked out once, by :meth:`__missing__`."""

    __slots__ = ("_table",)

    def __init__(self, table: Mapping[str, Any]) -> None:
        super().__init__()
        self._table = table

    def __missing__(self, name: str) -> Any:
        hit = self._table.get(wanted_name(name))
        if len(self) < MAX_NAMES and len(name) <= MAX_NAME_BYTES:
            self[name] = hit
        return hit


class ByName(Generic[V]):
    """A table keyed by AMI event name under the one case rule (:func:`wanted_name`).

    ``get`` takes the name as Asterisk sent it and answers None for a name not
    in the table; the answer per sent name is cached (bounded by
    :data:`MAX_NAMES`), so the hot path is one dict lookup, made in C.
    """

    def __init__(self, table: Mapping[str, V]) -> None:
        self._table = {wanted_name(str(k)): v for k, v in table.items()}
        #: ``get(name) -> V | None``: the cache's own ``__getitem__`` (a miss goes to ``__missing__``).
        self.get: Callable[[str], V | None] = _Answers(self._table).__getitem__

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self._table)

    def names(self) -> frozenset[str]:
        """Every name in the table, in the compared form."""
        return frozenset(self._table)
