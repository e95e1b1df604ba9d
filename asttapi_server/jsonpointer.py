"""JSON Pointer (RFC 6901): where in a JSON answer a value sits, written by an administrator.

``"/results/0/properties/firstname"`` names the ``firstname`` of the first
result. An HTTP CRM answers in its own shape; the ``http_contacts`` plugin
is told where the name, company, link and id are with pointers like these.

Forty lines, not a dependency: the RFC is four rules (a pointer is ``""`` or
``/``-separated tokens; ``~1`` is ``/`` and ``~0`` is ``~``, unescaped in that
order; an array index is ``0`` or digits without a leading zero; ``-`` names
the element after the last, which does not exist). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MISSING", "Pointer"]

_INDEX = re.compile(r"0|[1-9][0-9]*")
_BAD_ESCAPE = re.compile(r"~(?![01])")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: What :meth:`Pointer.resolve` answers when the document has nothing there.
MISSING: Any = _Missing()


class Pointer:
    """A parsed pointer; ``Pointer("/a/b")`` raises ValueError for a malformed one."""

    __slots__ = ("text", "tokens")

    def __init__(self, text: str) -> None:
        if text and not text.startswith("/"):
            raise ValueError(f"a JSON pointer is \"\" or starts with '/' (RFC 6901), got {text!r}")
        if _BAD_ESCAPE.search(text):
            raise ValueError(f"in a JSON pointer '~' is written '~0' and '/' '~1' (RFC 6901), got {text!r}")
        self.text = text
        self.tokens = tuple(t.replace("~1", "/").replace("~0", "~") for t in text.split("/")[1:])

    def resolve(self, document: Any) -> Any:
        """The value the pointer names in ``document`` (decoded JSON), or :data:`MISSING`."""
        node = document
        for token in self.tokens:
            if isinstance(node, Mapping):
                if token not in node:
                    return MISSING
                node = node[token]
            elif isinstance(node, Sequence) and not isinstance(node, (str, bytes)):
                if not _INDEX.fullmatch(token) or int(token) >= len(node):
                    return MISSING
                node = node[int(token)]
            else:
                return MISSING
        return node

    def __repr__(self) -> str:
        return f"Pointer({self.text!r})"
