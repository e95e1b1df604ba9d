"""The plugins' face of the server: the ``app`` every hook is given.

A plugin gets this small object, not the bridge: what it may rely on is
written here and nowhere else, and the server's parts behind it (the bridge,
the core, the link, a PBX or several) may change without breaking a plugin.
Documented for plugin authors in ``docs/plugins.md`` ("The plugin context").

===========================  ==========================================================
``app.config``               the running ``Config`` (a reload replaces it; read it
                             when you need it, do not keep parts of it)
``app.clock``                the ``IReactorTime`` (``seconds()``, ``callLater``)
``app.now()``                ``app.clock.seconds()``: the server's time, in seconds
``app.call(handle)``         the ``Call`` with that handle (live or lingering), or
                             ``None``; read it, never change it
``app.drop(handle)``         hang the call up (``lineDrop``): ``Deferred[None]``,
                             failing with ``TelephonyError`` (its ``lineerr``)
``app.blind_transfer(h, n)`` send the call's far party to number ``n``
                             (``lineBlindTransfer``): ``Deferred[None]``, as ``drop``
``app.pbx(handle)``          the name of the PBX the call is on (``[pbx.NAME]``,
                             ``"default"`` for ``[ami]``), or ``None``: a Uniqueid
                             names a call only together with its PBX
``app.model``                kept for plugins written before this object (the hooks
                             documented ``app.model``); use ``app.call(handle)``
===========================  ==========================================================

Actions go through the same core as a client's requests (the same checks,
the same LINEERR answers), so a plugin cannot do what a client could not.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

__all__ = ["PluginContext"]


class PluginContext:
    """What a plugin may use of the running server (see the module docstring).

    ``telephony``: the requests side (``drop``, ``blind_transfer``, ``model``,
    and ``config``, the running configuration: the bridge or the switchboard,
    whose reloads replace it); ``clock``: the reactor's time.
    """

    __slots__ = ("_telephony", "_clock")

    def __init__(self, telephony: Any, clock: Any) -> None:
        self._telephony = telephony
        self._clock = clock

    def __repr__(self) -> str:
        return "<asttapi PluginContext>"

    @property
    def config(self) -> Any:
        """The running ``Config`` (the one after the last reload)."""
        return self._telephony.config

    @property
    def clock(self) -> Any:
        """The ``IReactorTime`` the server runs on (a ``Clock`` in tests)."""
        return self._clock

    def now(self) -> float:
        """The server's time in seconds (``clock.seconds()``), the one the core's ``now`` is."""
        return self._clock.seconds()

    def call(self, handle: int) -> Any:
        """The call with this handle (live, or lingering after its end), or None. Read only."""
        return self._telephony.model.get(handle)

    def drop(self, handle: int) -> Deferred:
        """Hang the call up, as a client's ``lineDrop``: fires with None, or fails with
        ``TelephonyError`` (``.lineerr``: LINEERR_INVALCALLHANDLE, LINEERR_DISCONNECTED, ...)."""
        return self._telephony.drop(handle)

    def blind_transfer(self, handle: int, number: str) -> Deferred:
        """Send the call's far party to ``number``, as a client's ``lineBlindTransfer``."""
        return self._telephony.blind_transfer(handle, number)

    def pbx(self, handle: int) -> str | None:
        """The name of the PBX the call with this handle is on (``"default"`` with ``[ami]``),
        or None (no such call). Two Asterisks may hand out the same Uniqueid: name a call to
        the outside by its Uniqueid and its PBX."""
        pbx_of = getattr(self._telephony, "pbx_of", None)
        if pbx_of is not None:
            return pbx_of(handle)
        return getattr(self._telephony, "pbx_name", "default") if self.call(handle) is not None else None

    @property
    def model(self) -> Any:
        """The call model. Kept for plugins written when ``app`` was the bridge (the hooks
        documented ``app.model``); new code reads calls with :meth:`call`."""
        return self._telephony.model
