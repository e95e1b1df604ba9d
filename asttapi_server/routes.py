"""The one route table: which handlers an AMI event goes to, by its ``Event:`` name.

Built once at composition time (:meth:`asttapi_server.bridge.Bridge.use_plugins`,
again after a reload changed the plugins) from the core's own handlers
(:meth:`asttapi_server.core.control.CallControl.event_handlers`) and the
plugins' mappings (:meth:`asttapi_server.plugin_host.PluginHost.mappers`):
one entry per name, under the one case rule (:func:`asttapi_server.idents.wanted_name`).
The bridge looks each event up once; its names are the events the link's
parser keeps (``service.wanted_events``), so nothing after the framer asks
"is this event wanted" again.

Pure: no Twisted, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from .idents import ByName, wanted_name

__all__ = ["Route", "Routes"]


class Route(NamedTuple):
    """Where one event name goes: the core's handler first, then the plugins' mappings."""

    #: ``core(message, now) -> Effects``, or None when the core does not handle the name.
    core: Callable[[Any, float], Any] | None
    #: The ``asttapi_map_ami_event`` implementations that declared the name, in hook
    #: order (opaque here: the plugin host calls them, ``PluginHost.map_with``).
    mappers: tuple[Any, ...]


class Routes:
    """Name -> :class:`Route`, one entry per name (compared form)."""

    def __init__(self, core: Mapping[str, Callable[[Any, float], Any]],
                 mappers: Mapping[str, Sequence[Any]]) -> None:
        table: dict[str, Route] = {}
        for name, handler in core.items():
            key = wanted_name(name)
            if key in table:
                raise ValueError(f"two core handlers for the AMI event {name!r}")
            table[key] = Route(handler, ())
        for name, impls in mappers.items():
            key = wanted_name(name)
            before = table.get(key, Route(None, ()))
            table[key] = Route(before.core, (*before.mappers, *impls))
        self._table = ByName(table)
        #: The event names some handler wants (compared form): the link's event filter.
        self.names: frozenset[str] = frozenset(table)
        #: ``get(name as Asterisk sent it) -> Route | None``, one cached dict lookup.
        self.get = self._table.get

    def __len__(self) -> int:
        return len(self.names)
