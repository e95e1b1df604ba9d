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
CAUSE_TXT = {"0": "Unknown", "16": "Normal Clearing", "17": "User busy", "26": "Answered elsewhere"}


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


UNK = "<unknown>"
#: The lab's phones: endpoint -> (CallerIDNum, CallerIDName) of their channels.
PHONES = {"201": ("201", "bob"), "202": ("202", "bobbett"), "203": ("203", "alice"), "301": ("301", "Reception")}
BRIDGE = ("BridgeType", "basic"), ("BridgeTechnology", "simple_bridge"), ("BridgeCreator", UNK), ("BridgeName", UNK)


class Writer:
    def __init__(self, kept: list[bytes]) -> None:
        self.out = list(kept)
        self.snaps = snapshots(kept)
        self._seq = 0

    # -- channels that the base capture does not hold ---------------------------------------

    def new(self, channel: str, uid: str, linkedid: str, context: str, exten: str, state: str = "0",
            cid: tuple[str, str] = (UNK, UNK), connected: tuple[str, str] = (UNK, UNK)) -> None:
        """A channel appears (Newchannel), with the snapshot layout of the real captures."""
        self.snaps[channel] = {
            "Channel": channel, "ChannelState": state, "ChannelStateDesc": STATE_DESC[state],
            "CallerIDNum": cid[0], "CallerIDName": cid[1], "ConnectedLineNum": connected[0],
            "ConnectedLineName": connected[1], "Language": "en", "AccountCode": "", "Context": context,
            "Exten": exten, "Priority": "1", "Uniqueid": uid, "Linkedid": linkedid}
        self.chan("Newchannel", channel)

    def local_pair(self, resource: str, seq: int, uids: tuple[str, str], linkedid: str,
                   cid: tuple[str, str]) -> tuple[str, str]:
        """``Local/resource`` requested by a Dial/Queue: both halves, the caller id copied to them
        (NewCallerid/NewConnectedLine on ;1, then on ;2 by core_unreal's call setup: s12's order),
        LocalBridge."""
        exten, _, context = resource.partition("@")
        one, two = f"Local/{resource}-{seq:08x};1", f"Local/{resource}-{seq:08x};2"
        self.new(one, uids[0], linkedid, context, exten)
        self.new(two, uids[1], linkedid, context, exten, state="4")
        for ch in (one, two):
            self.chan("NewCallerid", ch, ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)"),
                      CallerIDNum=cid[0], CallerIDName=cid[1])
            self.chan("NewConnectedLine", ch, ConnectedLineNum=cid[0], ConnectedLineName=cid[1])
        self.event("LocalBridge", *self.snap(one, "LocalOne"), *self.snap(two, "LocalTwo"), ("Context", context),
                   ("Exten", exten), ("LocalOptimization", "No"))
        return one, two

    def ring_phone(self, caller: str, endpoint: str, seq: int, uid: str, exten: str,
                   dialstring: str | None = None) -> str:
        """``caller``'s Dial rings ``PJSIP/endpoint``: Newchannel, NewConnectedLine, DialBegin, Ringing,
        DialState RINGING (the order of capture s12)."""
        phone = f"PJSIP/{endpoint}-{seq:08x}"
        linkedid = self.snaps[caller]["Linkedid"]
        self.new(phone, uid, linkedid, "plain-phones", "s", cid=PHONES[endpoint])
        self.chan("NewConnectedLine", phone, Exten=exten, ConnectedLineNum=self.snaps[caller]["CallerIDNum"],
                  ConnectedLineName=self.snaps[caller]["CallerIDName"])
        self.dial_begin(caller, phone, dialstring or endpoint)
        self.chan("NewConnectedLine", caller, ConnectedLineNum=PHONES[endpoint][0],
                  ConnectedLineName=PHONES[endpoint][1])
        self.chan("Newstate", phone, ChannelState="5")
        self.dial_state(caller, phone, "RINGING")
        return phone

    def set(self, channel: str, **changes: str) -> None:
        """Change a channel's snapshot without an event (the next event shows it)."""
        self.snap(channel, **changes)

    def dial_begin(self, caller: str | None, dest: str, dialstring: str) -> None:
        body = self.snap(caller) if caller else []
        self.event("DialBegin", *body, *self.snap(dest, "Dest"), ("DialString", dialstring))

    def dial_state(self, caller: str | None, dest: str, status: str) -> None:
        body = self.snap(caller) if caller else []
        self.event("DialState", *body, *self.snap(dest, "Dest"), ("DialStatus", status))

    def bridge(self, bridge_id: str, *channels: str) -> None:
        self.event("BridgeCreate", ("BridgeUniqueid", bridge_id), *BRIDGE, ("BridgeNumChannels", "0"),
                   ("BridgeVideoSourceMode", "none"))
        for n, ch in enumerate(channels, 1):
            self.event("BridgeEnter", ("BridgeUniqueid", bridge_id), *BRIDGE, ("BridgeNumChannels", str(n)),
                       ("BridgeVideoSourceMode", "none"), *self.snap(ch))

    def unbridge(self, bridge_id: str, *channels: str) -> None:
        for n, ch in enumerate(channels):
            self.event("BridgeLeave", ("BridgeUniqueid", bridge_id), *BRIDGE,
                       ("BridgeNumChannels", str(len(channels) - n - 1)), ("BridgeVideoSourceMode", "none"),
                       *self.snap(ch))
        self.event("BridgeDestroy", ("BridgeUniqueid", bridge_id), *BRIDGE, ("BridgeNumChannels", "0"),
                   ("BridgeVideoSourceMode", "none"))

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

    def dial_end(self, caller: str | None, dest: str, status: str, forward: str | None = None) -> None:
        body = self.snap(caller) if caller else []
        extra = [("Forward", forward)] if forward else []
        self.event("DialEnd", *body, *self.snap(dest, "Dest"), *extra, ("DialStatus", status))

    def device_state(self, device: str, state: str) -> None:
        self.event("DeviceStateChange", ("Device", device), ("State", state))

    def write(self, name: str, goodbye: bytes) -> None:
        (HERE / name).write_bytes(SEP.join([*self.out, goodbye, b""]))


