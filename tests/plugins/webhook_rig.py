"""The call_webhooks plugin fed the way the bridge feeds it: a real CallModel's events and finished calls.

``Rig.tapi(text, uid)`` applies one TAPIEVENT to the model and hands every
event to ``asttapi_client_event`` and every finished call to
``asttapi_call_finished``, in the bridge's order. ``inbound``, ``missed``,
``busy`` and ``outbound`` play whole calls.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import maybeDeferred

from asttapi_server.core.model import CallModel
from asttapi_server.plugin_context import PluginContext
from tests.core.helpers import sig
from tests.plugins.bundled import bundled

call_webhooks = bundled("call_webhooks")


def App(model: CallModel, clock: Any) -> PluginContext:
    """The ``app`` the server gives plugins, around this rig's model and clock."""
    return PluginContext(SimpleNamespace(model=model, config=None), clock)


def inline(job):
    """The outbox's writes in the test's own thread (deterministic)."""
    return maybeDeferred(job)


class Rig:
    def __init__(self, folder: Path, targets: list[dict], *, clock: Any, reactor: Any, region: str = "DE",
                 runner: Any = inline, lines: dict | None = None, seed: int = 7) -> None:
        import random

        config = _Config(folder, lines or {})
        settings = {"outbox": str(folder / "outbox.sqlite"), "region": region, "target": targets}
        self.plugin = call_webhooks.configure(settings, config)
        self.plugin._reactor = reactor
        self.plugin.clock = clock
        self.plugin.runner = runner
        self.plugin.rng = random.Random(seed)
        self.clock = clock
        self.model = CallModel(boot_id="rig", linger=0.0)
        self.app = App(self.model, clock)
        self.plugin.asttapi_startup(self.app)
        #: Added to every event's callinfo and to finished calls' (what the PBX side of issue 21 adds).
        self.extra: dict[str, Any] = {}

    def tapi(self, text: str, uid: str) -> None:
        fx = self.model.apply(sig(text, uid), self.clock.seconds())
        for event in fx:
            self.plugin.asttapi_client_event(event.with_callinfo(**self.extra) if self.extra else event)
        for call in fx.finished:
            call.callinfo.update(self.extra)
            self.plugin.asttapi_call_finished(call)

    def inbound(self, uid: str, caller: str = "0301234567", lines=("line_1", "line_2"), answer: str = "line_1") -> None:
        for line in lines:
            self.tapi(f"LINE_NEWCALL {line}", uid)
        self.tapi("LINE_CALLSTATE LINECALLSTATE_OFFERING", uid)
        self.tapi(f"SET CALLERID {caller}", uid)
        self.tapi("SET CALLERIDNAME Ext Caller", uid)
        self.tapi("LINE_CALLINFO LINECALLINFOSTATE_CALLERID", uid)
        self.tapi(f"[~{uid}&{answer}] LINE_CALLSTATE LINECALLSTATE_CONNECTED", uid)
        for other in lines:
            if other != answer:
                self.tapi(f"[~{uid}&{other}] LINE_CALLSTATE LINECALLSTATE_DISCONNECTED LINEDISCONNECTMODE_PICKUP", uid)
                self.tapi(f"[~{uid}&{other}] LINE_CALLSTATE LINECALLSTATE_IDLE", uid)
        self.tapi("LINE_CALLSTATE LINECALLSTATE_HANGUP", uid)
        self.tapi("LINE_CALLSTATE LINECALLSTATE_IDLE", uid)

    def missed(self, uid: str, caller: str = "0301234567", lines=("line_1",), mode: str = "LINEDISCONNECTMODE_NORMAL"):
        for line in lines:
            self.tapi(f"LINE_NEWCALL {line}", uid)
        self.tapi("LINE_CALLSTATE LINECALLSTATE_OFFERING", uid)
        self.tapi(f"SET CALLERID {caller}", uid)
        self.tapi("LINE_CALLINFO LINECALLINFOSTATE_CALLERID", uid)
        self.tapi(f"LINE_CALLSTATE LINECALLSTATE_DISCONNECTED {mode}", uid)
        self.tapi("LINE_CALLSTATE LINECALLSTATE_IDLE", uid)

    def outbound(self, uid: str, number: str = "02079460958", line: str = "line_1", answered: bool = True) -> None:
        self.tapi(f"LINE_NEWCALL {line}", uid)
        self.tapi("SET CALLORIGIN LINECALLORIGIN_OUTBOUND", uid)
        self.tapi(f"SET CALLEDID {number}", uid)
        self.tapi("LINE_CALLSTATE LINECALLSTATE_DIALTONE", uid)
        self.tapi("LINE_CALLSTATE LINECALLSTATE_PROCEEDING", uid)
        if answered:
            self.tapi("LINE_CALLSTATE LINECALLSTATE_CONNECTED", uid)
            self.tapi("LINE_CALLSTATE LINECALLSTATE_DISCONNECTED LINEDISCONNECTMODE_NORMAL", uid)
        else:
            self.tapi("LINE_CALLSTATE LINECALLSTATE_BUSY", uid)
        self.tapi("LINE_CALLSTATE LINECALLSTATE_IDLE", uid)

    def stop(self):
        return self.plugin.asttapi_shutdown()

    def delivery(self, name: str):
        return self.plugin.deliveries[name]


class _Config:
    """What configure reads of the server's Config: the config file's folder and the lines."""

    def __init__(self, folder: Path, lines: dict) -> None:
        self.source = str(folder / "asttapi.toml")
        self.lines = lines
