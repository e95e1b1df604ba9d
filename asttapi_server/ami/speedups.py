"""Which implementation of the AMI hot loops runs: C or pure Python.

``asttapi_server.ami._speedups`` (``_speedups.c``) is built at install time
when a C compiler is there, and skipped with a warning when not (``setup.py``,
``optional=True``).  Without it the parser and :class:`Message` use their
pure-Python twins: the same messages and values, at about half the ingest
speed (``bench/ami_ingest.py``).  ``ASTTAPI_PURE_PYTHON=1`` in the environment
forces the twins, to rule the accelerator out when chasing a problem.

Pure ring: nothing here touches I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["AVAILABLE", "DISABLED", "scan_blocks", "first_values", "describe"]

#: Set when ASTTAPI_PURE_PYTHON asks for the pure-Python twins.
DISABLED = os.environ.get("ASTTAPI_PURE_PYTHON", "").strip().lower() not in ("", "0", "no", "false")

scan_blocks: Callable[[bytes, int, tuple[tuple[bytes, bool], ...]], Any] | None = None
first_values: Callable[[bytes, tuple[bytes, ...]], list[str | None] | None] | None = None

if not DISABLED:
    try:
        from asttapi_server.ami._speedups import first_values, scan_blocks  # type: ignore[no-redef]
    except ImportError:  # not built: no compiler at install time
        pass

AVAILABLE = scan_blocks is not None


def describe() -> str:
    """One line for the startup log."""
    if AVAILABLE:
        return "C accelerator"
    if DISABLED:
        return "pure Python (ASTTAPI_PURE_PYTHON is set)"
    return "pure Python (the C accelerator was not built: no C compiler at install time?)"
