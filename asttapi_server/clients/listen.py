"""Client listen endpoints with safe defaults.

``server.listen`` takes Twisted endpoint strings, but two of Twisted's
defaults are not what a CTI server wants:

* ``unix:`` sockets are created mode 0666, so every local account could
  place and drop calls. Here they are 0660 (owner and group) unless the
  string says ``mode=``.
* ``ssl:`` accepts, besides TLS 1.2+, static-RSA key exchange and CBC-SHA1
  suites (no forward secrecy). Here an ``ssl:`` endpoint speaks TLS 1.2 or
  later with forward-secret AEAD suites only: ECDHE/DHE with AES-GCM or
  ChaCha20-Poly1305, and the TLS 1.3 suites (all AEAD). DHE needs
  ``dhParameters=``; without it ECDHE is used. ``sslmethod=`` is refused:
  it could only lower this.

Every other endpoint string goes to :func:`twisted.internet.endpoints.serverFromString`.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint

from asttapi_server.clients.auth import _split_endpoint

#: Mode of a ``unix:`` socket whose endpoint string gives none (octal, as Twisted reads it).
UNIX_MODE = "660"

#: OpenSSL cipher string for TLS 1.2: forward-secret key exchange, AEAD only.
#: (TLS 1.3 suites are configured apart by OpenSSL; all of them are AEAD.)
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!PSK:!SRP:!DSS"

_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL)


def with_safe_defaults(description: str) -> str:
    """The endpoint string with ``mode=660`` added to a ``unix:`` one that has no mode."""
    kind, _args, kwargs = _split_endpoint(description)
    if kind == "unix" and "mode" not in kwargs:
        return f"{description}:mode={UNIX_MODE}"
    return description


def server_endpoint(reactor: Any, description: str) -> IStreamServerEndpoint:
    """The endpoint for one ``server.listen`` string (see the module doc)."""
    description = with_safe_defaults(description)
    kind, args, kwargs = _split_endpoint(description)
    if kind != "ssl":
        return serverFromString(reactor, description)
    return _tls_endpoint(reactor, args, kwargs)


def tls_options(private_key: str, cert_key: str | None = None, extra_cert_chain: str | None = None,
                dh_parameters: str | None = None) -> Any:
    """A server ``CertificateOptions``: TLS 1.2+, forward-secret AEAD suites only."""
    from twisted.internet import ssl
    from twisted.python.filepath import FilePath

    cert_pem = FilePath(cert_key or private_key).getContent()
    key_pem = FilePath(private_key).getContent()
    pair = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
    chain = None
    if extra_cert_chain:
        chain = [ssl.Certificate.loadPEM(pem).original for pem in _CERT.findall(FilePath(extra_cert_chain).getContent())]
        if not chain:
            raise ValueError(f"extraCertChain {extra_cert_chain!r} holds no PEM certificate")
    dh = ssl.DiffieHellmanParameters.fromFile(FilePath(dh_parameters)) if dh_parameters else None
    return ssl.CertificateOptions(
        privateKey=pair.privateKey.original,
        certificate=pair.original,
        extraCertChain=chain,
        dhParameters=dh,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(TLS12_CIPHERS),
    )


def _tls_endpoint(reactor: Any, args: list[str], kwargs: dict[str, str]) -> IStreamServerEndpoint:
    known = {"port", "privateKey", "certKey", "extraCertChain", "dhParameters", "interface", "backlog"}
    if "sslmethod" in kwargs:
        raise ValueError("sslmethod= is not supported: TLS 1.2 and later with forward-secret suites are always used")
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"unknown ssl: option {unknown[0]!r}")
    port = kwargs.get("port") or (args[0] if args else None)
    if port is None:
        raise ValueError("ssl: needs a port")
    options = tls_options(
        kwargs.get("privateKey") or (args[1] if len(args) > 1 else "server.pem"),
        kwargs.get("certKey"),
        kwargs.get("extraCertChain"),
        kwargs.get("dhParameters"),
    )
    return SSL4ServerEndpoint(
        reactor, int(port), options, backlog=int(kwargs.get("backlog", 50)), interface=kwargs.get("interface", "")
    )