def _next_uid(uid: str) -> str:
    head, _, seq = uid.rpartition(".")
    return f"{head}.{int(seq) + 1}"


def cut_after(raw: list[bytes], **match: str) -> int:
    """Index just past the first block whose fields all match."""
    return next(i for i, b in enumerate(raw) if all(field(b, k) == v for k, v in match.items())) + 1


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


# -- issue 21: a real office's flows ------------------------------------------------------------------

S12_CALLER = "Local/110@more-inbound-0000004b;2"  # runs Queue(more-rrmemory,...) in s12
S12_CID = ("0309876543", "Queue Caller")


def _s12_until_queued() -> tuple[list[bytes], Writer]:
    raw = blocks("s12_queue_rrmemory.raw")
    return raw, Writer(raw[:cut_after(raw, Event="DialState", DestChannel="Local/110@more-inbound-0000004b;1")])


def _s12_talk_then_caller_hangs_up(w: Writer, peer: str, bridge: str) -> None:
    """The queue bridges its caller with ``peer``; then the caller hangs up (as s12 ends: an AMI
    Hangup of the caller's Local ;1)."""
    w.chan("Newstate", S12_CALLER, ChannelState="6")
    w.bridge(bridge, S12_CALLER, peer)
    w.chan("HangupRequest", S12_CALLER, ("Cause", "16"))
    w.unbridge(bridge, S12_CALLER, peer)
    w.hangup(S12_CALLER, "16")
    w.hangup("Local/110@more-inbound-0000004b;1", "16")


def _answer(w: Writer, member_dial: str, phone: str) -> None:
    """The phone answers the Dial of ``member_dial``: Up, DialEnd ANSWER, the dialler Up, a bridge."""
    w.chan("Newstate", phone, ChannelState="6")
    w.dial_end(member_dial, phone, "ANSWER")
    w.chan("Newstate", member_dial, ChannelState="6")
    w.set(phone, Exten="")
    w.bridge(f"h21-{phone[-8:]}", phone, member_dial)


