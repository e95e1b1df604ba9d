"""The whole server wired on fakes: scripted Asterisk bytes in, client JSON lines out.

Real ``AMILink`` + ``AMIProtocol`` (over ``tests.ami.fakes.FakeAsterisk``,
a MemoryReactorClock), the real ``Bridge``, ``CallModel``, plugin host with
the built-in TAPI UserEvent mapping, ``Hub`` and ``ClientFactory``; clients
are ``tests.clients.harness.Conn`` over StringTransport. Deterministic: all
time is the fake reactor's clock.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from asttapi_server.service import build_bridge
from asttapi_server.clients.hub import Hub
from asttapi_server.clients.protocol import ClientFactory
from asttapi_server.config import LineConfig, load_config
from asttapi_server.core.model import CallModel
from asttapi_server.plugin_host import build_plugin_manager
from tests.ami.fakes import FakeAsterisk, Session
from tests.clients.harness import Conn

USER_EVENT = (
    "Event: UserEvent\r\nPrivilege: user,all\r\nChannel: {channel}\r\nChannelState: 4\r\n"
    "ChannelStateDesc: Ring\r\nCallerIDNum: 0301234567\r\nCallerIDName: Ext Caller\r\n"
    "Context: inbound\r\nExten: 100\r\nPriority: 2\r\nUniqueid: {uid}\r\nLinkedid: {uid}\r\n"
    "UserEvent: TAPI\r\nTAPIEVENT: {text}\r\n\r\n"
)


def coreshowchannels_answer(aid: str, channels: tuple[tuple[str, str], ...]) -> bytes:
    """Asterisk's answer to CoreShowChannels (layout of capture 11): channels are (name, uniqueid)."""
    out = f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n"
    for channel, uid in channels:
        out += (f"Event: CoreShowChannel\r\nActionID: {aid}\r\nChannel: {channel}\r\nChannelState: 6\r\n"
                f"ChannelStateDesc: Up\r\nUniqueid: {uid}\r\nLinkedid: {uid}\r\n\r\n")
    out += (f"Event: CoreShowChannelsComplete\r\nActionID: {aid}\r\nEventList: Complete\r\n"
            f"ListItems: {len(channels)}\r\n\r\n")
    return out.encode()


class System:
    def __init__(self, *, send_buffer_bytes: int = 1 << 20, **ami_kw: Any) -> None:
        config = load_config(None, {})
        lines = {"line_1": LineConfig(name="line_1", channel="PJSIP/bob", context="trunklocal")}
        self.config = dataclasses.replace(config, lines=lines)
        self.pbx = FakeAsterisk()
        self.clock = self.pbx.reactor
        self.clock.advance(1_795_674_000)
        ami_kw.setdefault("keepalive", 0)
        self.ami = self.pbx.client(**ami_kw)
        self.model = CallModel(hangup_grace=5.0, max_age=14400.0, linger=30.0)
        self.plugins = build_plugin_manager(self.config.plugins, config=self.config, clock=self.clock)
        self.hub = Hub(ring_size=1000, epoch="faults")
        self.bridge = build_bridge(self.config, self.ami, self.model, self.plugins, self.hub, self.clock)
        self.factory = ClientFactory(self.hub, self.bridge, users={}, clock=self.clock,
                                     send_buffer_bytes=send_buffer_bytes)
        self.session: Session | None = None
        self._port = 50000

    # -- the PBX side ------------------------------------------------------------

    def start(self, channels: tuple[tuple[str, str], ...] = ()) -> Session:
        self.ami.startService()
        return self.come_back(channels)

    def come_back(self, channels: tuple[tuple[str, str], ...] = ()) -> Session:
        """Accept the pending connection, log in (MD5) and answer the resync."""
        self.session = self.pbx.accept()
        self.pbx.login_md5(self.session)
        self.answer_coreshowchannels(channels)
        assert self.bridge.link_up
        return self.session

    def answer_coreshowchannels(self, channels: tuple[tuple[str, str], ...]) -> None:
        """channels: (channel name, uniqueid) pairs that still exist."""
        assert self.session is not None
        (action,) = self.session.actions()
        assert action.name == "CoreShowChannels", action.name
        self.session.send(coreshowchannels_answer(action.action_id, channels))

    def tapi(self, text: str, uid: str, channel: str = "PJSIP/trunk-00000001") -> None:
        assert self.session is not None
        self.session.send(USER_EVENT.format(channel=channel, uid=uid, text=text).encode())

    def pending_actions(self) -> int:
        proto = self.ami.protocol
        return len(proto._pending) if proto is not None else 0

    # -- the client side -----------------------------------------------------------

    def connect(self) -> Conn:
        self._port += 1
        conn = Conn(self.factory, self._port)
        assert conn.read()[0]["method"] == "hello"
        return conn


def events(conn: Conn) -> list[tuple]:
    """(method, call, state/devstate, synthetic) of every notification read so far."""
    out = []
    for m in conn.read():
        if "method" not in m or m["method"] == "hello":
            continue
        p = m["params"]
        out.append((m["method"], p.get("call"), p.get("state") or p.get("devstate") or p.get("infostate"),
                    p.get("synthetic", False)))
    return out
