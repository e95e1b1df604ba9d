"""AMI action builders: what we send, byte for byte.

Pure ring: no Twisted, no clock.

Each builder returns an :class:`Action` (a ``(name, headers)`` pair), the
only thing the link sends (``link.send_action(actions.ping())``); :meth:`Action.encode` gives the
wire bytes with ``ActionID`` right after ``Action`` and ``\\r\\n`` line ends,
the layout of the lab captures' ``.sent`` files.

Every key and value is checked, here and nowhere else: a value holding any
control byte (``\\r`` or ``\\n``, say a "number" typed by a client as
``"100\\r\\nAction: Command..."``, would inject headers or whole actions; a
leading ``\\x01`` is skipped by Asterisk as a blank, see below) or text that
is not valid Unicode raises :class:`~asttapi_server.errors.InvalidActionHeader`
instead of being sent.  Several ``Variable`` headers are written one per line,
never comma-joined (pitfall 10: Asterisk's 1024-byte line buffer).

A ``Channel`` (or ``ExtraChannel``) that Asterisk would read as starting with
``/`` is refused whatever its source: Asterisk reads ``/regex/`` there as every
channel whose name matches, so ``Hangup Channel: /^/`` hangs up the whole PBX.
Asterisk reads a header's value after ``ast_skip_blanks`` (every leading byte
below 33; ``main/manager.c`` ``__astman_get_header``), so that is the rule
here too, not ``str.lstrip()`` (which keeps ``\\x01``). Only a caller
that means it (the lab's clean-up, a test) passes ``allow_regex=True``; the
server never does.

An action that passed every check (the regex rule included) is remembered,
bounded, by its name and headers: encoding it again (the core checks what it
built, the link sends it with its ActionID) checks only the new ActionID.
Actions carrying a secret (Login) are not kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from asttapi_server.errors import InvalidActionHeader

__all__ = [
    "NAMES",
    "Action",
    "encode",
    "md5_key",
    "login",
    "login_md5",
    "challenge",
    "ping",
    "originate",
    "hangup",
    "redirect",
    "blind_transfer",
    "coreshowchannels",
    "getvar",
    "status",
    "command",
    "logoff",
    "scrub",
    "scrub_text",
]

Headers = Sequence[tuple[str, str]]

#: The actions the builders below make (metrics count AMI round trips by these names).
NAMES = (
    "Login", "Challenge", "Ping", "Originate", "Hangup", "Redirect", "BlindTransfer", "CoreShowChannels",
    "Status", "Command", "Logoff",
)


#: Control bytes (C0 and DEL): a line break ends a header, and Asterisk skips
#: the others as blanks where a value starts; none belongs in an action.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Header names: printable ASCII without the colon that ends them.
_KEY = re.compile(r"[!-9;-~]+")
#: What ``ast_skip_blanks`` skips (include/asterisk/strings.h): every byte from 1 to 32.
_AST_BLANKS = "".join(map(chr, range(1, 33)))


def _check_key(key: str) -> None:
    if not _KEY.fullmatch(key):
        raise InvalidActionHeader(f"AMI header name {key!r} is not allowed")


def _check_value(key: str, value: str) -> None:
    if _CONTROL.search(value) is not None:
        raise InvalidActionHeader(
            f"AMI header {key!r} refused: its value holds a line break or another control byte ({value[:60]!r})"
        )


#: Headers that name a channel: never a ``/regex/``.
_CHANNEL_KEYS = frozenset(("channel", "extrachannel"))


def _check_channel(key: str, value: str) -> None:
    if key.lower() in _CHANNEL_KEYS and value.lstrip(_AST_BLANKS).startswith("/"):
        raise InvalidActionHeader(
            f"AMI header {key!r} refused: {value[:40]!r} would be a regex matching many channels"
        )


# (name, headers) -> (b"Action: name\r\n", the header lines and the blank line) of an
# action that passed every check, the regex rule included: an action is checked once
# however often it is encoded (built, checked by the core, sent: three times per Getvar).
_ENCODED: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[bytes, bytes]] = {}
_ENCODED_MAX = 512


def encode(
    action: str, headers: Headers = (), action_id: str | None = None, *, allow_regex: bool = False
) -> bytes:
    """Wire bytes of one action.  Raises :class:`InvalidActionHeader`."""
    key = (action, headers if type(headers) is tuple else tuple(headers))
    try:
        done = _ENCODED.get(key)
    except TypeError:  # an unhashable value: str() of it is sent, checked afresh
        done = None
    if done is None:
        return _encode(action, key[1], action_id, allow_regex)
    head, body = done
    if action_id is None:
        return head + body
    _check_value("ActionID", action_id)
    try:
        return head + f"ActionID: {action_id}\r\n".encode("utf-8") + body
    except UnicodeEncodeError as e:
        raise InvalidActionHeader(f"AMI action {action!r} refused: a value is not valid Unicode text ({e.reason})") from None


def _encode(action: str, headers: Headers, action_id: str | None, allow_regex: bool) -> bytes:
    _check_value("Action", action)
    if not action.strip() or " " in action.strip():
        raise InvalidActionHeader(f"AMI action name {action!r} is not allowed")
    out = [f"Action: {action}\r\n"]
    if action_id is not None:
        _check_value("ActionID", action_id)
        out.append(f"ActionID: {action_id}\r\n")
    plain = True  # no regex channel, no ActionID header: encodable every way
    for key, value in headers:
        value = str(value)
        _check_key(key)
        _check_value(key, value)
        if not allow_regex:
            _check_channel(key, value)
        elif plain:
            try:
                _check_channel(key, value)
            except InvalidActionHeader:
                plain = False
        if key.lower() == "actionid":
            if action_id is not None:
                raise InvalidActionHeader("ActionID is assigned by the client; do not pass it as a header")
            plain = False
        out.append(f"{key}: {value}\r\n")
    out.append("\r\n")
    try:
        data = "".join(out).encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate from a JSON "\\ud800"
        raise InvalidActionHeader(f"AMI action {action!r} refused: a value is not valid Unicode text ({e.reason})") from None
    # (a Login's secret or key is not kept beyond the action that carries it)
    if plain and all(type(k) is str and type(v) is str and k.lower() not in SECRET_HEADERS for k, v in headers):
        head = len(out[0].encode("utf-8"))
        aid = len(out[1].encode("utf-8")) if action_id is not None else 0
        if len(_ENCODED) >= _ENCODED_MAX:
            del _ENCODED[next(iter(_ENCODED))]
        _ENCODED[(action, tuple(headers))] = (data[:head], data[head + aid :])
    return data


class Action(NamedTuple):
    name: str
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, action_id: str | None = None, *, allow_regex: bool = False) -> bytes:
        return encode(self.name, self.headers, action_id, allow_regex=allow_regex)


def _action(name: str, *pairs: tuple[str, object | None]) -> Action:
    headers = tuple((k, str(v)) for k, v in pairs if v is not None)
    a = Action(name, headers)
    # Validate now, where the caller's bad value came from (a regex channel
    # is refused when the action is encoded for sending).
    a.encode(allow_regex=True)
    return a


#: Header names whose values are credentials (Login's ``Secret``, MD5 ``Key``).
SECRET_HEADERS = frozenset(("secret", "key"))
MASK = "********"
_SECRET_TEXT = re.compile(r"(?i)\b(secret|key)(\s*[:=]\s*)([^\s,;|'\"\\]+)")


def scrub(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` with every credential value masked: what a log line may show of a message.

    A PBX (or a proxy) that echoes our Login back would otherwise put the
    secret in the log the moment we print what it sent.
    """
    return [(k, MASK if str(k).strip().lower() in SECRET_HEADERS else v) for k, v in headers]