def _cancel_phone(w: Writer, dialler: str, phone: str, cause: str) -> None:
    """``dialler``'s Dial cancels the ringing phone (its caller went): DialEnd CANCEL, Hangup."""
    w.dial_end(dialler, phone, "CANCEL")
    w.hangup(phone, cause)
    w.device_state(phone.rpartition("-")[0], "NOT_INUSE")


def _talk_then_phone_hangs_up(w: Writer, caller: str, one: str, two: str, phone: str, bridge: str) -> None:
    """The caller is bridged with the Local ;1 whose ;2 the phone talks to; then the phone hangs up and
    the chain follows (the order of s10's end)."""
    w.chan("Newstate", caller, ChannelState="6")
    w.bridge(bridge, caller, one)
    w.chan("HangupRequest", phone, ("Cause", "16"))
    w.unbridge(f"h21-{phone[-8:]}", phone, two)
    w.hangup(phone, "16")
    w.hangup(two, "16")
    w.unbridge(bridge, one, caller)
    w.hangup(one, "16")
    w.hangup(caller, "16")


def _ring_local_member(w: Writer, caller: str, ext: str, context: str, seq: int, uids: tuple[str, str, str],
                       cid: tuple[str, str], dialstring: str, queue: str | None = None) -> tuple[str, str, str]:
    """``caller`` (a Dial or a Queue) rings Local/<ext>@<context>, whose ;2 dials PJSIP/<ext>: the pair,
    AgentCalled (a queue), DialBegin, the phone ringing, the ;1 ringing upstream. (;1, ;2, phone)."""
    linked = w.snaps[caller]["Linkedid"]
    one, two = w.local_pair(f"{ext}@{context}", seq, uids[:2], linked, cid)
    if queue is not None:
        w.event("AgentCalled", *w.snap(caller), *w.snap(one, "Dest"), ("Queue", queue),
                ("Interface", dialstring), ("MemberName", dialstring), ("StateInterface", f"PJSIP/{ext}"))
    w.dial_begin(caller, one, dialstring)
    phone = w.ring_phone(two, ext, seq + 0x10, uids[2], ext)
    w.chan("Newstate", one, ChannelState="5")
    w.dial_state(caller, one, "RINGING")
    return one, two, phone


def queue_local_members(strategy: str) -> None:
    """s12 until the caller waits in the queue; then a FreePBX-style queue: members
    Local/201@from-queue/n and Local/202@from-queue/n ([from-queue] _2XX -> Dial(PJSIP/${EXTEN})).
    ringall: both ring, 202 answers, the queue cancels 201 with cause 26 (app_queue's hangupcalls with
    an exception). rrmemory: 201 rings out (DialEnd NOANSWER then CANCEL for its Local ;1; the Local
    pair's Dial then cancels the phone, cause 16), 202 rings and answers. The caller hangs up."""
    raw, w = _s12_until_queued()
    q = S12_CALLER

    def member(ext: str, seq: int, uid: int) -> tuple[str, str, str]:
        uids = (f"1796680290.{uid}", f"1796680290.{uid + 1}", f"1796680290.{uid + 2}")
        return _ring_local_member(w, q, ext, "from-queue", seq, uids, S12_CID, f"Local/{ext}@from-queue/n",
                                  queue=f"more-{strategy}")

    members = {"201": member("201", 0x70, 300)}
    if strategy == "ringall":
        members["202"] = member("202", 0x72, 303)
    else:
        one, two, phone = members.pop("201")
        w.dial_end(q, one, "NOANSWER")  # app_queue: the member rang out (timeout 8)
        w.dial_end(q, one, "CANCEL")  # hangupcalls(): no exception, no cause 26
        w.hangup(one, "0")
        _cancel_phone(w, two, phone, "16")  # the Local ;2's Dial sees its caller go: CANCEL
        w.hangup(two, "16")
        members["202"] = member("202", 0x72, 303)
    one, two, phone = members["202"]
    _answer(w, two, phone)
    w.chan("Newstate", one, ChannelState="6")
    w.dial_end(q, one, "ANSWER")
    if "201" in members:  # ringall: the other member is cancelled, "answered elsewhere"
        o1, t1, p1 = members["201"]
        w.dial_end(q, o1, "CANCEL")
        w.dial_end(q, o1, "CANCEL")
        w.hangup(o1, "26")
        _cancel_phone(w, t1, p1, "26")  # app_dial forwards "answered elsewhere" down the chain
        w.hangup(t1, "26")
    _s12_talk_then_caller_hangs_up(w, one, "h21-queue")
    w.hangup(one, "16")
    w.unbridge(f"h21-{phone[-8:]}", phone, two)
    w.hangup(two, "16")
    w.hangup(phone, "16")
    w.device_state("PJSIP/202", "NOT_INUSE")
    w.write(f"h03_queue_local_members_{strategy}.raw", goodbye_of(raw))


