"""vCards (2.1, 3.0, 4.0) to contacts: the one vCard reader of the tree.

``outlook_contacts`` reads ``.vcf`` exports with it and ``carddav_contacts``
each card of an address book. The vCard grammar (folded lines, escaping,
parameters, 2.1's quoted-printable values and soft line breaks, structured
``N`` and ``ORG``) is the vobject library's; this module only picks what a
screen pop shows:

- the name: ``FN``, else ``N`` as "Given Family";
- the company: the first component of ``ORG``;
- the first ``EMAIL``;
- every ``TEL``, a 4.0 ``tel:`` URI as its number (``tel:+44-20-7946-0777``
  is ``+44-20-7946-0777``; :mod:`asttapi_server.numbers` reads the rest).

A file is cut into cards first and each is parsed on its own, so a card
vobject cannot read costs only itself: :func:`read_vcards` says which.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import vobject

from asttapi_server.directory import Contact

__all__ = ["VCardError", "read_vcard", "read_vcards"]

_CARD = re.compile(r"^BEGIN:VCARD[ \t]*\r?$.*?^END:VCARD[ \t]*\r?$", re.IGNORECASE | re.MULTILINE | re.DOTALL)
_TEL_URI = re.compile(r"^tel:", re.IGNORECASE)


class VCardError(ValueError):
    """A card that cannot be read; ``str()`` says why in one line."""


def read_vcard(text: str) -> Contact:
    """The contact of one card (``BEGIN:VCARD`` ... ``END:VCARD``); VCardError if it cannot be read."""
    try:
        card = vobject.readOne(text, allowQP=True)
    except Exception as exc:  # vobject raises ParseError, but also ValueError/KeyError on odd values
        raise VCardError(_one_line(exc)) from None
    if getattr(card, "name", "").upper() != "VCARD":
        raise VCardError(f"not a vCard but a {card.name}")
    return _contact(card)


def read_vcards(text: str) -> tuple[list[Contact], list[str]]:
    """Every card in ``text`` (a ``.vcf`` file holds any number): the contacts, and why each other card was skipped."""
    contacts: list[Contact] = []
    problems: list[str] = []
    for number, match in enumerate(_CARD.finditer(text), 1):
        try:
            contacts.append(read_vcard(match.group(0)))
        except VCardError as exc:
            problems.append(f"card {number}: {exc}")
    return contacts, problems


def _contact(card: Any) -> Contact:
    name = _text(_first(card, "fn"))
    if not name:
        n = _first(card, "n")
        if n is not None:
            name = " ".join(p for p in (_text(n.given), _text(n.family)) if p)
    org = _first(card, "org")
    company = _text(org[0] if isinstance(org, (list, tuple)) and org else org)
    numbers = []
    for line in card.contents.get("tel", ()):
        number = _TEL_URI.sub("", _text(line.value))
        if number:
            numbers.append(number)
    return Contact(name=name or None, company=sys.intern(company) if company else None,  # (many share one)
                   numbers=tuple(dict.fromkeys(numbers)),
                   email=_text(_first(card, "email")) or None)


def _first(card: Any, key: str) -> Any:
    lines = card.contents.get(key)
    return lines[0].value if lines else None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(_text(v) for v in value if _text(v))
    return str(value).strip()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__
