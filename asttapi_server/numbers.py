"""Phone numbers as people write them, reduced to one key for matching.

``+44 20 7946 0958``, ``020 7946 0958``, ``0044 20 7946 0958``,
``(020) 7946-0958``, ``+44 (0)20 7946 0958`` and the PBX's ``02079460958`` are
one number. :func:`number_key` turns each into its E.164 form
(``"+442079460958"``) with Google's libphonenumber metadata (the
``phonenumbers`` package), reading national forms in a default region. Short
internal extensions (``"201"``) are kept exactly as their digits, so they
never match the tail of an outside number. An extension written after a
number (``x123``, ``ext. 123``) becomes ``"+442079460958;ext=123"``.

:class:`NumberIndex` maps keys to contacts for O(1) lookups.

The default region is ``GB``: the AstTapi manual's examples are UK numbers,
and so are two of the demo PBX's three callers (``02079460958``,
``+442079460959``). Set ``region`` in a plugin's settings for another country.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Generic, TypeVar

import phonenumbers

DEFAULT_REGION = "GB"

#: Digit strings at most this long (after removing spaces and punctuation)
#: are internal extensions, matched exactly.
INTERNAL_MAX_DIGITS = 6

_SEPARATORS = re.compile(r"[\s\-./()\u00a0]")
_URI_PREFIX = re.compile(r"^(?:tel|sip|sips):", re.IGNORECASE)

T = TypeVar("T")


def check_region(region: str) -> str:
    """Return ``region`` upper-cased, or raise ValueError if libphonenumber does not know it."""
    code = str(region).strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone number region {region!r} (expected an ISO code such as 'GB' or 'DE')")
    return code


def number_key(raw: object, region: str = DEFAULT_REGION) -> str | None:
    """The matching key of a phone number as written, or ``None`` if it is no number.

    ``region`` is the ISO 3166 code used to read national forms (``020 ...``).
    """
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    return _key(text, region)


@lru_cache(maxsize=8192)
def _key(text: str, region: str) -> str | None:
    text = _URI_PREFIX.sub("", text)
    if "@" in text:  # sip:201@pbx -> 201
        text = text.split("@", 1)[0]
    compact = _SEPARATORS.sub("", text)
    if compact.isdigit() and len(compact) <= INTERNAL_MAX_DIGITS:
        return compact
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not parsed.national_number:
        return None
    key = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if parsed.extension:
        key = f"{key};ext={parsed.extension}"
    return key


def number_forms(raw: object, region: str = DEFAULT_REGION) -> dict[str, str] | None:
    """The forms of a number a SQL query may compare with, or ``None`` if it is no number.

    ``key`` (:func:`number_key`), ``e164`` (``+442079460958``, no extension),
    ``national`` (``02079460958``, digits only), ``digits`` (the digits of
    ``raw``) and ``raw``. Internal extensions give their digits in every form.
    """
    key = number_key(raw, region)
    if key is None:
        return None
    text = str(raw).strip()
    digits = re.sub(r"\D", "", text)
    e164 = national = base_key(key)
    if e164.startswith("+"):
        parsed = phonenumbers.parse(e164)
        national = re.sub(r"\D", "", phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL))
    return {"key": key, "e164": e164, "national": national, "digits": digits, "raw": text}


def base_key(key: str) -> str:
    """``key`` without its extension part."""
    return key.split(";", 1)[0]


class NumberIndex(Generic[T]):
    """Values indexed by phone number key, for O(1) lookup of a caller's number.

    When several values share a number, the first added wins, except that a
    value stored without an extension wins the bare number over one stored
    with an extension (the switchboard number is the company's, not the
    person's behind ``x123``).
    """

    def __init__(self, region: str = DEFAULT_REGION) -> None:
        self.region = check_region(region)
        self._by_key: dict[str, T] = {}
        self._bare_from_extension: set[str] = set()

    def add(self, raw: object, value: T) -> str | None:
        """Index ``value`` under the number ``raw``; return the key, or ``None`` if no number."""
        key = number_key(raw, self.region)
        if key is None:
            return None
        bare = base_key(key)
        if bare != key:
            self._by_key.setdefault(key, value)
            if bare not in self._by_key:
                self._by_key[bare] = value
                self._bare_from_extension.add(bare)
        elif key not in self._by_key or key in self._bare_from_extension:
            self._by_key[key] = value
            self._bare_from_extension.discard(key)
        return key

    def lookup(self, raw: object) -> T | None:
        """The value for number ``raw`` as written anyhow, or ``None``."""
        key = number_key(raw, self.region)
        if key is None:
            return None
        found = self._by_key.get(key)
        if found is None and ";" in key:
            found = self._by_key.get(base_key(key))
        return found

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_key)