def queue_pjsip_ringall() -> None:
    """s12 until the caller waits in the queue; then ringall over PJSIP/201 and PJSIP/202 (s12's own
    members): both ring (AgentCalled and DialBegin each, s12's layout), 201 answers, 202 gets
    DialEnd CANCEL twice (app_queue) and Hangup cause 26; the caller hangs up."""
    raw, w = _s12_until_queued()
    q = S12_CALLER
    phones = {}
    for n, ext in enumerate(("201", "202")):
        phones[ext] = w.ring_phone(q, ext, 0x90 + n, f"1796680291.{400 + n}", "110", f"PJSIP/{ext}")
    p1, p2 = phones["201"], phones["202"]
    w.chan("Newstate", p1, ChannelState="6")
    w.dial_end(q, p1, "ANSWER")
    w.dial_end(q, p2, "CANCEL")
    w.dial_end(q, p2, "CANCEL")
    w.hangup(p2, "26")
    w.set(p1, Exten="")
    _s12_talk_then_caller_hangs_up(w, p1, "h21-ringall")
    w.hangup(p1, "16")
    w.write("h04_queue_pjsip_ringall.raw", goodbye_of(raw))


def freepbx_ring_group() -> None:
    """s01 until the outside caller's Local pair runs [plain-inbound] 100; then 100 is a FreePBX-style
    ring group: Dial(Local/201@from-internal/n&Local/202@from-internal/n), each Local ;2 running
    Dial(PJSIP/${EXTEN}); 201 answers, 202 is cancelled "answered elsewhere" (cause 26 down the chain,
    app_dial's 'forward answered elsewhere'); 201 hangs up."""
    raw = blocks("s01_inbound_ringgroup_answered.raw")
    w = Writer(raw[:cut_after(raw, Event="DialBegin", DestChannel="Local/100@plain-inbound-00000005;1")])
    caller = "Local/100@plain-inbound-00000005;2"
    legs = {ext: _ring_local_member(w, caller, ext, "from-internal", 0x20 + 2 * n,
                                    tuple(f"1795691913.{20 + 3 * n + k}" for k in range(3)),  # type: ignore[arg-type]
                                    ("0301234567", "Ext Caller"), f"{ext}@from-internal/n")
            for n, ext in enumerate(("201", "202"))}
    one, two, phone = legs["201"]
    o2, t2, p2 = legs["202"]
    _answer(w, two, phone)
    w.chan("Newstate", one, ChannelState="6")
    w.dial_end(caller, o2, "CANCEL")  # s01's order: the others' CANCEL, then the ANSWER
    w.dial_end(caller, one, "ANSWER")
    w.hangup(o2, "26")
    _cancel_phone(w, t2, p2, "26")
    w.hangup(t2, "26")
    _talk_then_phone_hangs_up(w, caller, one, two, phone, "h21-group")
    w.hangup("Local/100@plain-inbound-00000005;1", "16")
    w.write("h05_freepbx_ring_group.raw", goodbye_of(raw))


def no_caller_id() -> None:
    """s10 as if the outside caller sent no caller id at all: its CallerID removed (the Originate's
    NewCallerid events of the caller's Local pair dropped, every value <unknown>)."""
    raw = [b for b in blocks("s10_hold_unhold.raw")
           if not (field(b, "Event") == "NewCallerid" and field(b, "CallerIDNum") == "0301234567")]
    raw = [b.replace(b"0301234567", UNK.encode()).replace(b"Ext Caller", UNK.encode()) for b in raw]
    (HERE / "h06_no_caller_id.raw").write_bytes(SEP.join([*raw, b""]))


