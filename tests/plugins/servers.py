"""Real directory servers for the contact plugins' tests: OpenLDAP's slapd and Radicale.

Each is the Debian package's binary (``.ci/run`` installs the packages when
missing), started by the test in a temporary folder on a loopback port the
OS picked, and stopped by it. A test module whose server is missing skips
with the reason. Nothing here is downloaded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SLAPD = shutil.which("slapd") or ("/usr/sbin/slapd" if os.access("/usr/sbin/slapd", os.X_OK) else None)
SLAPADD = shutil.which("slapadd") or ("/usr/sbin/slapadd" if os.access("/usr/sbin/slapadd", os.X_OK) else None)
RADICALE = shutil.which("radicale")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

#: Waiting for a server to listen (the event), bounded.
START_TIMEOUT = 20.0


def need_slapd() -> None:
    missing = [n for n, p in (("slapd", SLAPD), ("slapadd", SLAPADD)) if p is None]
    if not (SCHEMA_DIR / "inetorgperson.schema").is_file():
        missing.append(str(SCHEMA_DIR / "inetorgperson.schema"))
    if missing:
        pytest.skip(f"needs OpenLDAP's slapd (Debian packages slapd and ldap-utils; .ci/run installs them): "
                    f"missing {', '.join(missing)}")


def need_radicale() -> None:
    if RADICALE is None:
        pytest.skip("needs Radicale (Debian package radicale; .ci/run installs it): no radicale on PATH")


def free_port() -> int:
    """A loopback port the OS says is free now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A loopback port nobody listens on: connecting is refused at once."""
    return free_port()


def _wait_listening(process: subprocess.Popen, ports: list[int], log: Path) -> bool:
    """True once every port accepts a connection; False if the process died first."""
    deadline = time.monotonic() + START_TIMEOUT
    waiting = list(ports)
    while waiting:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", waiting[0]), timeout=1.0):
                waiting.pop(0)
                continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"server did not listen on {ports} within {START_TIMEOUT}s: {log.read_text()[-2000:]}")
        time.sleep(0.02)  # polling the port: the event is "it accepts"
    return True


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- slapd ---------------------------------------------------------------------

#: Hand-written for these tests: the Active Directory attributes the plugin
#: reads by default (company, ipPhone, otherTelephone) that OpenLDAP's
#: schemas lack, in OpenLDAP's experimental OID arc, on an auxiliary class.
AD_LIKE_SCHEMA = """\
attributetype ( 1.3.6.1.4.1.4203.666.11.24.1 NAME 'company'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{64} SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.4203.666.11.24.2 NAME 'ipPhone'
  EQUALITY telephoneNumberMatch SUBSTR telephoneNumberSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.50{64} )
attributetype ( 1.3.6.1.4.1.4203.666.11.24.3 NAME 'otherTelephone'
  EQUALITY telephoneNumberMatch SUBSTR telephoneNumberSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.50{64} )
objectclass ( 1.3.6.1.4.1.4203.666.11.24.4 NAME 'adLikePerson' AUXILIARY
  MAY ( company $ ipPhone $ otherTelephone ) )
"""


class Slapd:
    """One slapd with an mdb database, a root DN, and a reader account (a bind DN with a password).

    ``size_limit`` applies to everyone but the root DN, except to paged
    searches (``size.prtotal=unlimited``): an unpaged read of more entries
    fails, as it does on Active Directory (MaxPageSize 1,000).
    """

    SUFFIX = "dc=example,dc=org"
    ROOT_DN = "cn=admin,dc=example,dc=org"
    ROOT_PASSWORD = "root secret"
    READER_DN = "cn=reader,ou=system,dc=example,dc=org"
    READER_PASSWORD = "reader secret 1"
    PEOPLE = "ou=people,dc=example,dc=org"

    def __init__(self, folder: Path, *, size_limit: int = 1000, tls: tuple[Path, Path] | None = None,
                 anonymous_read: bool = True, ad_like: bool = True) -> None:
        need_slapd()
        self.folder = folder
        self.size_limit = size_limit
        self.tls = tls  # (key.pem, cert.pem): ldaps:// listener and StartTLS
        self.anonymous_read = anonymous_read
        self.ad_like = ad_like  # False: OpenLDAP's stock schemas only
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.ldaps_port = 0
        (folder / "db").mkdir(parents=True, exist_ok=True)
        (folder / "ad-like.schema").write_text(AD_LIKE_SCHEMA)
        self.conf = folder / "slapd.conf"
        self.conf.write_text(self._config())
        self._base_loaded = False

    def _config(self) -> str:
        f = self.folder
        tls = ""
        if self.tls is not None:
            key, cert = self.tls
            tls = f"TLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\nTLSCACertificateFile {cert}\n"
        anonymous = "by anonymous read" if self.anonymous_read else "by anonymous none"
        return f"""\
