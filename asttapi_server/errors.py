"""One error tree for the whole server.

Every error we raise on purpose derives from :class:`AstTapiError`, so a caller
can tell "we refused this" from "something broke". ``str()`` of each is written
for the person who has to act on it: the admin for configuration and AMI
errors, the client developer for telephony errors.
"""

from __future__ import annotations

from typing import Any


class AstTapiError(Exception):
    """Root of every error asttapi-server raises on purpose."""


class ConfigError(AstTapiError):
    """The configuration is wrong; ``str()`` is the one line shown at start-up."""


class AMIError(AstTapiError):
    """Something went wrong talking to the Asterisk Manager Interface."""


class ActionFailed(AMIError):
    """Asterisk answered an action with ``Response: Error``."""

    def __init__(self, action: str, message: Any) -> None:
        self.action = action
        self.message = message
        text = message.get("Message") if hasattr(message, "get") else str(message)
        super().__init__(f"AMI action {action} failed: {text}")


class ActionTimeout(AMIError):
    """No response to an action arrived in time (the link may be half-open)."""


class LinkDown(AMIError):
    """The PBX link is down: the action was not sent, or its answer was lost."""


class AuthenticationFailed(AMIError):
    """Asterisk refused our login: check username and secret in manager.conf."""


class NotAsteriskManager(AMIError):
    """The peer did not greet us as an Asterisk manager: wrong host or port."""


class TapiSyntaxError(AstTapiError):
    """A TAPIEVENT text from the dialplan does not follow the grammar."""

    def __init__(self, message: str, raw: str) -> None:
        self.raw = raw
        self.reason = message  # without the raw text, for log lines that quote it themselves
        # The raw text comes from the PBX and may be huge: quote only its start.
        shown = raw if len(raw) <= 200 else raw[:200] + f"...[{len(raw) - 200} more characters]"
        super().__init__(f"{message}: {shown!r}")


class TelephonyError(AstTapiError):
    """A request a client made cannot be carried out.

    ``lineerr`` is the TAPI ``LINEERR_*`` name the client sees in
    ``error.data``, so TAPI programmers can switch on familiar names.
    """

    def __init__(self, lineerr: str, message: str) -> None:
        self.lineerr = lineerr
        super().__init__(message)


class PluginError(AstTapiError):
    """A plugin failed to load or configure; names the plugin."""


class HttpError(AstTapiError):
    """An HTTP request a plugin made got no usable answer: no connection, a
    TLS check that failed, no complete answer in time, an answer too large.
    ``str()`` is one line: the method, the URL without its query, and why.

    ``kind`` says which (``unreachable``, ``tls``, ``timeout``, ``too_big``,
    ``protocol``), ``reason`` is the why alone (for a log line that names
    the server otherwise: a URL's path may hold a token), and ``sent``
    whether the request may have reached the server (False only when no
    connection was made), which matters to whoever retries a POST."""

    KINDS = ("unreachable", "tls", "timeout", "too_big", "protocol")

    def __init__(self, text: str, *, kind: str = "protocol", reason: str | None = None, sent: bool = True) -> None:
        self.kind = kind
        self.reason = reason if reason is not None else text
        self.sent = sent
        super().__init__(text)


class DirectoryError(AstTapiError):
    """A contact directory (LDAP, CardDAV) could not be read: the server is
    unreachable, refused our login, or answered something we cannot use.
    ``str()`` is the one line the admin reads; it never holds a password."""


class ClusterError(AstTapiError):
    """Something went wrong between this node and the cluster's Redis (asttapi_server.cluster)."""


class RedisUnavailable(ClusterError):
    """Redis did not answer: not connected, the connection dropped, or no reply in time.
    Whatever was asked may or may not have been done."""


class RedisReplyError(ClusterError):
    """Redis answered a command with an error (``-ERR ...``); ``str()`` is Redis's own text."""


class StaleLease(ClusterError):
    """A fenced write was refused: this node no longer holds the PBX's lease (another node
    took over, or the lease expired while this node was stopped or cut off). The node must
    stop acting for that PBX; nothing was written."""


class InvalidActionHeader(AMIError, ValueError):
    """An AMI action header would break the wire format (a line break in a
    value, a colon in a name): refused before anything is sent, so a client
    cannot smuggle headers or whole actions into the PBX link."""


#: What a client is told when a request finds the PBX link down (LINEERR_DISCONNECTED), wherever it
#: stops: the client session's check, the core's (a plugin's request, a forwarded one).
LINK_DOWN = "the link to the PBX is down; try again after LINE_LINEDEVSTATE reports LINEDEVSTATE_INSERVICE"


def link_down() -> TelephonyError:
    """The one answer to a request made while the PBX link is down."""
    return TelephonyError("LINEERR_DISCONNECTED", LINK_DOWN)


def unexpected(action: str) -> TelephonyError:
    """The one answer to a request that failed in a way :func:`lineerr_of` does not know
    (the caller has logged the failure itself)."""
    return TelephonyError("LINEERR_OPERATIONFAILED", f"{action} failed; the server log has the details")


def lineerr_of(error: BaseException, action: str) -> TelephonyError | None:
    """What a client is told when the AMI ``action`` it caused failed with ``error``.

    The one mapping of AMI failures to LINEERR_* (the core's request answers
    and the client session both use it). ``None`` for an error nobody
    expected: the caller logs it and answers :func:`unexpected`.
    """
    if isinstance(error, TelephonyError):
        return error
    if isinstance(error, LinkDown):
        return TelephonyError(
            "LINEERR_DISCONNECTED",
            f"The PBX link went down before {action} completed; try again after LINE_LINEDEVSTATE"
            " reports LINEDEVSTATE_INSERVICE.",
        )
    if isinstance(error, ActionTimeout):
        return TelephonyError(
            "LINEERR_OPERATIONFAILED",
            f"Asterisk did not answer {action} in time; the request may or may not have been carried out.",
        )
    if isinstance(error, InvalidActionHeader):
        return TelephonyError("LINEERR_OPERATIONFAILED", f"Not sent to Asterisk: {error}")
    if isinstance(error, ActionFailed):
        message = error.message
        text = message.get("Message") if hasattr(message, "get") else str(message)
        return TelephonyError(
            "LINEERR_OPERATIONFAILED", f"Asterisk refused {action}" + (f": {text}" if text else "") + ".")
    return None
