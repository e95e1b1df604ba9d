"""The [web] table of the configuration."""

from __future__ import annotations

import pytest

from asttapi_server.config import DEMO_WEB_LISTEN, load_config
from asttapi_server.errors import ConfigError


def load(tmp_path, text: str, **overrides):
    path = tmp_path / "asttapi.toml"
    path.write_text(text)
    return load_config(str(path), overrides)


def test_demo_has_the_web_page_on_loopback_by_default_and_a_real_pbx_has_none(tmp_path):
    demo = load_config(None).web
    assert demo.listen == (DEMO_WEB_LISTEN,) == ("tcp:8080:interface=127.0.0.1",) and demo.default_listen
    real = load(tmp_path, '[ami]\nhost = "pbx"\n').web
    assert real.listen == () and not real.default_listen


def test_listen_given_or_turned_off(tmp_path):
    web = load(tmp_path, '[web]\nlisten = ["tcp:9000:interface=127.0.0.1", "unix:/run/asttapi-web.sock"]\n').web
    assert web.listen == ("tcp:9000:interface=127.0.0.1", "unix:/run/asttapi-web.sock")
    assert not web.default_listen  # asked for: a port that is taken stops the server
    assert load(tmp_path, "[web]\nlisten = []\n").web.listen == ()
    assert load(tmp_path, "[web]\nlisten = 'tcp6:9001:interface=\\:\\:1'\n").web.listen == (r"tcp6:9001:interface=\:\:1",)
    assert load_config(None, {"web.listen": ["tcp:0:interface=127.0.0.1"]}).web.listen == ("tcp:0:interface=127.0.0.1",)


def test_origins_are_checked_and_lowercased(tmp_path):
    web = load(tmp_path, '[web]\nallowed_origins = ["https://CRM.example.com", "http://[::1]:3000"]\n'
                         'frame_ancestors = ["https://crm.example.com:8443"]\n').web
    assert web.allowed_origins == ("https://crm.example.com", "http://[::1]:3000")
    assert web.frame_ancestors == ("https://crm.example.com:8443",)


