"""Builds the hand-made captures of this directory from the real ones in ../ami-native.

``python tests/data/ami-native-handmade/make.py`` rewrites the .raw files. Each
starts as a real capture cut where the scenario parts ways with it; what
follows is written here with the header layouts and channel snapshots of the
real captures (the last snapshot Asterisk sent of each channel, its state and
Exten as that event would show them). README.txt says which capture each
comes from and what is invented.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
NATIVE = HERE.parent / "ami-native"
SEP = b"\r\n\r\n"
STATE_DESC = {"0": "Down", "4": "Ring", "5": "Ringing", "6": "Up", "7": "Busy"}
SNAPSHOT = ("Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName", "ConnectedLineNum",
            "ConnectedLineName", "Language", "AccountCode", "Context", "Exten", "Priority", "Uniqueid", "Linkedid")
CAUSE_TXT = {"0": "Unknown", "16": "Normal Clearing", "17": "User busy"}


def blocks(name: str) -> list[bytes]:
    return (NATIVE / name).read_bytes().split(SEP)


def pairs(block: bytes) -> list[tuple[str, str]]:
    out = []
    for line in block.decode().split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep or line.endswith(":"):
            out.append((key.rstrip(":"), value))
    return out


def field(block: bytes, key: str) -> str | None:
    return dict(pairs(block)).get(key)


def snapshots(kept: list[bytes]) -> dict[str, dict[str, str]]:
    """The last snapshot of each channel seen in ``kept`` (un-prefixed and Dest-prefixed)."""
    snaps: dict[str, dict[str, str]] = {}
    for block in kept:
        d = dict(pairs(block))
        for prefix in ("", "Dest"):
            if d.get(prefix + "Channel") and d.get(prefix + "Uniqueid"):
                snaps[d[prefix + "Channel"]] = {k: d.get(prefix + k, "") for k in SNAPSHOT}
    return snaps


class Writer:
    def __init__(self, kept: list[bytes]) -> None:
        self.out = list(kept)
        self.snaps = snapshots(kept)

    def snap(self, channel: str, prefix: str = "", **changes: str) -> list[tuple[str, str]]:
        s = self.snaps[channel]
        s.update(changes)
        if "ChannelState" in changes:
            s["ChannelStateDesc"] = STATE_DESC[changes["ChannelState"]]
        return [(prefix + k, s[k]) for k in SNAPSHOT]

    def event(self, name: str, *body: tuple[str, str]) -> None:
        lines = [f"Event: {name}", "Privilege: call,all", *(f"{k}: {v}" for k, v in body)]
        self.out.append("\r\n".join(lines).encode())

    def chan(self, name: str, channel: str, *extra: tuple[str, str], **changes: str) -> None:
        self.event(name, *self.snap(channel, **changes), *extra)

    def hangup(self, channel: str, cause: str, **changes: str) -> None:
        self.chan("Hangup", channel, ("Cause", cause), ("Cause-txt", CAUSE_TXT[cause]), **changes)

    def dial_end(self, caller: str | None, dest: str, status: str) -> None:
        body = self.snap(caller) if caller else []
        self.event("DialEnd", *body, *self.snap(dest, "Dest"), ("DialStatus", status))

    def device_state(self, device: str, state: str) -> None:
        self.event("DeviceStateChange", ("Device", device), ("State", state))

    def write(self, name: str, goodbye: bytes) -> None:
        (HERE / name).write_bytes(SEP.join([*self.out, goodbye, b""]))


def goodbye_of(raw: list[bytes]) -> bytes:
    return next(b for b in raw if b.startswith(b"Response: Goodbye"))


def ring_group_caller_gives_up() -> None:
    """s01 until both phones ring; then the outside caller hangs up before anyone answers."""
    raw = blocks("s01_inbound_ringgroup_answered.raw")
    cut = next(i for i, b in enumerate(raw) if field(b, "Event") == "DialState"
               and field(b, "DestChannel") == "PJSIP/202-00000001") + 1
    w = Writer(raw[:cut])
    one, two = "Local/100@plain-inbound-00000005;1", "Local/100@plain-inbound-00000005;2"
    bob, bobbett = "PJSIP/201-00000000", "PJSIP/202-00000001"
    # the CTI's Hangup of the caller's channel (the "outside" half of the Local pair), as s03's ends
    w.chan("HangupRequest", one, ("Cause", "16"))
    w.chan("SoftHangupRequest", two, ("Cause", "16"))
    w.dial_end(two, bob, "CANCEL")
    w.dial_end(two, bobbett, "CANCEL")
    w.hangup(bob, "16")
    w.device_state("PJSIP/201", "NOT_INUSE")
    w.hangup(bobbett, "16")
    w.device_state("PJSIP/202", "NOT_INUSE")
    w.dial_end(None, one, "CANCEL")
    w.hangup(one, "16")
    w.hangup(two, "16")
    w.device_state("Local/100@plain-inbound", "NOT_INUSE")
    w.write("h01_ringgroup_caller_gives_up.raw", goodbye_of(raw))


def outbound_busy() -> None:
    """s05 with 95550000 dialled until its Dial begins; then [pstn]'s Busy(5) as capture 07 shows it."""
    raw = [b.replace(b"95551234", b"95550000").replace(b"5551234", b"5550000")
           for b in blocks("s05_outbound_answered.raw")]
    cut = next(i for i, b in enumerate(raw) if field(b, "Event") == "DialBegin") + 1
    w = Writer(raw[:cut])
    phone, one, two = "PJSIP/201-00000007", "Local/5550000@pstn-00000008;1", "Local/5550000@pstn-00000008;2"
    w.chan("Newexten", two, ("Extension", "5550000"), ("Application", "Busy"), ("AppData", "5"))
    w.chan("Newstate", two, ChannelState="7")
    w.dial_end(phone, one, "BUSY")
    w.chan("HangupRequest", two, ("Cause", "0"))
    w.chan("SoftHangupRequest", two, ("Cause", "16"))
    w.hangup(two, "17")
    w.hangup(one, "0")
    # [plain-phones] has nothing after the Dial: Asterisk's autofallthrough answers the phone's
    # INVITE with 486 Busy, and its channel ends with the Dial's cause
    w.hangup(phone, "17")
    w.device_state("PJSIP/201", "NOT_INUSE")
    w.write("h02_outbound_busy.raw", goodbye_of(raw))


if __name__ == "__main__":
    ring_group_caller_gives_up()
    outbound_busy()
