"""The dial string rule: what a client may ask Asterisk to dial.

One rule for every request that carries a number (lineMakeCall,
lineBlindTransfer), checked where the request is decoded and again before
an action is built. It is the wire rule only: matching a caller's number to
a contact (international and national forms of one number) is
:mod:`asttapi_server.numbers`, which needs libphonenumber; this pure module
does not.
"""

from __future__ import annotations

import re

#: Longest number a client may dial; far beyond any E.164 number plus a PIN.
MAX_DIAL_LENGTH = 64
_DIAL_SEPARATORS = re.compile(r"[ ().\-]")
_DIALABLE = re.compile(r"\+?[0-9A-Za-z*#]+")
#: Asterisk's special extensions (matched case-sensitively, as Asterisk
#: does): the dialplan runs them for events, not for dialling: ``h`` hangup,
#: ``i`` invalid, ``t``/``T`` timeouts, ``s`` start, ``o`` operator, ``a``
#: voicemail's ``*``, ``e`` exception, ``fax`` fax detection, ``talk``
#: BackgroundDetect. Dialling one would run that code on purpose (an ``h``
#: extension's IDLE for another call). ``A``-``D`` stay dialable (DTMF).
SPECIAL_EXTENSIONS = frozenset(("a", "e", "h", "i", "o", "s", "t", "T", "fax", "talk"))


def dialable(text: str) -> str:
    """The form of ``text`` that may be dialled, or ``ValueError`` saying why not.

    Spaces and ``( ) . -`` are how people write numbers and are removed. What
    is left must be digits, letters (SIP user names, DTMF A-D), ``*`` and
    ``#``, with an optional leading ``+``: nothing that could reach Asterisk
    as a header break (``\\r``, ``\\n``), a context (``@``), a channel
    (``/``) or a dialplan pattern (``_``, ``[``), and none of Asterisk's
    special extensions (:data:`SPECIAL_EXTENSIONS`).
    """
    number = _DIAL_SEPARATORS.sub("", text)
    if not number:
        raise ValueError("number is empty")
    if len(number) > MAX_DIAL_LENGTH:
        raise ValueError(f"number is longer than {MAX_DIAL_LENGTH} characters")
    if not _DIALABLE.fullmatch(number):
        raise ValueError(
            "number may hold only digits, letters, '*', '#' and a leading '+' "
            "(spaces, '(', ')', '.', '-' are ignored)"
        )
    if number in SPECIAL_EXTENSIONS:
        raise ValueError(f"{number!r} is an Asterisk special extension (h, i, s, t, ...), not a number")
    return number