@pytest.mark.parametrize("text, expected", [
    ('[web]\nallowed_origins = ["https://crm.example.com/path"]\n', "key 'web.allowed_origins': expected an origin"),
    ('[web]\nallowed_origins = ["*"]\n', "key 'web.allowed_origins': expected an origin"),
    ("[web]\nframe_ancestors = [\"'self' https://x\"]\n", "key 'web.frame_ancestors': expected an origin"),
    ('[web]\nlisten = ["tcp:notaport"]\n', "key 'web.listen': expected a Twisted server endpoint string"),
    ("[web]\nlisten = 8080\n", "key 'web.listen': expected an endpoint string or a list of them"),
    ('[web]\nport = 8080\n', "unknown key 'web.port' (expected one of: listen, allowed_origins, frame_ancestors, request_timeout, idle_timeout, access_log)"),
    ('web = "on"\n', "key 'web': expected a table [web]"),
])
def test_bad_web_config_is_one_clear_line(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert expected in message and "\n" not in message, message


def test_a_taken_default_port_only_warns_but_an_asked_for_one_stops(tmp_path):
    """The demo's default web port may be in use: the demo still runs, with a warning."""
    from twisted.internet.testing import MemoryReactorClock
    from twisted.logger import formatEvent, globalLogPublisher

    from asttapi_server.service import make_service
    from asttapi_server.web import WebListener

    seen: list = []
    globalLogPublisher.addObserver(seen.append)
    try:
        reactor = MemoryReactorClock()
        app = make_service(load_config(None, {"server.listen": ["tcp:0:interface=127.0.0.1"]}), reactor)
        (listener,) = app.web_listeners
        assert isinstance(listener, WebListener) and not listener.required
        reactor.running = True
        reactor.stopped = False
        reactor.stop = lambda: setattr(reactor, "stopped", True)
        from twisted.internet.error import CannotListenError
        from twisted.python.failure import Failure

        listener._failed(Failure(CannotListenError("127.0.0.1", 8080, OSError("Address already in use"))))
        assert not reactor.stopped
        asked = make_service(load_config(None, {"server.listen": ["tcp:0:interface=127.0.0.1"],
                                                "web.listen": ["tcp:8080:interface=127.0.0.1"]}), reactor)
        asked.web_listeners[0]._failed(Failure(CannotListenError("127.0.0.1", 8080, OSError("in use"))))
        assert reactor.stopped
    finally:
        globalLogPublisher.removeObserver(seen.append)
    lines = [formatEvent(e) for e in seen]
    assert any("No web page: cannot listen on tcp:8080" in line for line in lines)
    assert any("Cannot listen for the web page on tcp:8080" in line and "stopping" in line for line in lines)


def test_page_url_names_what_to_open():
    from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

    from asttapi_server.web import page_url

    class Port:
        def __init__(self, address):
            self.address = address

        def getHost(self):
            return self.address

    assert page_url("tcp:8080:interface=127.0.0.1", Port(IPv4Address("TCP", "127.0.0.1", 8080))) == "http://127.0.0.1:8080/"
    assert page_url("ssl:8443:privateKey=k", Port(IPv6Address("TCP", "::1", 8443))) == "https://[::1]:8443/"
    assert page_url("unix:/run/w.sock", Port(UNIXAddress(b"/run/w.sock"))).endswith("UNIX socket /run/w.sock")


def test_the_demo_page_port_taken_at_start_up_only_warns():
    """A first run on a machine where 8080 is taken (another web server) still
    starts: the bind fails synchronously in startService, and the page that
    nobody asked for is skipped with a warning instead of stopping start-up."""
    import socket

    from twisted.internet import reactor
    from twisted.logger import formatEvent, globalLogPublisher

    from asttapi_server.web import WebListener

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    seen: list = []
    globalLogPublisher.addObserver(seen.append)
    try:
        description = f"tcp:{port}:interface=127.0.0.1"
        optional = WebListener(reactor, description, object(), required=False)
        waiting = optional.whenListening()
        optional.startService()  # no StartupError
        failures: list = []
        waiting.addErrback(failures.append)
        assert len(failures) == 1 and optional.port is None
        required = WebListener(reactor, description, object(), required=True)
        with pytest.raises(SystemExit, match="cannot listen on"):
            required.startService()
    finally:
        globalLogPublisher.removeObserver(seen.append)
        taken.close()
    assert any(f"No web page: cannot listen on {description}" in formatEvent(e) for e in seen)


@pytest.mark.parametrize("count, fragment", [
    (2, "#lines=sales,sip/bob"),
    (21, " (21 lines configured: pick them on the page)"),
])
def test_the_logged_page_url_names_the_configured_lines(tmp_path, count, fragment):
    """Not only the demo's: a configured server's [lines] too (issue 23), unless too many for a link."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock
    from twisted.logger import capturedLogs, formatEvent

    from asttapi_server.service import make_service

    names = ["sales", "sip/bob"] if count == 2 else [f"line_{n}" for n in range(count)]
    lines = "".join(f'[lines."{name}"]\nchannel = "PJSIP/{n}"\n' for n, name in enumerate(names))
    config = load(tmp_path, '[ami]\nhost = "pbx"\n[calls]\nstate_file = ""\n[web]\nlisten = "tcp:8080:interface=127.0.0.1"\n'
                  + lines)
    app = make_service(config, MemoryReactorClock())

    class Port:
        def getHost(self):
            return IPv4Address("TCP", "127.0.0.1", 8080)

    with capturedLogs() as logs:
        app.web_listeners[0]._listening(Port())
    assert [formatEvent(e) for e in logs] == [
        f"Web page: open http://127.0.0.1:8080/{fragment} in a browser (WebSocket at /ws; listening on "
        "tcp:8080:interface=127.0.0.1)"]