def forward_302() -> None:
    """s10 until bob's phone rings; then it answers 302 Moved Temporarily to 203 (PJSIP
    redirect_method=user): app_dial's do_forward publishes DialEnd CANCEL with Forward: 203, dials
    Local/203@plain-phones (the forwarding channel's context), hangs the phone's channel up; the Local
    ;2 rings alice, who answers and later hangs up."""
    raw = blocks("s10_hold_unhold.raw")
    w = Writer(raw[:cut_after(raw, Event="DialState", DestChannel="PJSIP/201-0000000f")])
    caller, bob, linked = "Local/101@plain-inbound-0000000d;2", "PJSIP/201-0000000f", "1795691988.41"
    w.dial_end(caller, bob, "CANCEL", forward="203")
    one, two = w.local_pair("203@plain-phones", 0x40, ("1795691988.50", "1795691988.51"), linked,
                            ("0301234567", "Ext Caller"))
    w.dial_begin(caller, one, "203@plain-phones")
    w.hangup(bob, "16")
    w.device_state("PJSIP/201", "NOT_INUSE")
    alice = w.ring_phone(two, "203", 0x41, "1795691988.52", "203")
    w.chan("Newstate", one, ChannelState="5")
    w.dial_state(caller, one, "RINGING")
    _answer(w, two, alice)
    w.chan("Newstate", one, ChannelState="6")
    w.dial_end(caller, one, "ANSWER")
    _talk_then_phone_hangs_up(w, caller, one, two, alice, "h21-forward")
    w.hangup("Local/101@plain-inbound-0000000d;1", "16")
    w.write("h07_forward_302.raw", goodbye_of(raw))


def do_not_disturb() -> None:
    """s10 until Asterisk made bob's channel; then the phone is in do-not-disturb: it answers the
    INVITE 486 Busy Here at once (no 180, so no Ringing): DialEnd BUSY, Hangup cause 17; [plain-inbound]
    101 hangs up after its Dial."""
    raw = blocks("s10_hold_unhold.raw")
    w = Writer(raw[:cut_after(raw, Event="NewConnectedLine", Channel="PJSIP/201-0000000f")])
    caller, bob = "Local/101@plain-inbound-0000000d;2", "PJSIP/201-0000000f"
    w.dial_begin(caller, bob, "201")
    w.dial_end(caller, bob, "BUSY")
    w.hangup(bob, "17")
    w.device_state("PJSIP/201", "NOT_INUSE")
    w.hangup(caller, "17")
    w.hangup("Local/101@plain-inbound-0000000d;1", "17")
    w.write("h08_do_not_disturb.raw", goodbye_of(raw))


def call_waiting() -> None:
    """s10 until bob talks to the caller; then a second call to 101 ("Second Caller" <0309998877>,
    another Local pair) rings bob's phone on a second channel; bob holds the first call (Hold),
    answers the second, talks, hangs it up, resumes the first (Unhold), and s10 ends as it did."""
    raw = blocks("s10_hold_unhold.raw")
    head = cut_after(raw, Event="BridgeEnter", Channel="Local/101@plain-inbound-0000000d;2")
    w = Writer(raw[:head])
    bob = "PJSIP/201-0000000f"
    cid = ("0309998877", "Second Caller")
    one, two = "Local/101@plain-inbound-00000050;1", "Local/101@plain-inbound-00000050;2"
    w.new(one, "second-caller-1", "second-caller-1", "plain-inbound", "101")
    w.new(two, "second-caller-1-2", "second-caller-1", "plain-inbound", "101", state="4")
    for ch in (one, two):
        w.chan("NewCallerid", ch, ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)"),
               CallerIDNum=cid[0], CallerIDName=cid[1])
        w.chan("NewConnectedLine", ch, ConnectedLineNum=cid[0], ConnectedLineName=cid[1])
    w.dial_begin(None, one, "101@plain-inbound")
    second = w.ring_phone(two, "201", 0x51, "1795691995.60", "101")
    w.chan("Hold", bob, ("MusicClass", "default"))
    _answer(w, two, second)
    w.chan("Newstate", one, ChannelState="6")
    w.dial_end(None, one, "ANSWER")
    w.chan("HangupRequest", second, ("Cause", "16"))  # bob ends the second call
    w.unbridge(f"h21-{second[-8:]}", second, two)
    w.hangup(second, "16")
    w.hangup(two, "16")
    w.hangup(one, "16")
    w.chan("Unhold", bob)
    tail = next(i for i, b in enumerate(raw) if field(b, "Event") == "HangupRequest" and field(b, "Channel") == bob)
    w.out += raw[tail:-2]
    w.write("h09_call_waiting.raw", goodbye_of(raw))


