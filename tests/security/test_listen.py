"""Item 10 of issue 11 (listeners): private unix sockets and TLS 1.2+ with forward-secret AEAD suites.

Real sockets on loopback against ``tests.clients.serve`` (which listens through
``asttapi_server.clients.listen.server_endpoint``, as the service does).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import threading

import pytest

from asttapi_server.clients.listen import TLS12_CIPHERS, with_safe_defaults
from tests.clients.conftest import Server

from .tlsutil import make_cert

pytestmark = pytest.mark.slow


@pytest.fixture
def serve():
    servers: list[Server] = []

    def start(endpoint: str, users: dict | None = None) -> Server:
        s = Server(endpoint, users)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def test_unix_endpoint_gets_mode_0660_unless_it_says_otherwise():
    assert with_safe_defaults("unix:/run/a.sock") == "unix:/run/a.sock:mode=660"
    assert with_safe_defaults("unix:/run/a.sock:mode=600") == "unix:/run/a.sock:mode=600"
    assert with_safe_defaults("tcp:5039") == "tcp:5039"


@pytest.mark.parametrize("suffix, mode", [("", 0o660), (":mode=600", 0o600)])
def test_unix_listener_is_not_world_writable(serve, tmp_path, suffix, mode):
    # The issue: "a unix: listener is world-writable" (Twisted's default 0666).
    path = tmp_path / "asttapi.sock"
    serve(f"unix:{path}{suffix}")
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    with socket.socket(socket.AF_UNIX) as s:  # and it still serves
        s.connect(str(path))
        assert json.loads(s.makefile().readline())["method"] == "hello"


class _Control:
    """A permissive Python TLS server: proves a restricted client can offer its suite at all."""

    def __init__(self, key, cert) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.load_cert_chain(cert, key)
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as s:
                    s.sendall(b"ok\n")
            except (ssl.SSLError, OSError):
                pass

    def close(self) -> None:
        self.sock.close()


def _client(cert, ciphers: str | None, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert))
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if ciphers is not None:
        ctx.set_ciphers(ciphers + ":@SECLEVEL=0")
    return ctx


def _handshake(ctx: ssl.SSLContext, port: int) -> tuple[str, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.version(), s.cipher()[0]


WEAK = [
    ("AES128-SHA", "static RSA, CBC-SHA1"),
    ("AES256-GCM-SHA384", "static RSA key exchange"),
    ("ECDHE-RSA-AES128-SHA", "CBC with SHA1"),
    ("ECDHE-RSA-AES256-SHA384", "CBC"),
]


@pytest.fixture
def tls_pair(serve, tmp_path):
    key, cert = make_cert(tmp_path)
    srv = serve(f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    control = _Control(key, cert)
    yield srv, control, cert
    control.close()


@pytest.mark.parametrize("cipher, why", WEAK)
def test_tls12_without_forward_secrecy_or_aead_is_refused(tls_pair, cipher, why):
    # The issue: "TLS 1.2 accepts static-RSA and CBC-SHA1 suites (no forward secrecy)".
    srv, control, cert = tls_pair
    ctx = _client(cert, cipher, ssl.TLSVersion.TLSv1_2)
    assert _handshake(ctx, control.port) == ("TLSv1.2", cipher)  # the client can offer it...
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _handshake(ctx, srv.port)  # ...and our server refuses it


@pytest.mark.parametrize(
    "ciphers, version, expected",
    [
        (None, None, "TLSv1.3"),
        ("ECDHE-RSA-AES128-GCM-SHA256", ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
        ("ECDHE-RSA-AES256-GCM-SHA384", ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
        ("ECDHE-RSA-CHACHA20-POLY1305", ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
    ],
)
def test_good_clients_succeed_and_get_hello(tls_pair, ciphers, version, expected):
    srv, _control, cert = tls_pair
    ctx = _client(cert, ciphers, version)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert s.version() == expected
            if ciphers:
                assert s.cipher()[0] == ciphers
            assert json.loads(s.makefile().readline())["method"] == "hello"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_versions_are_refused(tls_pair, version):
    srv, _control, cert = tls_pair
    ctx = _client(cert, "ALL", version)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _handshake(ctx, srv.port)


def test_sslmethod_is_refused_at_config_time(tmp_path):
    from asttapi_server.config import load_config
    from asttapi_server.errors import ConfigError

    key, cert = make_cert(tmp_path)
    path = tmp_path / "a.toml"
    path.write_text(f"[server]\nlisten = ['ssl:5040:privateKey={key}:certKey={cert}:sslmethod=TLSv1_METHOD']\n")
    with pytest.raises(ConfigError, match="sslmethod= is not supported"):
        load_config(str(path))


def test_cipher_string_names_only_forward_secret_aead_suites():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers(TLS12_CIPHERS)
    names = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert names and all(n.startswith(("ECDHE-", "DHE-")) and ("GCM" in n or "CHACHA20" in n) for n in names), names
