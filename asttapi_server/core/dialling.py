"""From what a user clicked or typed to what a line dials.

Click-to-dial brings numbers in three forms: ``tel:`` URIs (RFC 3966, what
Outlook, Teams, browsers and CRMs put behind a phone number), ``callto:``
links (Skype's form, still written by many CRMs) and numbers as people type
them. :func:`parse_phone` reads all three into a :class:`PhoneNumber`;
:func:`to_dial` turns that into the digits a line dials, by the line's
:class:`DialRule` (``[dial]`` and ``[lines.NAME.dial]`` in the config):

* A **global** number (``+49 30 1234567``, ``tel:+49-30-1234567``): one of
  the PBX's own numbers (``own_numbers``) is dialled internally, as the
  digits after the PBX's prefix (or the URI's ``;ext=``); a number of the
  PBX's own country gets the outside-line prefix and the national form
  (``0`` + ``0301234567``); any other the outside-line prefix and the
  international prefix (``0`` + ``00`` + ``441632960000``).
* A **local** number with ``;phone-context=``: a domain the PBX answers for
  (``domains``) or a prefix the PBX lies in (``+49-30`` for a PBX in
  +49 30) makes it dialable as written (public ones with the outside-line
  prefix); any other context names a numbering plan this line is not in,
  and the number is refused rather than dialled to the wrong person.
* **Anything else** (``0301234567``, ``201``, ``tel:0301234567`` without a
  context) is dialled exactly as written: nobody can tell an extension from
  a number that already carries the outside-line prefix, so the server
  does not guess. Without a rule, a global number is dialled with its ``+``
  as before.

The result still goes through the wire rule,
:func:`asttapi_server.core.dialstring.dialable`. Pure: no I/O; the rule's
defaults for a region come from :mod:`asttapi_server.config`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

__all__ = ["DialRule", "Dialled", "PhoneNumber", "is_uri", "parse_phone", "to_dial"]

#: Longest URI or number text read at all (a tel: URI with parameters is longer than a number).
MAX_TEXT = 256

_SCHEME = re.compile(r"^(tel|callto):", re.IGNORECASE)
#: RFC 3966 visual-separator; people also write spaces (percent-encoded in a URI).
_VISUAL = re.compile(r"[-.() \u00a0]")
_GLOBAL = re.compile(r"\+[0-9]+")
_LOCAL = re.compile(r"[0-9A-Fa-f*#]+")
_EXT = re.compile(r"[0-9]+")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?")
_PARAM_NAME = re.compile(r"[A-Za-z0-9-]+")
#: "+44 (0)20 ..." : the trunk prefix some write after the country code; never dialled.
_TRUNK_NOTE = re.compile(r"^\+([0-9 ]+?)\s*\(0\)")


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A number as RFC 3966 sees it; ``digits`` without visual separators.

    ``digits`` starts with ``+`` for a global number; a local number's
    ``context`` is its ``phone-context`` (a global prefix such as
    ``+1914555`` or a lower-case domain), ``None`` when it came without one.
    """

    digits: str
    ext: str | None = None
    context: str | None = None
    uri: bool = False  # it came as a tel:/callto: URI

    @property
    def is_global(self) -> bool:
        return bool(_GLOBAL.fullmatch(self.digits))

    def __str__(self) -> str:
        """The canonical ``tel:`` URI (RFC 3966 order: ext, then phone-context)."""
        text = "tel:" + self.digits
        if self.ext:
            text += ";ext=" + self.ext
        if self.context:
            text += ";phone-context=" + self.context
        return text


@dataclass(frozen=True, slots=True)
class DialRule:
    """How a line reaches numbers: the config's ``[dial]`` keys, checked.

    Prefixes are digit strings; ``own_numbers`` are global prefixes with
    their ``+`` (``"+4930123456"``); ``domains`` are lower case.
    """

    country_code: str
    national_prefix: str = ""
    international_prefix: str = "00"
    outside: str = ""
    area_code: str = ""
    own_numbers: tuple[str, ...] = ()
    domains: tuple[str, ...] = field(default=())

    @property
    def location(self) -> str:
        """Where the PBX is, as a global prefix (``+4930``)."""
        return "+" + self.country_code + self.area_code


@dataclass(frozen=True, slots=True)
class Dialled:
    """What a line dials: ``number`` (for Originate's ``Exten``) and an extension
    to send after the far end answers (``;ext=`` of a number that is not the PBX's)."""

    number: str
    ext: str | None = None


def is_uri(text: str) -> bool:
    """Does ``text`` start with ``tel:`` or ``callto:`` (any case)?"""
    return bool(_SCHEME.match(text.lstrip()))