def directed_pickup() -> None:
    """s16 with bobbett dialling **201, which the dialplan answers with Pickup(201@plain-phones)
    (app_directed_pickup) instead of *8 (chan_pjsip's group pickup): both end in pickup.c's
    ast_do_pickup(), which sends the same events (NewConnectedLine, Newstate Up, Pickup)."""
    raw = [b.replace(b"Exten: *8", b"Exten: **201") for b in blocks("s16_group_pickup.raw")]
    (HERE / "h10_directed_pickup.raw").write_bytes(SEP.join([*raw, b""]))


def mixed_office() -> None:
    """No real base (the lab had no TAPI dialplan beside its phones): the layouts of s04 (a phone
    places a call) and of the TAPI lab's capture 05 (UserEvents). The reception phone PJSIP/301 is a
    device line; it dials 100, which runs the README's [inbound] (UserEvents for line_1 = PJSIP/202
    and line_2 = PJSIP/203, Dial(PJSIP/202&PJSIP/203,20,U(tapi^${UNIQUEID}))). 203 answers: the
    README's [tapi] gosub runs on its channel and names line_2. Then the reception hangs up and the
    h extension sends IDLE."""
    w = Writer([b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nMessage: Authentication accepted"])
    rec, uid = "PJSIP/301-00000090", "1796690000.500"
    w.new(rec, uid, uid, "inbound", "100", state="4", cid=PHONES["301"])

    def tapi(channel: str, text: str) -> None:
        w.out.append("\r\n".join(["Event: UserEvent", "Privilege: user,all",
                                  *(f"{k}: {v}" for k, v in w.snap(channel)), "UserEvent: TAPI",
                                  f"TAPIEVENT: {text}"]).encode())

    for text in ("LINE_NEWCALL line_1", "LINE_NEWCALL line_2", "LINE_CALLSTATE LINECALLSTATE_OFFERING",
                 "SET CALLERID 301", "SET CALLERIDNAME Reception", "LINE_CALLINFO LINECALLINFOSTATE_CALLERID"):
        tapi(rec, text)
    p202 = w.ring_phone(rec, "202", 0x91, "1796690000.501", "100")
    p203 = w.ring_phone(rec, "203", 0x92, "1796690000.502", "100")
    w.chan("Newstate", p203, ChannelState="6")
    w.set(p203, Context="tapi", Exten="s")
    tapi(p203, f"[~{uid}&line_2] LINE_CALLSTATE LINECALLSTATE_CONNECTED")
    tapi(p203, f"[~{uid}&!line_2] LINE_CALLSTATE LINECALLSTATE_HANGUP")
    w.dial_end(rec, p202, "CANCEL")
    w.dial_end(rec, p203, "ANSWER")
    w.hangup(p202, "26")
    w.chan("Newstate", rec, ChannelState="6")
    w.set(p203, Context="plain-phones", Exten="")
    w.bridge("h21-mixed", p203, rec)
    w.chan("HangupRequest", rec, ("Cause", "16"))  # the reception hangs up
    w.unbridge("h21-mixed", rec, p203)
    w.set(rec, Exten="h")
    tapi(rec, "LINE_CALLSTATE LINECALLSTATE_IDLE")
    w.hangup(rec, "16")
    w.hangup(p203, "16")
    w.write("h11_mixed_office.raw", b"Response: Goodbye\r\nMessage: Thanks for all the fish.")


if __name__ == "__main__":
    ring_group_caller_gives_up()
    outbound_busy()
    queue_local_members("ringall")
    queue_local_members("rrmemory")
    queue_pjsip_ringall()
    freepbx_ring_group()
    no_caller_id()
    forward_302()
    do_not_disturb()
    call_waiting()
    directed_pickup()
    mixed_office()
