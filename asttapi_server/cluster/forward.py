"""Client requests forwarded to a PBX's active node, sans-IO: ids, deadlines, the wire of requests
and answers.

A node whose client asks for lineMakeCall, lineDrop or a transfer on a PBX
it does not hold appends the request to the PBX's request stream and waits
for the answer on its own reply stream. :class:`Pending` keeps what it waits
for: each request's id (unique per incarnation) and deadline; :meth:`expired`
says which timed out (the client then gets what a timed-out AMI action gets
today: LINEERR_OPERATIONFAILED, "may or may not have been carried out").
The active node answers with :func:`answer_body`, the asking node turns it
back with :func:`reply_of`: a result, or the same :class:`TelephonyError`
(LINEERR name and sentence) a local request would have got.

Pure module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asttapi_server.errors import LinkDown, TelephonyError, lineerr_of, unexpected

__all__ = ["OPS", "Pending", "Waiting", "request_fields", "parse_request", "answer_body", "reply_of",
           "orphan_body"]

#: The requests that may be forwarded, and their arguments.
OPS: Mapping[str, tuple[str, ...]] = {
    "make_call": ("line", "number", "owner"),
    "drop": ("handle",),
    "blind_transfer": ("handle", "number"),
}
#: The AMI action each stands for (in error texts, as today's answers name it).
ACTION_NAMES = {"make_call": "Originate", "drop": "Hangup", "blind_transfer": "Redirect"}


@dataclass(frozen=True)
class Waiting:
    id: str
    op: str
    deadline: float


class Pending:
    """The asking node's requests in flight."""

    def __init__(self, incarnation: str) -> None:
        self.incarnation = incarnation
        self._next = 0
        self._waiting: dict[str, Waiting] = {}

    def new(self, op: str, now: float, timeout: float) -> Waiting:
        if op not in OPS:
            raise ValueError(f"not a forwardable request: {op!r}")
        self._next += 1
        waiting = Waiting(f"{self.incarnation}/{self._next}", op, now + timeout)
        self._waiting[waiting.id] = waiting
        return waiting

    def answered(self, request_id: str) -> Waiting | None:
        """The request an answer is for (None: unknown, timed out already, or another incarnation's)."""
        return self._waiting.pop(request_id, None)

    def expired(self, now: float) -> list[Waiting]:
        gone = [w for w in self._waiting.values() if w.deadline <= now]
        for w in gone:
            del self._waiting[w.id]
        return gone

    def next_deadline(self) -> float | None:
        return min((w.deadline for w in self._waiting.values()), default=None)

    def __len__(self) -> int:
        return len(self._waiting)


def request_fields(waiting: Waiting, args: Mapping[str, Any], reply_to: str, ttl_ms: int) -> list[Any]:
    """The request stream entry: id, reply node, op, arguments (JSON), how long it may be claimed."""
    unknown = set(args) - set(OPS[waiting.op])
    if unknown:
        raise ValueError(f"{waiting.op} takes no {sorted(unknown)}")
    return ["id", waiting.id, "to", reply_to, "op", waiting.op,
            "a", json.dumps(dict(args), separators=(",", ":")), "ttl", ttl_ms]


@dataclass(frozen=True)
class Request:
    id: str
    reply_to: str
    op: str
    args: Mapping[str, Any]
    ttl_ms: int
    at_ms: int  # when Redis took it (its stream ID)


def parse_request(entry_id: bytes, raw: list) -> Request:
    """A request stream entry; ValueError if it is not a well-formed request."""
    f = {raw[i]: raw[i + 1] for i in range(0, len(raw) - 1, 2)}
    try:
        op = f[b"op"].decode()
        args = json.loads(f[b"a"])
        request = Request(f[b"id"].decode(), f[b"to"].decode(), op, args, int(f[b"ttl"]),
                          int(entry_id.split(b"-")[0]))
    except (KeyError, ValueError, UnicodeDecodeError):
        raise ValueError("not a request entry") from None
    if op not in OPS or not isinstance(args, dict) or set(args) - set(OPS[op]):
        raise ValueError(f"not a forwardable request: {op!r}")
    return request


def answer_body(op: str, result: Any = None, error: BaseException | None = None) -> tuple[str, str]:
    """(status, body) of an answer: "ok" and the result as JSON, or "error" and LINEERR + sentence."""
    if error is None:
        return "ok", json.dumps(result)
    mapped = lineerr_of(error, ACTION_NAMES.get(op, op)) or unexpected(ACTION_NAMES.get(op, op))
    return "error", json.dumps({"lineerr": mapped.lineerr, "message": str(mapped)})


def orphan_body(op: str) -> str:
    """The answer a new active node gives a request its predecessor claimed and never answered."""
    name = ACTION_NAMES.get(op, op)
    return answer_body(op, error=TelephonyError(
        "LINEERR_OPERATIONFAILED",
        f"The server node carrying out {name} stopped before it answered; the request may or may not"
        " have been carried out (it is never sent twice)."))[1]


def reply_of(status: bytes, body: bytes) -> tuple[Any, TelephonyError | None]:
    """(result, None) or (None, the error to give the client) from a reply stream entry."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, TelephonyError("LINEERR_OPERATIONFAILED", "The node that carried out the request"
                                    " answered something unreadable; it may or may not have been done.")
    if status == b"ok":
        return value, None
    if isinstance(value, dict) and isinstance(value.get("lineerr"), str):
        return None, TelephonyError(value["lineerr"], str(value.get("message", "")))
    return None, TelephonyError("LINEERR_OPERATIONFAILED", "The request failed.")


def no_holder(pbx: str) -> LinkDown:
    """What a request for a PBX no node holds gets (mapped to LINEERR_DISCONNECTED, as a down link)."""
    return LinkDown(f"no node holds the link to PBX {pbx!r} now")
