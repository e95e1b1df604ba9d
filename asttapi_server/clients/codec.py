"""JSON-RPC 2.0 over JSON lines, without I/O.

The pure half of the client protocol (see ``docs/protocol.md``): turn one
received line into a :class:`Request` or a :class:`Reject`, check a method's
parameters, and turn responses, errors and :class:`TapiEvent` s into the bytes
of one line. Nothing here imports a reactor or reads the clock.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from asttapi_server.core.constants import CALLINFO, CALLSTATE, DEVSTATE
from asttapi_server.core.events import TapiEvent
from asttapi_server.names import line_name_problem
from asttapi_server.core.dialling import is_uri, parse_phone
from asttapi_server.core.dialstring import MAX_DIAL_LENGTH, dialable

PROTOCOL_VERSION = 1

# JSON-RPC 2.0 codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Our application codes (JSON-RPC reserves -32000..-32099 for servers).
TELEPHONY_ERROR = -32000  # error.data.lineerr holds the LINEERR_* name
AUTH_ERROR = -32001  # login required, login failed, already logged in
CONNECTION_CLOSING = -32002  # last message before the server hangs up
RATE_LIMITED = -32003  # more requests per second than server.request_rate allows

#: Longest number accepted by lineMakeCall / lineBlindTransfer, separators removed.
MAX_NUMBER_LENGTH = MAX_DIAL_LENGTH
# The line-name rule lives in asttapi_server.names (config, lineOpen, grammar).



def _encoder_made_once(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode``, with its C encoder made once instead of on every call.

    ``JSONEncoder.encode`` builds a new C encoder (and a dict for the
    circular-reference check) per call: about half of what encoding a client
    event's line cost (``bench/event_cost.py``). The same C encoder with the
    same options gives the same text; only a circular structure fails
    differently (``RecursionError``, not ``ValueError``): we encode trees we
    built, and a plugin's contact is checked by the plugin host before it
    can reach a line. Where there is no C encoder (not CPython),
    ``encoder.encode`` itself.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None or encoder.indent is not None:
        return encoder.encode
    strings = json.encoder.encode_basestring_ascii if encoder.ensure_ascii else json.encoder.encode_basestring
    encode = make(None, encoder.default, strings, None, encoder.key_separator, encoder.item_separator,
                  encoder.sort_keys, encoder.skipkeys, encoder.allow_nan)
    join = "".join

    def dumps(obj: Any) -> str:
        return join(encode(obj, 0))

    return dumps


_dumps = _encoder_made_once(json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False
))


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_constant=_no_constants)


@dataclass(frozen=True, slots=True)
class Request:
    """A well-formed call. ``notification`` is true when it had no ``id``.

    ``reply``, when set, takes the encoded answer instead of the connection
    (a request of a :class:`Batch` answers into the batch's array): its
    bytes, or the chunks of a large answer still to be made.
    """

    method: str
    params: Mapping[str, Any]
    id: str | int | float | None
    notification: bool = False
    reply: Callable[[bytes | Iterator[bytes]], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Reject:
    """A line that is not a valid request: answer it with this error.

    ``id`` is the request's id when it could be read, else ``None``.
    """

    code: int
    message: str
    id: str | int | float | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """A JSON-RPC batch (an array of requests): each item is answered as if
    it came alone, and the answers go back together in one array."""

    items: tuple[Request | Reject, ...]


#: Most requests one batch may hold (each still counts against every limit).
MAX_BATCH = 1000


class ParamsError(ValueError):
    """The params of a request do not match the method (answer -32602)."""


def decode_line(line: bytes) -> Request | Reject | Batch | None:
    """Read one line (without its ``\\n``; a trailing ``\\r`` is allowed).

    Returns ``None`` for a blank line, which is ignored so that a person
    typing into ``nc`` may press Enter.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return Reject(PARSE_ERROR, f"Parse error: the line is not UTF-8 ({e.reason} at byte {e.start})")
    if not text.strip():
        return None
    try:
        obj = _decoder.decode(text)
    except (ValueError, RecursionError) as e:
        return Reject(PARSE_ERROR, f"Parse error: {_short(str(e))}")
    if isinstance(obj, list):
        batch = decode_batch(obj)
        if isinstance(batch, Batch) and "\\u" in text:
            batch = Batch(tuple(_no_lone_surrogate(m) for m in batch.items))
        return batch
    # A lone surrogate can only come from a \\u escape ("\\ud800"): the text
    # itself was valid UTF-8. Such a string cannot be written back (in an
    # error message, a log line, a line name), so refuse the whole request.
    msg = decode_message(obj)
    return _no_lone_surrogate(msg) if "\\u" in text else msg


def _no_lone_surrogate(msg: Request | Reject) -> Request | Reject:
    """A request with a lone surrogate anywhere becomes its -32600 Reject."""
    if isinstance(msg, Request) and _lone_surrogate((msg.method, msg.params)):
        return Reject(INVALID_REQUEST, _SURROGATE, msg.id)
    return msg


def decode_batch(items: list) -> Batch | Reject:
    """A JSON array: a :class:`Batch` of its checked items (JSON-RPC 2.0, section 6).

    An empty array is one Invalid Request (not an empty array back), as the
    spec says; an item that is not a request object is an Invalid Request
    in its place.
    """
    if not items:
        return Reject(INVALID_REQUEST, "Invalid request: an empty batch (an array needs at least one request)")
    if len(items) > MAX_BATCH:
        return Reject(INVALID_REQUEST, f"Invalid request: a batch of {len(items)} requests; at most {MAX_BATCH}")
    return Batch(tuple(decode_message(item) for item in items))


def decode_message(obj: Any) -> Request | Reject:
    """Check one decoded JSON value against JSON-RPC 2.0's request shape."""
    if not isinstance(obj, dict):
        return Reject(INVALID_REQUEST, "Invalid request: expected a JSON object")
    has_id = "id" in obj
    rid = obj.get("id")
    if has_id and (isinstance(rid, bool) or not isinstance(rid, (str, int, float, type(None)))):
        return Reject(INVALID_REQUEST, "Invalid request: id must be a string, a number or null")
    if isinstance(rid, float) and not math.isfinite(rid):
        # 1e999 parses as infinity, which JSON cannot write back.
        return Reject(INVALID_REQUEST, "Invalid request: id must be a finite number")
    if isinstance(rid, str) and _lone_surrogate(rid):
        return Reject(INVALID_REQUEST, _SURROGATE)
    if obj.get("jsonrpc") != "2.0":
        return Reject(INVALID_REQUEST, 'Invalid request: "jsonrpc" must be "2.0"', rid)
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        return Reject(INVALID_REQUEST, 'Invalid request: "method" must be a non-empty string', rid)
    params = obj.get("params", {})
    if not isinstance(params, dict):
        return Reject(
            INVALID_PARAMS,
            "Invalid params: params must be an object with named parameters",
            rid,
        )
    extra = set(obj) - {"jsonrpc", "method", "params", "id"}
    if extra:
        return Reject(
            INVALID_REQUEST, f"Invalid request: unknown member(s) {', '.join(sorted(map(repr, extra)))}", rid
        )
    return Request(method, params, rid, notification=not has_id)


_SURROGATE = "Invalid request: a string holds a lone UTF-16 surrogate (such as \\ud800); send valid Unicode"


def _lone_surrogate(obj: Any) -> bool:
    """Whether any string in ``obj`` (keys included) holds a lone surrogate."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


# -- parameters ---------------------------------------------------------------


def _line(value: Any) -> str:
    problem = line_name_problem(value)
    if problem:
        raise ParamsError(f"line must be {problem}")
    return value


def _call(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParamsError("call must be a call handle (a non-negative integer)")
    return value


def _number(value: Any) -> str:
    if not isinstance(value, str):
        raise ParamsError("number must be a string")
    return normalise_number(value)


def _seq(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParamsError("seq must be a non-negative integer (the last seq you received)")
    return value


def _text(name: str, limit: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or len(value) > limit:
            raise ParamsError(f"{name} must be a string of at most {limit} characters")
        return value

    return check


def normalise_number(text: str) -> str:
    """The dialable form of ``text`` (see :func:`asttapi_server.core.dialstring.dialable`), or ParamsError.

    A ``tel:`` or ``callto:`` URI is checked (:func:`asttapi_server.core.dialling.parse_phone`)
    and passed on as it is: the line's dial rule turns it into digits.
    """
    try:
        if is_uri(text):
            dialable(parse_phone(text).digits)
            return text.strip()
        return dialable(text)
    except ValueError as e:
        raise ParamsError(str(e)) from None


#: method -> {param: (required, checker)}
PARAMS: dict[str, dict[str, tuple[bool, Callable[[Any], Any]]]] = {
    "login": {"username": (True, _text("username", 256)), "token": (True, _text("token", 4096))},
    "ping": {},
    "lineOpen": {
        "line": (True, _line),
        "seq": (False, _seq),
        "epoch": (False, _text("epoch", 64)),
    },
    "lineClose": {"line": (True, _line)},
    "lineGetCalls": {"line": (True, _line)},
    "lineGetCallInfo": {"call": (True, _call)},
    "lineMakeCall": {"line": (True, _line), "number": (True, _number)},
    "lineDrop": {"call": (True, _call)},
    "lineBlindTransfer": {"call": (True, _call), "number": (True, _number)},
    "lineRedirect": {"call": (True, _call), "number": (True, _number)},
}

#: TAPI functions Asterisk cannot do from the AMI, with the sentence we answer.
UNAVAILABLE: dict[str, str] = {
    "lineAnswer": (
        "Asterisk cannot make a desk phone go off-hook remotely; answer on the phone "
        "(some phones offer this through their own HTTP API, which this server does not drive)"
    ),
    "lineHold": "hold is a feature of the phone, not of the AMI; put the call on hold on the phone",
    "lineUnhold": "hold is a feature of the phone, not of the AMI; retrieve the call on the phone",
    "lineSwapHold": "hold is a feature of the phone, not of the AMI",
    "lineSetupTransfer": (
        "consultation transfer needs the phone's hold; use lineBlindTransfer, "
        "or transfer on the phone"
    ),
    "lineCompleteTransfer": "consultation transfer needs the phone's hold; use lineBlindTransfer",
    "lineSetupConference": "conferences are not offered by this server",
    "lineAddToConference": "conferences are not offered by this server",
    "linePark": "call parking is not offered by this server",
    "lineUnpark": "call parking is not offered by this server",
    "linePickup": "call pickup is done on the phone (for example with *8) in Asterisk",
    "lineDial": "dialling digits into an existing call is not possible through the AMI; use lineMakeCall",
    "lineGenerateDigits": "sending DTMF into a call is not offered by this server",
    "lineForward": "call forwarding is configured in the dialplan or on the phone",
    "lineAccept": "Asterisk has no separate accept step; the call rings until it is answered",
}


def check_params(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Checked and normalised params of a known method, or :class:`ParamsError`."""
    spec = PARAMS[method]
    unknown = [k for k in params if k not in spec]
    if unknown:
        raise ParamsError(f"unknown parameter(s) for {method}: {', '.join(sorted(map(repr, unknown)))}")
    out: dict[str, Any] = {}
    for name, (required, checker) in spec.items():
        if name in params:
            out[name] = checker(params[name])
        elif required:
            raise ParamsError(f"{method} needs the parameter {name!r}")
    return out


# -- encoding -------------------------------------------------------------------


def encode(obj: Mapping[str, Any]) -> bytes:
    """One JSON line. Never fails on a lone surrogate: it becomes the JSON escape ``\\udXXX``."""
    return _dumps(obj).encode("utf-8", "backslashreplace") + b"\n"


def encode_result(rid: Any, result: Any) -> bytes:
    return encode({"jsonrpc": "2.0", "id": rid, "result": result})


#: Bytes a streamed answer is cut into (see :func:`encode_result_stream`).
STREAM_CHUNK = 16384

_MARK = "\x00items\x00"
_MARK_JSON = _dumps([_MARK]).encode("utf-8")  # b'["\\u0000items\\u0000"]'


def encode_result_stream(rid: Any, key: str, items: Iterable[Any], rest: Mapping[str, Any],
                         chunk: int = STREAM_CHUNK) -> Iterator[bytes]:
    """``encode_result(rid, {key: list(items), **rest})``, in chunks of about ``chunk`` bytes.

    Each item is encoded only when the chunk it is in is asked for, so a
    large answer (a line's calls) costs memory and reactor time as the
    client reads it, not all at once. Joined, the chunks are exactly the
    bytes :func:`encode_result` gives.
    """
    head, tail = encode_result(rid, {key: [_MARK], **rest}).split(_MARK_JSON, 1)
    yield from join_chunks(_items_json(items), head + b"[", b"]" + tail, b",", chunk)


def _items_json(items: Iterable[Any]) -> Iterator[bytes]:
    for item in items:
        yield _dumps(item).encode("utf-8", "backslashreplace")


def join_chunks(parts: Iterable[bytes], first: bytes, last: bytes, sep: bytes = b"",
                chunk: int = STREAM_CHUNK) -> Iterator[bytes]:
    """``first + sep.join(parts) + last``, cut into pieces of at least ``chunk`` bytes (the last one shorter)."""
    pending = [first]
    size = len(first)
    lead = b""
    for part in parts:
        pending.append(lead)
        pending.append(part)
        size += len(part) + len(lead)
        lead = sep
        if size >= chunk:
            yield b"".join(pending)
            pending, size = [], 0
    pending.append(last)
    yield b"".join(pending)


def encode_batch(answers: list[bytes]) -> bytes:
    """One line holding the array of a batch's answers (each an encoded line)."""
    return b"[" + b",".join(a.rstrip(b"\n") for a in answers) + b"]\n"


def encode_batch_stream(answers: Iterable[bytes | Iterable[bytes]]) -> Iterator[bytes]:
    """:func:`encode_batch` for answers of which some are streams (:func:`encode_result_stream`'s chunks)."""
    yield b"["
    for i, answer in enumerate(answers):
        if i:
            yield b","
        if isinstance(answer, bytes):
            yield answer.rstrip(b"\n")
            continue
        last = None
        for chunk in answer:  # one chunk behind: the last one loses its line end
            if last is not None:
                yield last
            last = chunk
        if last is not None:
            yield last.rstrip(b"\n")
    yield b"]\n"


def encode_error(rid: Any, code: int, message: str, data: Mapping[str, Any] | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if data:
        error["data"] = dict(data)
    return encode({"jsonrpc": "2.0", "id": rid, "error": error})


def encode_notification(method: str, params: Mapping[str, Any]) -> bytes:
    return encode({"jsonrpc": "2.0", "method": method, "params": params})


#: The params key that carries a TapiEvent's ``param``, per message.
PARAM_KEY = {
    CALLSTATE: "state",
    CALLINFO: "infostate",
    DEVSTATE: "devstate",
}


def event_params(event: TapiEvent, seq: int, line: str | None = None) -> dict[str, Any]:
    """The ``params`` of the notification for ``event``.

    ``line`` overrides ``event.line`` (for a line-less LINE_LINEDEVSTATE sent to
    each open line).
    """
    params = _params_but_callinfo(event, seq, line)
    if event.call is not None:
        params["callinfo"] = dict(event.callinfo)
    return params


def _params_but_callinfo(event: TapiEvent, seq: int, line: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"line": line if line is not None else event.line}
    if event.call is not None:
        params["call"] = event.call
    key = PARAM_KEY.get(event.msg)
    if key is not None and event.param is not None:
        params[key] = event.param
    if event.mode is not None:
        params["mode"] = event.mode
    params["seq"] = seq
    if event.synthetic:
        params["synthetic"] = True
    return params


def encode_event(event: TapiEvent, seq: int, line: str | None = None) -> bytes:
    """The notification line for ``event`` numbered ``seq``.

    The same bytes as ``encode_notification(event.msg, event_params(...))``
    (a test holds that on every capture), written by a template, not by
    building those dicts to encode them: the text up to the line's value is
    made once per message name, each value is encoded alone (a string by
    the encoder's own string function) and the keys are the constants of
    :func:`event_params`, in its order. A call's callinfo is encoded once per
    version: the model shares one snapshot among the events of a version, so
    NEWCALL, OFFERING and the states after it reuse its JSON.
    """
    msg = event.msg
    head = _HEADS.get(msg) if type(msg) is str else None
    if head is None:
        head = _head(msg)
    prefix, param_key = head
    value = event.line if line is None else line
    out = prefix + (_string(value) if type(value) is str else _dumps(value))
    call = event.call
    if call is not None:
        out += ',"call":' + (repr(call) if type(call) is int else _dumps(call))
    value = event.param
    if param_key is not None and value is not None:
        out += param_key + (_string(value) if type(value) is str else _dumps(value))
    value = event.mode
    if value is not None:
        out += ',"mode":' + (_string(value) if type(value) is str else _dumps(value))
    out += ',"seq":' + (repr(seq) if type(seq) is int else _dumps(seq))
    if event.synthetic:
        out += ',"synthetic":true'
    if call is not None:
        out += ',"callinfo":' + _callinfo_json(event.callinfo)
    return (out + "}}").encode("utf-8", "backslashreplace") + b"\n"


#: The encoder's own function for a string (``ensure_ascii=False``): what it writes for one in a dict.
_string = json.encoder.encode_basestring
# message name -> (the line's text up to the line's value, the param's key text or None)
_HEADS: dict[str, tuple[str, str | None]] = {}


def _head(msg: Any) -> tuple[str, str | None]:
    key = PARAM_KEY.get(msg) if isinstance(msg, str) else None
    head = ('{"jsonrpc":"2.0","method":' + _dumps(msg) + ',"params":{"line":',
            None if key is None else ',' + _dumps(key) + ':')
    if type(msg) is str and len(_HEADS) < 64:
        _HEADS[msg] = head
    return head


class _LastCallinfo:
    """The JSON of the last callinfo snapshot encoded (one entry: a version's events come together)."""

    snapshot: Any = None
    text = ""


def _callinfo_json(callinfo: Any) -> str:
    if type(callinfo) is not MappingProxyType:  # not the model's frozen snapshot: may change in place
        return _dumps(dict(callinfo))
    last = _LastCallinfo
    if callinfo is not last.snapshot:
        last.text = _dumps(dict(callinfo))
        last.snapshot = callinfo
    return last.text


_PLACEHOLDER = "\x00line\x00"
_PLACEHOLDER_JSON = encode({"": _PLACEHOLDER})[4:-2]  # b'"\\u0000line\\u0000"'


def encode_event_template(event: TapiEvent, seq: int) -> Callable[[str], bytes]:
    """``line -> bytes`` for a line-less event sent to many lines (LINE_LINEDEVSTATE).

    Encodes the event once and splices each line's name in: the link going
    down must not cost one full JSON encoding per open line.
    """
    whole = encode_event(event, seq, _PLACEHOLDER)
    head, tail = whole.split(_PLACEHOLDER_JSON, 1)

    def for_line(line: str) -> bytes:
        return head + _dumps(line).encode("utf-8", "backslashreplace") + tail

    return for_line


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
