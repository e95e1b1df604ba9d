"""Typed setting values, checked one way wherever an administrator writes one.

The configuration file (:mod:`asttapi_server.config`), a plugin's own table
(:class:`asttapi_server.plugin_host.Settings`) and the log file's environment
(:mod:`asttapi_server.logfile`) all read the same kinds of value: a string,
an integer in a range, a number of seconds, true or false, a list of strings,
a table. Each check here returns the value or raises :class:`Expected`, whose
text is the end of the one error line the administrator sees
(``expected an integer 1-65535, got 'abc'``); the caller puts where the value
came from in front (``asttapi.toml: key 'ami.port': ...``, ``plugin 'crm_sql':
setting 'refresh': ...``), so a wrong value reads the same wherever it was
written.

Pure module: no reactor, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Expected", "Hidden", "show", "string", "integer", "number", "boolean", "strings", "table"]

_NOTHING: Any = ...


class Expected(ValueError):
    """A value that is not what its key wants; ``str()`` is ``expected WHAT[, got VALUE]``."""

    def __init__(self, what: str, value: Any = _NOTHING) -> None:
        self.what = what
        self.value = value
        got = "" if value is _NOTHING else f", got {show(value)}"
        super().__init__(f"expected {what}{got}")


class Hidden:
    """What an error shows instead of a secret's value (``Expected(..., Hidden("an integer"))``)."""

    def __init__(self, description: str) -> None:
        self.description = description

    def __repr__(self) -> str:
        return self.description


def show(value: Any) -> str:
    """``value`` as an error line quotes it: short, one line, a table as "a table"."""
    if isinstance(value, Mapping):
        return "a table"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def string(value: Any, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty_ok):
        raise Expected("a string" if empty_ok else "a non-empty string", value)
    return value


def integer(value: Any, lo: int, hi: int | None = None, *, text_ok: bool = False) -> int:
    """An integer from ``lo`` to ``hi``; ``text_ok``: ``"5038"`` too (command line, environment)."""
    given = value
    if text_ok and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        raise Expected(f"an integer {lo}-{hi}" if hi is not None else f"an integer >= {lo}", given)
    return value


def number(value: Any, *, positive: bool = True, minimum: float | None = None,
           what: str = "a number of seconds") -> float:
    """A finite number > 0 (``positive``), >= 0, or >= ``minimum``, as a float; ``what`` names its unit."""
    if minimum is not None:
        expected = f"{what} >= {minimum:g}"
    else:
        expected = f"{what} > 0" if positive else f"{what} >= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Expected(expected, value)
    result = float(value)
    low = minimum if minimum is not None else 0.0
    if not math.isfinite(result) or result < low or (minimum is None and positive and result == 0):
        raise Expected(expected, value)
    return result


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Expected("true or false", value)
    return value


def strings(
    value: Any,
    *,
    what: str = "a list of non-empty strings",
    allow_single: bool = False,
    non_empty: bool = False,
    check: Callable[[str], str | None] | None = None,
) -> tuple[str, ...]:
    """A list of non-empty strings (``allow_single``: or one string); ``check`` returns each item's problem."""
    items = [value] if allow_single and isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
        raise Expected(what, value)
    if non_empty and not items:
        raise Expected(what + " (at least one)", value)
    for item in items:
        problem = check(item) if check else None
        if problem:
            raise Expected(problem, item)
    return tuple(items)


def table(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise Expected("a table", value)
    return dict(value)
