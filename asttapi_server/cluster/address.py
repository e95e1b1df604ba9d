"""Where the cluster's Redis is: the ``[cluster] redis`` URL.

Four forms (docs/scaling.md "Configuration")::

    redis://HOST[:PORT][/DB]                    one Redis server (port 6379, db 0 by default)
    rediss://HOST[:PORT][/DB]                   the same over TLS
    sentinel://HOST[:PORT],HOST[:PORT]/SERVICE[/DB]
                                                the master Sentinel names SERVICE (sentinel port 26379)
    sentinels://HOST[:PORT],.../SERVICE[/DB]    the same, TLS to the Sentinels and the master

An IPv6 address goes in brackets (``redis://[::1]:6379``). No credentials in
the URL: a URL ends up in logs and ``ps`` output, so ``user:password@`` is
refused and the password comes from ``password_file`` (``username`` for an
ACL user). No query string either: every option has its own key.

Pure module: the parse returns a value or raises
:class:`asttapi_server.settings.Expected`, whose text ends the config error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from asttapi_server.settings import Expected

__all__ = ["RedisAddress", "parse_redis_url", "REDIS_PORT", "SENTINEL_PORT"]

REDIS_PORT = 6379
SENTINEL_PORT = 26379
#: Databases a stock Redis has (``databases 16``); a bigger number is accepted only up to this.
MAX_DB = 1 << 20

_WHAT = ("a Redis URL: redis://HOST[:PORT][/DB], rediss://... (TLS), "
         "sentinel://HOST[:PORT],HOST[:PORT]/SERVICE[/DB] or sentinels://... (TLS)")
_HOST = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)")
_SERVICE = re.compile(r"[A-Za-z0-9_.-]{1,128}")


@dataclass(frozen=True)
class RedisAddress:
    """A parsed ``[cluster] redis`` URL.

    ``hosts``: the one Redis server, or the Sentinels to ask (in order);
    ``service``: the master's name in Sentinel (None: no Sentinel).
    """

    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    tls: bool = False
    service: str | None = None

    @property
    def sentinel(self) -> bool:
        return self.service is not None

    def __str__(self) -> str:
        scheme = ("sentinel" if self.sentinel else "redis") + ("s" if self.tls else "")
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts)
        path = f"/{self.service}/{self.db}" if self.sentinel else f"/{self.db}"
        return f"{scheme}://{hosts}{path}"


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    m = _HOST.match(text)
    if m is None:
        raise Expected(_WHAT + f" (bad host {text!r})")
    host = m.group("v6") or m.group("name")
    rest = text[m.end():]
    if not rest:
        return host, default_port
    if not rest.startswith(":") or not rest[1:].isdigit() or not 1 <= int(rest[1:]) <= 65535:
        raise Expected(_WHAT + f" (bad port in {text!r}: 1-65535)")
    return host, int(rest[1:])


def _db(text: str, url: str) -> int:
    if not text.isdigit() or int(text) > MAX_DB:
        raise Expected(_WHAT + " (the database is a number, 0 by default)", url)
    return int(text)


def parse_redis_url(value: object) -> RedisAddress:
    """The address ``value`` names; :class:`Expected` says what is wrong (never echoing a password)."""
    if not isinstance(value, str) or not value:
        raise Expected(_WHAT, value)
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("redis", "rediss", "sentinel", "sentinels"):
        raise Expected(_WHAT, value)
    if "@" in rest:
        raise Expected("a Redis URL without credentials (put the password in 'password_file' and an ACL"
                       " user in 'username'; a URL ends up in logs)")
    if "?" in rest or "#" in rest:
        raise Expected(_WHAT + " (no query string: each option has its own key in [cluster])", value)
    authority, _, path = rest.partition("/")
    parts = path.split("/") if path else []
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    tls = scheme in ("rediss", "sentinels")
    if scheme.startswith("redis"):
        if "," in authority:
            raise Expected(_WHAT + " (several hosts need sentinel://)", value)
        if not authority:
            raise Expected(_WHAT + " (no host)", value)
        if len(parts) > 1:
            raise Expected(_WHAT, value)
        return RedisAddress(hosts=(_host_port(authority, REDIS_PORT),), db=_db(parts[0], value) if parts else 0,
                            tls=tls)
    hosts = tuple(_host_port(h, SENTINEL_PORT) for h in authority.split(",")) if authority else ()
    if not hosts:
        raise Expected(_WHAT + " (no Sentinel host)", value)
    if len(set(hosts)) != len(hosts):
        raise Expected(_WHAT + " (a Sentinel is named twice)", value)
    if not parts or not _SERVICE.fullmatch(parts[0]) or len(parts) > 2:
        raise Expected(_WHAT + " (the service name Sentinel monitors, e.g. /mymaster)", value)
    return RedisAddress(hosts=hosts, db=_db(parts[1], value) if len(parts) == 2 else 0, tls=tls,
                        service=parts[0])