def parse_phone(text: str) -> PhoneNumber:
    """Read a ``tel:`` URI, a ``callto:`` link or a number as written; ValueError says what is wrong.

    A ``tel:`` URI follows RFC 3966 (visual separators ``-.()``, ``;ext=``,
    ``;isub=``, ``;phone-context=``, other parameters ignored, names in any
    case, parameters in any order, percent-encoding). ``callto:`` (and
    ``callto://``) carries a number as written. Written numbers may hold
    spaces and ``-.()``; ``+44 (0)20 ...`` loses its ``(0)``.
    """
    if len(text) > MAX_TEXT:
        raise ValueError(f"number is longer than {MAX_TEXT} characters")
    text = text.strip()
    scheme = _SCHEME.match(text)
    if scheme is None:
        return _written(text, uri=False)
    body = unquote(text[scheme.end():])
    if scheme.group(1).lower() == "callto":
        return _written(body.removeprefix("//").rstrip("/").split("?", 1)[0], uri=True)
    return _tel(body)


def _written(text: str, *, uri: bool) -> PhoneNumber:
    if not text.strip():
        raise ValueError("number is empty")
    text = _TRUNK_NOTE.sub(r"+\1", text.strip())
    digits = _VISUAL.sub("", text)
    if not digits:
        raise ValueError("number is empty")
    return PhoneNumber(digits, uri=uri)


def _tel(body: str) -> PhoneNumber:
    subscriber, *params = body.split(";")
    digits = _VISUAL.sub("", subscriber)
    if not digits:
        raise ValueError("tel: URI has no number")
    ext = context = None
    for param in params:
        name, has_value, value = param.partition("=")
        name = name.strip().lower()
        if not _PARAM_NAME.fullmatch(name):
            raise ValueError(f"tel: URI has a malformed parameter {param[:40]!r}")
        if name == "ext":
            ext = _VISUAL.sub("", value)
            if not has_value or not _EXT.fullmatch(ext):
                raise ValueError("tel: URI's ;ext= must be digits")
        elif name == "phone-context":
            context = _context(value.strip())
    if digits.startswith("+"):
        if not _GLOBAL.fullmatch(digits):
            raise ValueError("a global number is '+' and digits (RFC 3966)")
        if context is not None:
            raise ValueError("a global number takes no ;phone-context= (RFC 3966)")
    elif not _LOCAL.fullmatch(digits):
        raise ValueError("a local number is digits, A-F, '*' and '#' (RFC 3966)")
    return PhoneNumber(digits.upper() if not digits.startswith("+") else digits, ext or None, context, uri=True)


def _context(value: str) -> str:
    if value.startswith("+"):
        prefix = _VISUAL.sub("", value)
        if not _GLOBAL.fullmatch(prefix):
            raise ValueError("tel: URI's ;phone-context= must be a domain name or '+' and digits")
        return prefix
    if not _DOMAIN.fullmatch(value):
        raise ValueError("tel: URI's ;phone-context= must be a domain name or '+' and digits")
    return value.lower().rstrip(".")


def to_dial(number: PhoneNumber, rule: DialRule | None) -> Dialled:
    """What a line with ``rule`` dials for ``number``; ValueError for a local number of elsewhere.

    See the module docstring for the rules.
    """
    if number.is_global:
        return _global(number.digits, number.ext, rule)
    if number.context is None:
        return Dialled(number.digits, number.ext)
    if rule is None:
        raise ValueError(
            f"{number} is a local number of {number.context}; set a [dial] rule so the server "
            "knows whether this PBX is there"
        )
    if not number.context.startswith("+"):
        if number.context in rule.domains:
            return Dialled(number.digits, number.ext)
        raise ValueError(
            f"{number} is a local number of {number.context}, not of this PBX "
            "(list the domain in [dial] domains if it is)"
        )
    whole = number.context + number.digits
    internal = _own(whole, number.ext, rule)
    if internal is not None:
        return internal
    if rule.location.startswith(number.context):
        return Dialled(rule.outside + number.digits, number.ext)
    raise ValueError(
        f"{number} is a local number of the area {number.context}, and this line dials from "
        f"{rule.location} ([dial] region and area_code)"
    )


def _global(digits: str, ext: str | None, rule: DialRule | None) -> Dialled:
    if rule is None:
        return Dialled(digits, ext)
    internal = _own(digits, ext, rule)
    if internal is not None:
        return internal
    significant = digits[1:]
    if significant.startswith(rule.country_code):
        national = significant[len(rule.country_code):]
        return Dialled(rule.outside + rule.national_prefix + national, ext)
    return Dialled(rule.outside + rule.international_prefix + significant, ext)


def _own(digits: str, ext: str | None, rule: DialRule) -> Dialled | None:
    """The internal number for one of the PBX's own global numbers, else None."""
    for prefix in sorted(rule.own_numbers, key=len, reverse=True):
        if digits.startswith(prefix):
            if ext:
                return Dialled(ext)  # the switchboard number with the person's extension
            rest = digits[len(prefix):]
            if rest:
                return Dialled(rest)
    return None
