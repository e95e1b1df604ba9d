"""What a line name may be, and how client or PBX text is shown in a log line.

One rule for line names, used by the configuration (``[lines.NAME]``), by
``lineOpen`` and every other client parameter naming a line, and by the
TAPIEVENT grammar: a name travels into JSON lines, log lines and TAPIEVENT
specs, so it must survive all three. A lone UTF-16 surrogate (``"sip/\\ud800"``
from a JSON ``\\u`` escape) cannot be encoded as UTF-8 and once broke the
hub's broadcast loop; U+2028 or U+0085 in a log line forges a new line.

Pure module: no reactor, no logging.
"""

from __future__ import annotations

import re

#: What a line name may be, everywhere: a word character or ``+`` first
#: (``+4930123`` works; never ``/``, ``~`` or ``!``), then word characters and
#: ``/ ; . @ + - : # * =``, at most 80 in all. The TAPIEVENT grammar parses
#: exactly these (``core.grammar.LINE_NAME`` is this pattern), so a name it
#: would refuse could never get an event. No space, control character, line
#: separator or lone surrogate can match.
LINE_NAME = re.compile(r"[\w+][\w/;.@+\-:#*=]{0,79}")
#: Longest line name accepted anywhere.
MAX_LINE_NAME_LENGTH = 80

LINE_NAME_RULE = (
    "a line name without spaces or any of [ ] & ! ~ (letters, digits, _ or + first,"
    " then also / ; . @ - : # * =; at most 80 characters)"
)


def line_name_problem(name: object) -> str | None:
    """``None`` if ``name`` is a valid line name, else what a valid one is (for the error)."""
    if isinstance(name, str) and LINE_NAME.fullmatch(name):
        return None
    return LINE_NAME_RULE


def is_line_name(name: object) -> bool:
    return line_name_problem(name) is None


def _escape(ch: str) -> str:
    if ch.isprintable() and ch != "\\":
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def log_text(value: object, limit: int = 200) -> str:
    """``value`` as text that is safe in one log line: non-printable characters
    escaped (``\\n`` -> ``\\x0a``, U+2028 -> ``\\u2028``, a lone surrogate ->
    ``\\ud800``), cut to ``limit`` characters with ``...``.

    Every log line that includes client or PBX text passes it through here.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable() and "\\" not in text:
        return text  # the common case: one C-level scan
    return "".join(map(_escape, text))