def scrub_text(text: str, *secrets: str | None) -> str:
    """``text`` with ``Secret: x`` / ``Key: x`` values and each of ``secrets`` masked."""
    text = _SECRET_TEXT.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text


def md5_key(challenge: str, secret: str) -> str:
    """The Login Key for ``AuthType: MD5``: md5hex(challenge + secret)."""
    return hashlib.md5((challenge + secret).encode("utf-8")).hexdigest()


def login(username: str, secret: str, events: str = "on") -> Action:
    return _action("Login", ("Username", username), ("Secret", secret), ("Events", events))


def login_md5(username: str, key: str, events: str = "on") -> Action:
    return _action(
        "Login", ("AuthType", "MD5"), ("Username", username), ("Key", key), ("Events", events)
    )


def challenge() -> Action:
    return _action("Challenge", ("AuthType", "MD5"))


def ping() -> Action:
    return _action("Ping")


def _bool(value: bool | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return "true" if value else "false"


def originate(
    channel: str,
    *,
    context: str | None = None,
    exten: str | None = None,
    priority: int | str | None = None,
    application: str | None = None,
    data: str | None = None,
    callerid: str | None = None,
    timeout_ms: int | None = None,
    async_: bool | None = None,
    channel_id: str | None = None,
    other_channel_id: str | None = None,
    account: str | None = None,
    variables: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> Action:
    """``Originate``; ``timeout_ms`` is AMI's ``Timeout`` (milliseconds).

    ``variables`` become one ``Variable: NAME=value`` header each.
    """
    pairs = variables.items() if isinstance(variables, Mapping) else variables
    var_headers = []
    for name, value in pairs:
        if not name or "=" in name:
            raise InvalidActionHeader(f"Originate variable name {name!r} is not allowed")
        var_headers.append(("Variable", f"{name}={value}"))
    return _action(
        "Originate",
        ("Channel", channel),
        ("Context", context),
        ("Exten", exten),
        ("Priority", priority),
        ("Application", application),
        ("Data", data),
        ("CallerID", callerid),
        ("Timeout", timeout_ms),
        ("Async", _bool(async_)),
        ("ChannelId", channel_id),
        ("OtherChannelId", other_channel_id),
        ("Account", account),
        *var_headers,
    )


def hangup(channel: str, cause: int | None = None) -> Action:
    return _action("Hangup", ("Channel", channel), ("Cause", cause))


def redirect(
    channel: str,
    context: str,
    exten: str,
    priority: int | str = 1,
    *,
    extra_channel: str | None = None,
    extra_context: str | None = None,
    extra_exten: str | None = None,
    extra_priority: int | str | None = None,
) -> Action:
    return _action(
        "Redirect",
        ("Channel", channel),
        ("ExtraChannel", extra_channel),
        ("Context", context),
        ("Exten", exten),
        ("Priority", priority),
        ("ExtraContext", extra_context),
        ("ExtraExten", extra_exten),
        ("ExtraPriority", extra_priority),
    )


def blind_transfer(channel: str, context: str, exten: str) -> Action:
    """``BlindTransfer`` (Asterisk 12+): moves ``channel``'s bridged peer, not ``channel``."""
    return _action("BlindTransfer", ("Channel", channel), ("Context", context), ("Exten", exten))


def coreshowchannels() -> Action:
    return _action("CoreShowChannels")


def getvar(channel: str, variable: str) -> Action:
    """``Getvar`` of a variable or function (``CONNECTEDLINE(pres)``) on one channel; the answer's ``Value``."""
    return _action("Getvar", ("Channel", channel), ("Variable", variable))


def status(channel: str | None = None) -> Action:
    return _action("Status", ("Channel", channel))


def command(text: str) -> Action:
    return _action("Command", ("Command", text))


def logoff() -> Action:
    return _action("Logoff")
