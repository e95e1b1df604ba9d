"""The TAPI core, pure (sans-IO): TAPIEVENT grammar, call model, TAPI constants.

Nothing here imports a reactor or reads the clock; see docs/architecture.md.
"""

from .events import CALLINFO_KEYS, TapiEvent
from .grammar import TapiCommand, TapiSignal, parse_tapievent, try_parse
from .model import Call, CallModel

__all__ = [
    "CALLINFO_KEYS",
    "Call",
    "CallModel",
    "TapiCommand",
    "TapiEvent",
    "TapiSignal",
    "parse_tapievent",
    "try_parse",
]