include {SCHEMA_DIR}/core.schema
include {SCHEMA_DIR}/cosine.schema
include {SCHEMA_DIR}/inetorgperson.schema
{f"include {f}/ad-like.schema" if self.ad_like else ""}
modulepath {MODULE_DIR}
moduleload back_mdb
pidfile {f}/slapd.pid
argsfile {f}/slapd.args
sizelimit size.soft={self.size_limit} size.hard={self.size_limit} size.prtotal=unlimited
{tls}
database mdb
maxsize 268435456
suffix "{self.SUFFIX}"
rootdn "{self.ROOT_DN}"
rootpw "{self.ROOT_PASSWORD}"
directory {f}/db
access to attrs=userPassword by anonymous auth by * none
access to * by users read {anonymous}
"""

    def base_ldif(self) -> str:
        return f"""\
dn: {self.SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example Org
dc: example

dn: ou=system,{self.SUFFIX}
objectClass: organizationalUnit
ou: system

dn: {self.READER_DN}
objectClass: person
cn: reader
sn: reader
userPassword: {self.READER_PASSWORD}

dn: {self.PEOPLE}
objectClass: organizationalUnit
ou: people
telephoneNumber: +49 30 9999999

"""

    def load(self, ldif: str) -> None:
        """Add entries before start (slapadd; the base entries come first)."""
        if self.process is not None:
            raise RuntimeError("load() before start(); use modify() on a running server")
        text = ("" if self._base_loaded else self.base_ldif()) + ldif
        self._base_loaded = True
        source = self.folder / "load.ldif"
        source.write_text(text, encoding="utf-8")
        done = subprocess.run([SLAPADD, "-q", "-f", str(self.conf), "-l", str(source)], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"slapadd failed: {done.stderr[-2000:]}")

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def start(self) -> "Slapd":
        if not self._base_loaded:
            self.load("")
        log = self.folder / "slapd.log"
        for _attempt in range(5):  # a port taken between free_port() and the bind: pick again
            self.port = free_port()
            urls = [f"ldap://127.0.0.1:{self.port}/"]
            ports = [self.port]
            if self.tls is not None:
                self.ldaps_port = free_port()
                urls.append(f"ldaps://127.0.0.1:{self.ldaps_port}/")
                ports.append(self.ldaps_port)
            with open(log, "wb") as out:
                self.process = subprocess.Popen([SLAPD, "-d", "0", "-f", str(self.conf), "-h", " ".join(urls)],
                                                stdout=out, stderr=subprocess.STDOUT)
            if _wait_listening(self.process, ports, log):
                return self
            self.process.wait()
        raise RuntimeError(f"slapd did not start: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        _stop(self.process)
        self.process = None

    def modify(self, ldif: str) -> None:
        """Change entries on the running server, as its root DN (ldapmodify)."""
        tool = shutil.which("ldapmodify")
        if tool is None:
            pytest.skip("needs ldapmodify (Debian package ldap-utils; .ci/run installs it)")
        done = subprocess.run([tool, "-x", "-H", self.url, "-D", self.ROOT_DN, "-w", self.ROOT_PASSWORD],
                              input=ldif, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"ldapmodify failed: {done.stderr[-2000:]}")


# -- Radicale ----------------------------------------------------------------


class Radicale:
    """One Radicale (CardDAV) with htpasswd basic auth, a storage folder, and ``USER``'s address book ``contacts``."""

    USER = "alice"
    PASSWORD = "alice secret 1"
    BOOK = "contacts"

    def __init__(self, folder: Path, *, tls: tuple[Path, Path] | None = None) -> None:
        need_radicale()
        self.folder = folder
        self.tls = tls  # (key.pem, cert.pem): https
        self.process: subprocess.Popen | None = None
        self.port = 0
        folder.mkdir(parents=True, exist_ok=True)
        # Radicale fsyncs every card it stores: on a tmpfs that is free (1,000 cards in
        # seconds, not minutes on a busy disk). close() removes it.
        shm = Path("/dev/shm")
        self.storage = (Path(tempfile.mkdtemp(prefix="asttapi-radicale-", dir=shm))
                        if shm.is_dir() and os.access(shm, os.W_OK) else folder / "storage")
        (folder / "users").write_text(f"{self.USER}:{self.PASSWORD}\n")

    def _config(self) -> str:
        f = self.folder
        tls = f"ssl = True\ncertificate = {self.tls[1]}\nkey = {self.tls[0]}\n" if self.tls else ""
        return f"""\
[server]
hosts = 127.0.0.1:{self.port}
{tls}[auth]
type = htpasswd
htpasswd_filename = {f}/users
htpasswd_encryption = plain
delay = 0
[storage]
filesystem_folder = {self.storage}
[rights]
type = owner_only
[web]
type = none
[logging]
level = warning
"""

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def book_url(self) -> str:
        return f"{self.base_url}/{self.USER}/{self.BOOK}/"

    def start(self, port: int | None = None) -> "Radicale":
        log = self.folder / "radicale.log"
        for _attempt in range(5):
            self.port = port or free_port()
            config = self.folder / "config"
            config.write_text(self._config())
            with open(log, "ab") as out:
                self.process = subprocess.Popen([RADICALE, "--config", str(config)], stdout=out, stderr=subprocess.STDOUT)
            if _wait_listening(self.process, [self.port], log):
                return self
            self.process.wait()
            if port:
                break
        raise RuntimeError(f"radicale did not start: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        _stop(self.process)
        self.process = None

    def close(self) -> None:
        """Stop for good: the storage goes too."""
        self.stop()
        shutil.rmtree(self.storage, ignore_errors=True)

    def http(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             password: str | None = None) -> tuple[int, bytes]:
        """One request as ``USER`` (blocking: the tests' own setup, not the plugin)."""
        import base64
        import ssl
        import urllib.error
        import urllib.request

        token = base64.b64encode(f"{self.USER}:{password or self.PASSWORD}".encode()).decode()
        request = urllib.request.Request(f"{self.base_url}{path}", data=body, method=method,
                                         headers={"Authorization": f"Basic {token}", **(headers or {})})
        context = ssl.create_default_context(cafile=str(self.tls[1])) if self.tls else None
        try:
            with urllib.request.urlopen(request, timeout=300, context=context) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def create_book(self, vcards: str) -> None:
        """The address book, holding ``vcards`` (one PUT of the whole collection: Radicale stores each card)."""
        code, body = self.http("PUT", f"/{self.USER}/{self.BOOK}/", vcards.encode(), {"Content-Type": "text/vcard"})
        if code not in (201, 204):
            raise RuntimeError(f"creating the address book: {code} {body[:500]!r}")

    def put(self, name: str, vcard: str) -> None:
        code, body = self.http("PUT", f"/{self.USER}/{self.BOOK}/{name}", vcard.encode(), {"Content-Type": "text/vcard"})
        if code not in (201, 204):
            raise RuntimeError(f"PUT {name}: {code} {body[:500]!r}")

    def delete(self, name: str) -> None:
        code, body = self.http("DELETE", f"/{self.USER}/{self.BOOK}/{name}")
        if code not in (200, 204):
            raise RuntimeError(f"DELETE {name}: {code} {body[:500]!r}")
