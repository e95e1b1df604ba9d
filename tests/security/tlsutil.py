"""A throwaway self-signed certificate for loopback TLS tests (made here; nothing downloaded).

RSA by default: the static-RSA and ECDHE-RSA suites the security tests try
need an RSA key; ``ec=True`` for a smaller, faster one.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
from pathlib import Path


@functools.cache
def _key(ec: bool):
    """One key a process: a 2048-bit RSA key took up to 0.5 s a test, and no test needs its own."""
    if ec:
        from cryptography.hazmat.primitives.asymmetric import ec as curves

        return curves.generate_private_key(curves.SECP256R1())
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_cert(directory: Path, *, ec: bool = False,
              names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> tuple[Path, Path]:
    """``(key.pem, cert.pem)`` in ``directory``: valid for ``names`` (host names
    and IP addresses; 127.0.0.1 and localhost by default) for a day, usable as its own CA file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = _key(ec)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[-1])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([_san(n) for n in names]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _san(name: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
