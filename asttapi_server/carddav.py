"""CardDAV's XML, sans I/O: the request bodies an address-book sync sends and what its answers say.

``carddav_contacts`` (the Twisted side) syncs an address book (RFC 6352) the
way DAV clients do:

1. ``REPORT sync-collection`` (RFC 6578) with the sync token of the last
   sync (none the first time): the members added or changed since (href and
   ETag) and those removed (status 404), and a new token;
2. ``REPORT addressbook-multiget`` for the changed members only: their vCards;
3. without sync support on the server (or after a token the server no
   longer knows, the ``DAV:valid-sync-token`` error): ``PROPFIND`` Depth 1
   lists every member with its ETag, and only members whose ETag changed are
   fetched.

This module builds those bodies and reads the multistatus answers into
:class:`Member` values. It refuses XML with a DOCTYPE (no DAV server sends
one; entity definitions are how XML bombs work) and never resolves anything
outside the answer.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit
from xml.sax.saxutils import escape

__all__ = ["CardDavError", "Member", "Multistatus", "addressbook_multiget", "href_key", "is_invalid_sync_token",
           "parse_multistatus", "propfind_members", "sync_collection"]

DAV = "DAV:"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
_XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'
_DOCTYPE = re.compile(rb"<!DOCTYPE|<!ENTITY", re.IGNORECASE)
_STATUS = re.compile(r"^\s*HTTP/\d(?:\.\d)?\s+(\d{3})")


class CardDavError(ValueError):
    """An answer that is not the multistatus XML it should be; ``str()`` says how, in one line."""


@dataclass(frozen=True, slots=True)
class Member:
    """One ``<response>`` of a multistatus answer."""

    href: str                 # as the server wrote it
    status: int               # the response's (or its 200 propstat's) HTTP status
    etag: str | None = None
    address_data: str | None = None
    collection: bool = False  # resourcetype has <collection/>: the address book itself, or a folder in it


@dataclass(frozen=True, slots=True)
class Multistatus:
    members: tuple[Member, ...]
    sync_token: str | None = None


def sync_collection(token: str | None) -> bytes:
    """RFC 6578's REPORT body: changes since ``token`` (every member for None), with their ETags."""
    token_xml = f"<d:sync-token>{escape(token)}</d:sync-token>" if token else "<d:sync-token/>"
    return (f'{_XML_HEAD}<d:sync-collection xmlns:d="DAV:">{token_xml}<d:sync-level>1</d:sync-level>'
            f"<d:prop><d:getetag/></d:prop></d:sync-collection>").encode()


def propfind_members() -> bytes:
    """PROPFIND body (Depth 1): every member's ETag and resource type."""
    return (f'{_XML_HEAD}<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:resourcetype/></d:prop>'
            f"</d:propfind>").encode()


def addressbook_multiget(hrefs: list[str]) -> bytes:
    """RFC 6352's multiget body: these members' ETags and vCards."""
    listed = "".join(f"<d:href>{escape(h)}</d:href>" for h in hrefs)
    return (f'{_XML_HEAD}<c:addressbook-multiget xmlns:d="DAV:" xmlns:c="{CARDDAV}">'
            f"<d:prop><d:getetag/><c:address-data/></d:prop>{listed}</c:addressbook-multiget>").encode()


def _parse(body: bytes) -> ET.Element:
    if _DOCTYPE.search(body):
        raise CardDavError("the answer declares a DOCTYPE or entities, which no DAV server sends; refused")
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise CardDavError(f"the answer is not XML ({exc})") from None


def _status(text: str | None) -> int | None:
    match = _STATUS.match(text or "")
    return int(match.group(1)) if match else None


def parse_multistatus(body: bytes) -> Multistatus:
    """The members a 207 answer lists (and its sync token); CardDavError if it is no multistatus."""
    root = _parse(body)
    if root.tag != f"{{{DAV}}}multistatus":
        raise CardDavError(f"expected a DAV multistatus answer, got <{root.tag}>")
    members = []
    for response in root.findall(f"{{{DAV}}}response"):
        href = (response.findtext(f"{{{DAV}}}href") or "").strip()
        if not href:
            continue
        status = _status(response.findtext(f"{{{DAV}}}status"))
        etag = data = None
        collection = False
        for propstat in response.findall(f"{{{DAV}}}propstat"):
            if _status(propstat.findtext(f"{{{DAV}}}status")) != 200:
                continue  # properties the server does not have (404 propstat)
            prop = propstat.find(f"{{{DAV}}}prop")
            if prop is None:
                continue
            etag = (prop.findtext(f"{{{DAV}}}getetag") or "").strip() or etag
            found = prop.find(f"{{{CARDDAV}}}address-data")
            if found is not None and found.text:
                data = found.text
            kind = prop.find(f"{{{DAV}}}resourcetype")
            if kind is not None and kind.find(f"{{{DAV}}}collection") is not None:
                collection = True
            if status is None:
                status = 200
        members.append(Member(href=href, status=status or 0, etag=etag, address_data=data, collection=collection))
    token = root.findtext(f"{{{DAV}}}sync-token")
    return Multistatus(members=tuple(members), sync_token=token.strip() if token and token.strip() else None)


def is_invalid_sync_token(body: bytes) -> bool:
    """Is this error answer RFC 6578's "that sync token is no longer valid" (``DAV:valid-sync-token``)?"""
    try:
        root = _parse(body)
    except CardDavError:
        return False
    return root.tag == f"{{{DAV}}}error" and root.find(f"{{{DAV}}}valid-sync-token") is not None


def href_key(href: str, base_url: str) -> str:
    """One spelling of a member's address (servers write hrefs absolute or relative, quoted or not)."""
    return unquote(urlsplit(urljoin(base_url, href)).path)
