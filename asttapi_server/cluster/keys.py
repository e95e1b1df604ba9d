"""Every Redis key the cluster uses, named in one place (docs/scaling.md "Keys").

A PBX's keys share the hash tag ``{PBX}``, so a script that touches several
of them stays within one Redis Cluster slot; the cluster-wide sequence
(``PREFIX:seq``) and the nodes' reply streams are the keys that do not.
PBX and node names follow the line-name rule (:mod:`asttapi_server.names`),
which has no braces, so a name can never break out of its hash tag.

Pure module.
"""

from __future__ import annotations

__all__ = ["Keys"]


class Keys:
    """Key names under ``prefix`` (``[cluster] prefix``, default ``asttapi``)."""

    def __init__(self, prefix: str = "asttapi") -> None:
        self.prefix = prefix
        #: The cluster-wide event sequence: every event's ``seq`` (INCR in the append script).
        self.seq = f"{prefix}:seq"

    def _pbx(self, pbx: str, what: str) -> str:
        return f"{self.prefix}:{{{pbx}}}:{what}"

    def lease(self, pbx: str) -> str:
        """STRING "TOKEN HOLDER" with a PX expiry: who runs the PBX's link now."""
        return self._pbx(pbx, "lease")

    def token(self, pbx: str) -> str:
        """The PBX's fencing-token counter (never expires)."""
        return self._pbx(pbx, "token")

    def events(self, pbx: str) -> str:
        """STREAM of the PBX's TAPI events (fields s, p, t, k, d)."""
        return self._pbx(pbx, "events")

    def log(self, pbx: str) -> str:
        """HASH: the seq of the PBX's last entry and the last batch appended (retries are not doubled)."""
        return self._pbx(pbx, "log")

    def requests(self, pbx: str) -> str:
        """STREAM of client requests forwarded to the PBX's active node."""
        return self._pbx(pbx, "requests")

    def claim(self, pbx: str, request_id: str) -> str:
        """STRING: the tenure that claimed a forwarded request, then "answered"."""
        return self._pbx(pbx, f"claim:{request_id}")

    def calls(self, pbx: str) -> str:
        """HASH handle -> the call's record (the call store's format), "_head" -> the store's header."""
        return self._pbx(pbx, "calls")

    def once(self, pbx: str, what: str) -> str:
        """STRING: this work (a contact lookup, a webhook) was claimed by a tenure."""
        return self._pbx(pbx, f"once:{what}")

    def node(self, name: str) -> str:
        """STRING lease on a node name: one running process per name."""
        return f"{self.prefix}:node:{{{name}}}"

    def node_token(self, name: str) -> str:
        return f"{self.prefix}:node:{{{name}}}:token"

    def replies(self, name: str) -> str:
        """STREAM of answers to the requests node ``name`` forwarded."""
        return f"{self.prefix}:node:{{{name}}}:replies"
