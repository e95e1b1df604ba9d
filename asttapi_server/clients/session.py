"""One client's session: login state, open lines, and the JSON-RPC methods.

Transport-free: it is given a ``send(bytes)`` callable for its lines and a
``client_error()`` callable it calls for every error the client caused (the
protocol counts those to stop floods). Telephony answers arrive as Deferreds;
an answer that arrives after the connection closed is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import replace
from typing import Any, Protocol

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from asttapi_server import __version__
from asttapi_server.clients import codec
from asttapi_server.clients.auth import ANONYMOUS, Authenticator, User
from asttapi_server.clients.codec import Batch, ParamsError, Reject, Request
from asttapi_server.clients.hub import Hub, sends_newcall
from asttapi_server.core.constants import CALLSTATE, INSERVICE, NEWCALL, OUTOFSERVICE
from asttapi_server.errors import TelephonyError, lineerr_of, link_down, unexpected
from asttapi_server.names import log_text
from asttapi_server.throttle import LogThrottle


class CallModelView(Protocol):
    """The part of ``core.model.CallModel`` a session reads."""

    def get(self, handle: int) -> Any: ...
    def calls_on_line(self, line: str) -> list[Any]: ...
    def snapshot(self, call: Any, line: str) -> dict: ...


class Telephony(Protocol):
    """Implemented by ``pbx.Switchboard`` over every PBX (see docs/architecture.md).

    ``link_up``: every PBX in service. A telephony that knows several PBXs also has
    ``in_service(line=None, handle=None) -> bool`` (the line's or the call's PBX) and
    ``pbx_states() -> {name: "up" | "down"}``; without them ``link_up`` stands for both.
    """

    link_up: bool
    model: CallModelView

    def make_call(self, line: str, number: str, owner: Hashable) -> Deferred: ...
    def drop(self, handle: int) -> Deferred: ...
    def blind_transfer(self, handle: int, number: str) -> Deferred: ...


#: Errors the client caused; too many of them close the connection.
CLIENT_ERRORS = frozenset(
    {codec.PARSE_ERROR, codec.INVALID_REQUEST, codec.METHOD_NOT_FOUND, codec.INVALID_PARAMS, codec.AUTH_ERROR}
)

#: Default of ``server.max_lines_per_session``.
MAX_LINES_PER_SESSION = 100


class _BatchAnswers:
    """Collects the answers of one batch; sends them as one array when all are in.

    An answer is its encoded line, or the chunks of a large one still to be
    made (``codec.encode_result_stream``): the array is then streamed too.
    """

    def __init__(self, session: "Session") -> None:
        self._session = session
        self._answers: list[bytes | Iterator[bytes] | None] = []
        self._missing = 0
        self._sealed = False

    def slot(self) -> Callable[[bytes], None]:
        index = len(self._answers)
        self._answers.append(None)
        self._missing += 1

        def put(data: bytes | Iterator[bytes]) -> None:
            if self._answers[index] is None:
                self._answers[index] = data
                self._missing -= 1
                self._flush()

        return put

    def sealed(self) -> None:
        """Every item has been handed over; answers still due arrive later."""
        self._sealed = True
        self._flush()

    def _flush(self) -> None:
        if self._sealed and self._missing == 0 and self._answers and not self._session.closed:
            answers, self._answers = self._answers, []
            if all(isinstance(a, bytes) for a in answers):
                self._session.send(codec.encode_batch(answers))  # type: ignore[arg-type]
            else:
                self._session._stream(codec.encode_batch_stream(answers))  # type: ignore[arg-type]


class Session:
    """Methods of one connection; see docs/protocol.md for each."""

    log = Logger()

    def __init__(
        self,
        hub: Hub,
        telephony: Telephony,
        authenticator: Authenticator,
        *,
        send: Callable[[bytes], None],
        client_error: Callable[[], None] = lambda: None,
        close: Callable[[int, str], None] = lambda code, message: None,
        peer: str = "?",
        max_login_failures: int = 3,
        login: Callable[[str, str], tuple[User | None, float | None]] | None = None,
        max_lines: int = MAX_LINES_PER_SESSION,
        now: Callable[[], float] = lambda: 0.0,
        refusals: LogThrottle | None = None,
        logged_in: Callable[[User], None] = lambda user: None,
        stream: Callable[[Iterator[bytes]], None] | None = None,
        charge: Callable[[float], None] = lambda cost: None,
    ) -> None:
        self.hub = hub
        self.telephony = telephony
        self.auth = authenticator
        self.send = send
        self._client_error = client_error
        self._close = close
        self.peer = peer
        self.sid = hub.new_sid()
        self.user: User | None = None if authenticator.login_required else ANONYMOUS
        self.lines: set[str] = set()
        self.closed = False
        self._login_failures = 0
        self._max_login_failures = max_login_failures
        # (username, token) -> (user, seconds to wait): the factory's LoginGate,
        # which limits and logs failures per address and user.
        self._login = login or (lambda username, token: (authenticator.authenticate(username, token), None))
        self.max_lines = max_lines
        self._now = now
        # Shared by the factory's sessions: refused call control is logged
        # once a minute per user and kind, however hard a client tries.
        self._refusals = refusals if refusals is not None else LogThrottle()
        # The protocol's: a login happened (limits move to the user); a large
        # answer to write as the client reads it; a large answer's extra cost.
        self._logged_in = logged_in
        self._stream = stream if stream is not None else (lambda chunks: self.send(b"".join(chunks)))
        self._charge = charge

    @property
    def username(self) -> str:
        if self.user is None:
            return "(not logged in)"
        return self.user.name or "(anonymous)"

    def hello(self) -> bytes:
        return codec.encode_notification(
            "hello",
            {
                "server": "asttapi-server",
                "version": __version__,
                "protocol": codec.PROTOCOL_VERSION,
                "login_required": self.auth.login_required,
                "epoch": self.hub.epoch,
                "pbx": "up" if self.telephony.link_up else "down",
                **self._pbxs(),
            },
        )

    def _pbxs(self) -> dict[str, Any]:
        """hello's ``pbxs``: each PBX's state by name (a telephony that knows its PBXs)."""
        states = getattr(self.telephony, "pbx_states", None)
        return {"pbxs": states()} if states is not None else {}

    def _in_service(self, line: str | None = None, call: int | None = None) -> bool:
        """Is the PBX of ``line`` (or of ``call``) in service? (One PBX: the link.)"""
        in_service = getattr(self.telephony, "in_service", None)
        if in_service is None:
            return self.telephony.link_up
        return in_service(line=line, handle=call)

    def close(self) -> None:
        """The connection is gone: stop deliveries, drop late answers."""
        self.closed = True
        for line in self.lines:
            self.hub.unsubscribe(self, line)
        self.lines.clear()

    # -- answering --------------------------------------------------------

    def error(self, request: Request | None, code: int, message: str, data: dict | None = None) -> None:
        rid = request.id if request is not None else None
        if code in CLIENT_ERRORS:
            self._client_error()
        if self.closed or (request is not None and request.notification):
            return
        encoded = codec.encode_error(rid, code, message, data)
        if request is not None and request.reply is not None:
            request.reply(encoded)
        else:
            self.send(encoded)

    def _result(self, request: Request, result: Any) -> None:
        if not self.closed and not request.notification:
            data = codec.encode_result(request.id, result)
            (request.reply or self.send)(data)

    def _telephony_error(self, request: Request, lineerr: str, message: str) -> None:
        self.error(request, codec.TELEPHONY_ERROR, message, {"lineerr": lineerr})

    # -- dispatch ---------------------------------------------------------

    def handle_batch(self, batch: Batch) -> None:
        """Answer a JSON-RPC batch: each item through :meth:`handle`, as if it came alone.

        Every item counts against the limits like a request of its own; the
        answers (none for notifications) go back as one array once the last
        of them is in, in the order of the requests. Events a request causes
        (a lineOpen's announcements and replay) are sent as they happen, so
        they may come before that array.
        """
        answers = _BatchAnswers(self)
        for item in batch.items:
            if self.closed:
                break
            if isinstance(item, Reject):
                self._client_error()
                answers.slot()(codec.encode_error(item.id, item.code, item.message))
            elif item.notification:
                self.handle(item)
            else:
                self.handle(replace(item, reply=answers.slot()))
        answers.sealed()

    def handle(self, request: Request) -> None:
        """Answer one request (now, or when the PBX answers)."""
        method = request.method
        if method in codec.UNAVAILABLE and method not in codec.PARAMS:
            self._telephony_error(
                request,
                "LINEERR_OPERATIONUNAVAIL",
                f"{method} is not available: {codec.UNAVAILABLE[method]}",
            )
            return
        handler = getattr(self, "do_" + method, None) if method in codec.PARAMS else None
        if handler is None:
            self.error(request, codec.METHOD_NOT_FOUND, f"Method not found: {method[:100]!r}")
            return
        if self.user is None and method not in ("login", "ping"):
            self.error(request, codec.AUTH_ERROR, "Login required: call login {username, token} first")
            return
        try:
            params = codec.check_params(method, request.params)
        except ParamsError as e:
            self.error(request, codec.INVALID_PARAMS, f"Invalid params: {e}")
            return
        try:
            handler(request, **params)
        except TelephonyError as e:
            self._telephony_error(request, e.lineerr, str(e))
        except Exception as e:
            # A server bug a client can trigger at will: one traceback a minute per kind.
            held = self._refusals.allow(("internal", method, type(e)), self._now())
            if held is not None:
                self.log.failure(
                    "{method} from {user} at {peer} failed ({held} more like it since the last report)",
                    method=method, user=log_text(self.username), peer=log_text(self.peer), held=held,
                )
            self.error(request, codec.INTERNAL_ERROR, "Internal error; the server log has the details")

    def _async(self, request: Request, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Run a telephony call and answer with its result or mapped error."""
        d = maybeDeferred(fn, *args, **kw)
        d.addCallbacks(lambda result: self._result(request, result), lambda f: self._failed(request, what, f))
        d.addErrback(lambda f: self.log.failure("answering {what} failed", f, what=what))

    def _failed(self, request: Request, what: str, f: Failure) -> None:
        mapped = lineerr_of(f.value, what)  # the one AMI error -> LINEERR mapping
        if mapped is None:
            self.log.failure(
                "{what} for {user} at {peer} failed", f, what=what, user=log_text(self.username), peer=log_text(self.peer)
            )
            mapped = unexpected(what)
        self._telephony_error(request, mapped.lineerr, str(mapped))

    # -- checks ------------------------------------------------------------

    def _open_line(self, line: str) -> str:
        if line not in self.lines:
            raise TelephonyError("LINEERR_INVALLINEHANDLE", f"line {line!r} is not open; call lineOpen first")
        return line

    # Rights follow the call (docs/security.md, "Colleagues and rights"):
    # * a line may ACT on a call (drop, transfer, redirect) while it holds
    #   it: tracking it and neither DISCONNECTED nor IDLE (Call.holding_lines);
    # * a line may READ a call while it tracks it (not IDLE), as lineGetCalls
    #   lists it; once the whole call has ended, every line that had it may
    #   read the final record until it is freed (calls.linger);
    # * what is read shows only this session's own open lines of the call.
    # Each check walks the call's few lines, never all the session's lines.

    def _readable_call(self, handle: int) -> tuple[Any, str]:
        """The call and the open line through which this session sees it, or INVALCALLHANDLE."""
        call = self.telephony.model.get(handle)
        if call is not None:
            lines = self.lines
            for line in call.holding_lines:
                if line in lines:
                    return call, line
            for line in call.lines:
                if line in lines:
                    return call, line
            if call.ended is not None:
                for line in call.seen_lines:
                    if line in lines:
                        return call, line
        raise TelephonyError("LINEERR_INVALCALLHANDLE", f"there is no call {handle} on the lines you have open")

    def _held_call(self, request: Request, handle: int) -> tuple[Any, str]:
        """The call and an open line that holds it now, or a refusal (logged)."""
        try:
            call, line = self._readable_call(handle)
        except TelephonyError as e:
            self._refused(request, handle, None, e.lineerr)
            raise
        if line in call.holding_lines:
            return call, line
        state = (self.telephony.model.snapshot(call, line)["state"] or "?").removeprefix("LINECALLSTATE_")
        if call.holding_lines:
            lineerr = "LINEERR_NOTOWNER"
            message = (
                f"call {handle} has left line {line!r} (it is {state} there) and is held by another line;"
                " only a line that holds a call may act on it"
            )
        else:
            lineerr = "LINEERR_INVALCALLSTATE"
            message = f"call {handle} is {state} on line {line!r}; there is nothing left to act on"
        self._refused(request, handle, line, lineerr)
        raise TelephonyError(lineerr, message)

    def _refused(self, request: Request, handle: int, line: str | None, lineerr: str) -> None:
        held = self._refusals.allow(("refused", self.username, request.method, lineerr), self._now())
        if held is None:
            return
        self.log.warn(
            "refused {method} of call {handle} for {user} at {peer} on line {line}: {lineerr}{more}",
            method=request.method,
            handle=handle,
            user=log_text(self.username),
            peer=log_text(self.peer),
            line=log_text(line) if line is not None else "(none of its lines)",
            lineerr=lineerr,
            more=f" ({held} more like it since the last report)" if held else "",
        )

    def _snapshot(self, call: Any, line: str) -> dict:
        """The model's snapshot, its ``lines`` cut to what this session has open."""
        snap = self.telephony.model.snapshot(call, line)
        lines = snap.get("lines")
        if lines:
            mine = self.lines
            snap["lines"] = [name for name in lines if name == line or name in mine]
        return snap

    def _link(self, line: str | None = None, call: int | None = None) -> None:
        if not self._in_service(line, call):
            raise link_down()

    # -- methods -------------------------------------------------------------

    def do_ping(self, request: Request) -> None:
        self._result(request, {"seq": self.hub.seq})

    def do_login(self, request: Request, username: str, token: str) -> None:
        if not self.auth.login_required:
            self.error(request, codec.AUTH_ERROR, "No users are configured on this server; no login is needed")
            return
        if self.user is not None:
            self.error(request, codec.AUTH_ERROR, f"Already logged in as {self.username!r}")
            return
        user, wait = self._login(username, token)
        if user is None:
            self._login_failures += 1
            if wait is not None:  # the token was not even looked at
                self.error(
                    request, codec.AUTH_ERROR,
                    f"Too many failed logins from your address or for this user; try again in {wait:g} seconds",
                    {"retry_after": wait},
                )
            else:
                self.error(request, codec.AUTH_ERROR, "Login failed: unknown user or wrong token")
            if self._login_failures >= self._max_login_failures:
                self._close(codec.AUTH_ERROR, "Too many failed logins; closing the connection")
            return
        self.user = user
        self._logged_in(user)
        self.log.info("{peer} logged in as {user}", peer=log_text(self.peer), user=log_text(user.name))
        self._result(request, {"user": user.name, "lines": list(user.lines)})

    def do_lineOpen(self, request: Request, line: str, seq: int | None = None, epoch: str | None = None) -> None:
        assert self.user is not None
        if not self.user.may_open(line):
            raise TelephonyError("LINEERR_NOTOWNER", f"user {self.username!r} may not open line {line!r}")
        if line not in self.lines and len(self.lines) >= self.max_lines:
            raise TelephonyError(
                "LINEERR_RESOURCEUNAVAIL",
                f"this connection has {len(self.lines)} lines open, the most server.max_lines_per_session"
                " allows; close one first",
            )
        calls = self._calls_now(line)
        result: dict[str, Any] = {"seq": self.hub.seq, "epoch": self.hub.epoch, "devstate": self._devstate(line)}
        missed: list[bytes] = []
        if seq is not None:
            got = self.hub.missed(line, seq, epoch, sid=self.sid)
            if got is None:
                result["replay"] = "gap"
            else:
                missed = got
                result["replay"] = "ok"
                result["replayed"] = len(missed)
        self._answer_calls(request, line, calls, result)
        if result.get("replay") != "ok":
            # TAPI announces calls that exist when a line is opened with
            # LINE_NEWCALL + LINE_CALLSTATE; so do we, so an event-driven client
            # (or a person with nc) pops a call that was already ringing.
            self._stream(self._announcements(line, calls, result["seq"]))
        for data in missed:
            self.send(data)
        self.lines.add(line)
        self.hub.subscribe(self, line)

    def _calls_now(self, line: str) -> list[Any]:
        """The calls on ``line`` now; listing them costs a request-budget token per call."""
        calls = self.telephony.model.calls_on_line(line)
        if calls:
            self._charge(len(calls))
        return calls

    def _answer_calls(self, request: Request, line: str, calls: list[Any], rest: dict[str, Any]) -> None:
        """Answer with ``{"calls": [...], **rest}``: streamed as the client reads it (in a batch: at once).

        Each call is described when its part of the answer is written: a call
        that has left the line by then is left out (its events follow the
        answer), so a slow reader holds the calls, not their encoding.
        """
        if request.notification or self.closed:
            return
        answer = codec.encode_result_stream(request.id, "calls", self._described(line, calls), rest)
        (request.reply or self._stream)(answer)  # in a batch: its part of the array, made as it is read

    def _described(self, line: str, calls: list[Any]) -> Iterator[dict]:
        for call in calls:
            if line in call.lines:
                yield self._snapshot(call, line)

    def _devstate(self, line: str) -> str:
        """The line's device state now, as TAPI's lineGetLineDevStatus would tell it.

        LINE_LINEDEVSTATE events then report changes from this: a client
        told OUTOFSERVICE here hears INSERVICE when the link comes up; one
        told INSERVICE hears nothing until the link is lost.
        """
        return INSERVICE if self._in_service(line) else OUTOFSERVICE

    def _announcements(self, line: str, calls: list[Any], seq: int) -> Iterator[bytes]:
        """LINE_NEWCALL + LINE_CALLSTATE (``existing``) for each call still on ``line``, made as they are read."""
        def lines() -> Iterator[bytes]:
            for snap in self._described(line, calls):
                handle = snap["call"]
                base = {"line": line, "call": handle, "seq": seq, "existing": True, "callinfo": snap["callinfo"]}
                call = self.telephony.model.get(handle)
                if sends_newcall(getattr(call, "owner", None), self.sid):
                    yield codec.encode_notification(NEWCALL, base)
                if snap.get("state"):
                    params = {**base, "state": snap["state"]}
                    if snap.get("mode"):
                        params["mode"] = snap["mode"]
                    yield codec.encode_notification(CALLSTATE, params)

        return codec.join_chunks(lines(), b"", b"")

    def do_lineClose(self, request: Request, line: str) -> None:
        self._open_line(line)
        self.lines.discard(line)
        self.hub.unsubscribe(self, line)
        self._result(request, {})

    def reconfigure(self, auth: Any, revoked: set[str]) -> tuple[tuple[str, str] | None, list[str]]:
        """A reload's users (``auth``, the authenticator with them; ``revoked``: users whose token
        changed): ``((who, why), [])`` when this session must be closed, else ``(None, lines cut)``
        after taking the user's new rights (a line no longer allowed gets ``LINE_CLOSE``)."""
        user = self.user
        if user is None:
            return None, []
        if user.name is None:  # anonymous: no [users] before
            if auth.login_required:
                return ("(anonymous)", "This server now requires a login; reconnect and log in"), []
            return None, []
        now = auth.user(user.name)
        if user.name in revoked or now is None:
            why = "was removed from" if now is None else "has a new token in"
            return (user.name, f"User {user.name!r} {why} the configuration; log in again"), []
        self.user = now
        cut = []
        for line in sorted(self.lines):
            if not now.may_open(line):
                self.revoke_line(line, "LINEERR_NOTOWNER",
                                 f"user {user.name!r} may no longer open line {line!r} (configuration reloaded)")
                cut.append(f"{line} for {user.name}")
        return None, cut

    def revoke_line(self, line: str, lineerr: str, message: str) -> None:
        """The server closes an open line for this session (its right to it was withdrawn).

        The client gets the ``LINE_CLOSE`` notification (TAPI's message of
        that name) with the LINEERR and a sentence; no more events of the
        line follow. Other lines and the connection stay.
        """
        if line not in self.lines:
            return
        self.lines.discard(line)
        self.hub.unsubscribe(self, line)
        if not self.closed:
            self.send(codec.encode_notification(
                "LINE_CLOSE", {"line": line, "lineerr": lineerr, "message": message}))

    def do_lineGetCalls(self, request: Request, line: str) -> None:
        self._open_line(line)
        self._answer_calls(request, line, self._calls_now(line), {})

    def do_lineGetCallInfo(self, request: Request, call: int) -> None:
        found, line = self._readable_call(call)
        self._result(request, self._snapshot(found, line))

    def do_lineMakeCall(self, request: Request, line: str, number: str) -> None:
        self._open_line(line)
        self._link(line=line)
        self.log.info(
            "{user} at {peer}: lineMakeCall {line} {number}",
            user=log_text(self.username), peer=log_text(self.peer), line=log_text(line), number=log_text(number),
        )

        def answer(handle: int) -> dict:
            return {"call": handle}

        d = maybeDeferred(self.telephony.make_call, line, number, owner=self.sid)
        d.addCallback(answer)
        self._async(request, "lineMakeCall", lambda: d)

    def do_lineDrop(self, request: Request, call: int) -> None:
        self._held_call(request, call)
        self._link(call=call)
        self._async(request, "lineDrop", lambda: maybeDeferred(self.telephony.drop, call).addCallback(lambda _: {}))

    def do_lineBlindTransfer(self, request: Request, call: int, number: str) -> None:
        self._held_call(request, call)
        self._link(call=call)
        self._async(
            request,
            "lineBlindTransfer",
            lambda: maybeDeferred(self.telephony.blind_transfer, call, number).addCallback(lambda _: {}),
        )

    def do_lineRedirect(self, request: Request, call: int, number: str) -> None:
        # TAPI's lineRedirect deflects an offered call; Asterisk's Redirect of
        # the caller's channel does exactly that, the same action as a blind
        # transfer. The bridge may refuse with LINEERR_INVALCALLSTATE.
        self._held_call(request, call)
        self._link(call=call)
        self._async(
            request,
            "lineRedirect",
            lambda: maybeDeferred(self.telephony.blind_transfer, call, number).addCallback(lambda _: {}),
        )
