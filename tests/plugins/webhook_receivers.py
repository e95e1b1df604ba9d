"""Webhook receivers for the call_webhooks tests, served by tests.plugins.http_servers.Server.

:class:`ZammadReceiver` is Zammad's generic CTI endpoint as its documentation
(docs.zammad.org, "Generic CTI": newCall, answer, hangup) and its code
(``Integration::CtiController``, ``Cti::Driver::Base``, ``Cti::Log.process``)
define it: form fields by name, ``direction`` in/out (else 422 "Invalid
direction!"), a newCall whose callId exists and an answer or hangup whose
callId does not raise (HTTP 500), ``cause`` one of the seven documented words.
Everything it would refuse or that Zammad's docs do not name is recorded in
``errors``; a test asserts there are none.

:class:`JsonReceiver` records our JSON events and checks their signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs

ZAMMAD_FIELDS = {"event", "from", "to", "direction", "callId", "user[]", "queue", "cause", "answeringNumber"}
ZAMMAD_CAUSES = {"normalClearing", "busy", "cancel", "noAnswer", "congestion", "notFound", "forwarded"}
OK = (200, {"content-type": "application/json"}, b"{}")


class ZammadReceiver:
    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, list[str]]]] = []  # (event, form) of every accepted request
        self.calls: dict[str, str] = {}  # callId -> state
        self.errors: list[str] = []
        self.bodies: list[bytes] = []
        self.idempotency: list[str] = []
        self.down: int | None = None  # a status to answer with instead (an outage behind a proxy)

    def __call__(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        if request.method == b"HEAD":
            return OK  # the plugin's reachability check at start-up
        if self.down is not None:
            return self.down, {}, b"down"
        body = request.content.getvalue()
        self.bodies.append(body)
        self.idempotency.append(request.getHeader("idempotency-key") or "")
        ctype = request.getHeader("content-type") or ""
        if ctype != "application/x-www-form-urlencoded":
            self.errors.append(f"content type {ctype!r}")
        form = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        unknown = set(form) - ZAMMAD_FIELDS
        if unknown:
            self.errors.append(f"fields Zammad does not know: {sorted(unknown)}")
        one = {k: v[0] for k, v in form.items() if k != "user[]"}
        for key, values in form.items():
            if key != "user[]" and len(values) != 1:
                self.errors.append(f"{key} given {len(values)} times")
        event, call_id = one.get("event"), one.get("callId", "")
        if one.get("direction") not in ("in", "out"):
            return 422, {}, b'{"error":"Invalid direction!"}'
        if not call_id or len(call_id) > 250:
            self.errors.append(f"callId {call_id!r}")
        for key in ("from", "to"):
            if not one.get(key):
                self.errors.append(f"{event}: {key} is empty")
        if event == "newCall":
            if call_id in self.calls:
                return 500, {}, f'{{"error":"call_id {call_id} already exists!"}}'.encode()
            self.calls[call_id] = "newCall"
        elif event in ("answer", "hangup"):
            if call_id not in self.calls:
                return 500, {}, f'{{"error":"No such call_id {call_id}"}}'.encode()
            if event == "hangup" and one.get("cause") not in ZAMMAD_CAUSES:
                self.errors.append(f"hangup cause {one.get('cause')!r}")
            if self.calls[call_id] == "hangup":
                self.errors.append(f"{event} after hangup of {call_id}")
            self.calls[call_id] = event
        else:
            return 500, {}, b'{"error":"Unknown event"}'
        self.received.append((event, form))
        return OK

    def events_of(self, call_id: str) -> list[str]:
        return [event for event, form in self.received if form["callId"] == [call_id]]


class JsonReceiver:
    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret
        self.received: list[dict] = []
        self.errors: list[str] = []
        self.bodies: list[bytes] = []
        self.down: int | None = None

    def __call__(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        if request.method == b"HEAD":
            return OK
        if self.down is not None:
            return self.down, {}, b"down"
        body = request.content.getvalue()
        self.bodies.append(body)
        if request.getHeader("content-type") != "application/json":
            self.errors.append("content type")
        if self.secret is not None:
            want = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, request.getHeader("x-asttapi-signature") or ""):
                return 401, {}, b"bad signature"
        event = json.loads(body)
        if request.getHeader("idempotency-key") != event["id"]:
            self.errors.append("Idempotency-Key is not the event's id")
        if request.getHeader("x-asttapi-event") != event["event"]:
            self.errors.append("X-Asttapi-Event is not the event's name")
        self.received.append(event)
        return OK
