"""Deterministic, realistic AMI event traffic: a model of a small PBX, with no I/O.

Approach
--------
Each call, registration or reload is a *script*: a Python generator that changes the
channel model and yields the events that change produced.  :class:`TrafficGenerator`
keeps several scripts alive and advances a randomly chosen one per step, so calls
overlap the way they do on a real PBX.  One ``random.Random(seed)`` drives every choice,
so a seed always yields the same sequence (timestamps and the seconds part of uniqueids
come from the injected clock).

Scripts speak in call steps (``newchannel``, ``dial_begin``, ``bridge_enter``, ...).  A
*dialect* turns each step into zero or more events: :class:`ModernShapes` copies the
Asterisk 22 shapes (full channel snapshots, ``DialBegin``/``DialEnd``, the ``Bridge*``
family), :class:`LegacyShapes` the Asterisk 1.4 ones (``Dial``, ``Link``/``Unlink``,
``Newcallerid``, ``ChannelReload``).  The call flow is written once for both eras.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bridge.ami.protocol import Header

__all__ = ["CAUSES", "Bridge", "Channel", "EventSpec", "TrafficGenerator", "format_duration"]

#: (event name, privilege, body headers): an event before ``Event``/``Privilege``/``Timestamp``.
EventSpec = tuple[str, str, list[Header]]
_Step = list[EventSpec]

CALL, SYSTEM, DIALPLAN = "call,all", "system,all", "dialplan,all"
DOWN, RING, RINGING, UP, BUSY = 0, 4, 5, 6, 7
_STATE_DESC = {DOWN: "Down", RING: "Ring", RINGING: "Ringing", UP: "Up", BUSY: "Busy"}
#: Hangup causes and their ``Cause-txt`` exactly as ``ast_cause2str`` spells them.
CAUSES = {
    16: "Normal Clearing",
    17: "User busy",
    19: "User alerting, no answer",
    21: "Call Rejected",
}
_UNKNOWN = "<unknown>"
_NAMES = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy")


@dataclass(slots=True)
class Channel:
    """One live channel, as the PBX sees it."""

    name: str
    uniqueid: str
    linkedid: str
    caller_num: str
    caller_name: str
    context: str
    exten: str
    created: float
    connected_num: str = ""
    connected_name: str = ""
    state: int = DOWN
    priority: int = 1
    application: str = ""
    app_data: str = ""
    bridge_id: str = ""


@dataclass(slots=True)
class Bridge:
    uniqueid: str
    members: list[Channel] = field(default_factory=list)


def _cid(value: str) -> str:
    # Asterisk writes empty caller and connected-line fields as the literal <unknown>.
    return value or _UNKNOWN


def snapshot(chan: Channel, prefix: str = "") -> list[Header]:
    """The channel snapshot headers Asterisk 12+ writes, keys prefixed with ``prefix``."""
    return [
        (prefix + "Channel", chan.name),
        (prefix + "ChannelState", str(chan.state)),
        (prefix + "ChannelStateDesc", _STATE_DESC[chan.state]),
        (prefix + "CallerIDNum", _cid(chan.caller_num)),
        (prefix + "CallerIDName", _cid(chan.caller_name)),
        (prefix + "ConnectedLineNum", _cid(chan.connected_num)),
        (prefix + "ConnectedLineName", _cid(chan.connected_name)),
        (prefix + "Language", "en"),
        (prefix + "AccountCode", ""),
        (prefix + "Context", chan.context),
        (prefix + "Exten", chan.exten),
        (prefix + "Priority", str(chan.priority)),
        (prefix + "Uniqueid", chan.uniqueid),
        (prefix + "Linkedid", chan.linkedid),
    ]


def _bridge_snapshot(bridge: Bridge) -> list[Header]:
    return [
        ("BridgeUniqueid", bridge.uniqueid),
        ("BridgeType", "basic"),
        ("BridgeTechnology", "simple_bridge"),
        ("BridgeCreator", _UNKNOWN),
        ("BridgeName", _UNKNOWN),
        ("BridgeNumChannels", str(len(bridge.members))),
        ("BridgeVideoSourceMode", "none"),
    ]


def format_duration(seconds: float) -> str:
    """``HH:MM:SS``, as CoreShowChannel writes a channel's age."""
    minutes, secs = divmod(max(0, int(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


class ModernShapes:
    """Asterisk 12+ (checked against captures from Asterisk 22)."""

    tech = "PJSIP"

    def newchannel(self, c: Channel) -> _Step:
        return [("Newchannel", CALL, snapshot(c))]

    def newstate(self, c: Channel) -> _Step:
        return [("Newstate", CALL, snapshot(c))]

    def newexten(self, c: Channel) -> _Step:
        tail = [("Extension", c.exten), ("Application", c.application), ("AppData", c.app_data)]
        return [("Newexten", DIALPLAN, snapshot(c) + tail)]

    def varset(self, c: Channel, name: str, value: str) -> _Step:
        return [("VarSet", DIALPLAN, [*snapshot(c), ("Variable", name), ("Value", value)])]

    def callerid(self, c: Channel) -> _Step:
        pres = ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
        return [("NewCallerid", CALL, [*snapshot(c), pres])]

    def dial_begin(self, src: Channel, dst: Channel, dial_string: str) -> _Step:
        body = snapshot(src) + snapshot(dst, "Dest") + [("DialString", dial_string)]
        return [("DialBegin", CALL, body)]

    def dial_end(self, src: Channel, dst: Channel, status: str) -> _Step:
        body = snapshot(src) + snapshot(dst, "Dest") + [("DialStatus", status)]
        return [("DialEnd", CALL, body)]

    def bridge_create(self, b: Bridge) -> _Step:
        return [("BridgeCreate", CALL, _bridge_snapshot(b))]

    def bridge_enter(self, b: Bridge, c: Channel) -> _Step:
        return [("BridgeEnter", CALL, _bridge_snapshot(b) + snapshot(c))]

    def bridge_leave(self, b: Bridge, c: Channel, before: list[Channel]) -> _Step:
        return [("BridgeLeave", CALL, _bridge_snapshot(b) + snapshot(c))]

    def bridge_destroy(self, b: Bridge) -> _Step:
        return [("BridgeDestroy", CALL, _bridge_snapshot(b))]

    def hangup_request(self, c: Channel, cause: int) -> _Step:
        return [("HangupRequest", CALL, [*snapshot(c), ("Cause", str(cause))])]

    def hangup(self, c: Channel, cause: int) -> _Step:
        tail = [("Cause", str(cause)), ("Cause-txt", CAUSES[cause])]
        return [("Hangup", CALL, snapshot(c) + tail)]

    def peer_status(self, peer: str, status: str, address: str, ms: int) -> _Step:
        body = [("ChannelType", self.tech), ("Peer", f"{self.tech}/{peer}"), ("PeerStatus", status)]
        if status in ("Registered", "Unregistered"):
            body.append(("Address", address))
        elif status == "Reachable":
            body.append(("Time", str(ms)))
        return [("PeerStatus", SYSTEM, body)]

    def reload(self, module: str, peers: int) -> _Step:
        return [("Reload", SYSTEM, [("Module", module), ("Status", "0")])]


class LegacyShapes:
    """Asterisk 1.4, as documented in tests/fixtures/ami-events.rst: no snapshots."""

    tech = "SIP"

    def newchannel(self, c: Channel) -> _Step:
        body = [("Channel", c.name), ("State", _STATE_DESC[c.state])]
        body += [("CallerIDNum", _cid(c.caller_num)), ("CallerIDName", _cid(c.caller_name))]
        return [("Newchannel", CALL, [*body, ("Uniqueid", c.uniqueid)])]

    def newstate(self, c: Channel) -> _Step:
        body = [("Channel", c.name), ("State", _STATE_DESC[c.state])]
        body += [("CallerID", _cid(c.caller_num)), ("CallerIDName", _cid(c.caller_name))]
        return [("Newstate", CALL, [*body, ("Uniqueid", c.uniqueid)])]

    def newexten(self, c: Channel) -> _Step:
        body = [("Channel", c.name), ("Context", c.context), ("Extension", c.exten)]
        body += [("Priority", str(c.priority)), ("Application", c.application)]
        return [("Newexten", CALL, [*body, ("AppData", c.app_data), ("Uniqueid", c.uniqueid)])]

    def varset(self, c: Channel, name: str, value: str) -> _Step:
        return []

    def callerid(self, c: Channel) -> _Step:
        body = [("Channel", c.name), ("CallerID", _cid(c.caller_num))]
        body += [("CallerIDName", _cid(c.caller_name)), ("Uniqueid", c.uniqueid)]
        pres = ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
        return [("Newcallerid", CALL, [*body, pres])]

    def dial_begin(self, src: Channel, dst: Channel, dial_string: str) -> _Step:
        body = [("Source", src.name), ("Destination", dst.name)]
        body += [("CallerID", _cid(src.caller_num)), ("CallerIDName", _cid(src.caller_name))]
        body += [("SrcUniqueID", src.uniqueid), ("DestUniqueID", dst.uniqueid)]
        return [("Dial", CALL, body)]

    def dial_end(self, src: Channel, dst: Channel, status: str) -> _Step:
        return []

    def bridge_create(self, b: Bridge) -> _Step:
        return []

    def bridge_enter(self, b: Bridge, c: Channel) -> _Step:
        return self._link("Link", b.members) if len(b.members) == 2 else []

    def bridge_leave(self, b: Bridge, c: Channel, before: list[Channel]) -> _Step:
        return self._link("Unlink", before) if len(before) == 2 else []

    def bridge_destroy(self, b: Bridge) -> _Step:
        return []

    def hangup_request(self, c: Channel, cause: int) -> _Step:
        return []

    def hangup(self, c: Channel, cause: int) -> _Step:
        body = [("Channel", c.name), ("Uniqueid", c.uniqueid), ("Cause", str(cause))]
        return [("Hangup", CALL, [*body, ("Cause-txt", CAUSES[cause])])]

    def peer_status(self, peer: str, status: str, address: str, ms: int) -> _Step:
        body = [("Peer", f"{self.tech}/{peer}"), ("PeerStatus", status)]
        if status in ("Reachable", "Unreachable"):
            body.append(("Time", str(ms if status == "Reachable" else -1)))
        return [("PeerStatus", SYSTEM, body)]

    def reload(self, module: str, peers: int) -> _Step:
        counts = [("Registry_Count", "0"), ("Peer_Count", str(peers)), ("User_Count", str(peers))]
        reason = ("ReloadReason", "RELOAD (Channel module reload)")
        return [
            ("Reload", SYSTEM, [("Message", "Reload Requested")]),
            ("ChannelReload", SYSTEM, [("Channel", self.tech), reason, *counts]),
        ]

    @staticmethod
    def _link(name: str, pair: list[Channel]) -> _Step:
        one, two = pair
        body = [("Channel1", one.name), ("Channel2", two.name)]
        body += [("Uniqueid1", one.uniqueid), ("Uniqueid2", two.uniqueid)]
        body += [("CallerID1", one.caller_num), ("CallerID2", two.caller_num)]
        return [(name, CALL, body)]


Shapes = ModernShapes | LegacyShapes
_Script = Iterator[_Step]


@dataclass(frozen=True, slots=True)
class _User:
    number: str
    name: str


class TrafficGenerator:
    """An endless, reproducible stream of AMI events from a simulated PBX.

    Each event is a list of (key, value) pairs: ``Event``, ``Privilege``, then (modern
    shapes only) ``Timestamp: <sec>.<usec>`` as ``timestampevents=yes`` writes it, then
    the body.  The generator also knows which channels are up (:attr:`channels`).

    Args:
        seed: seeds the one ``random.Random`` behind every choice.
        legacy: produce Asterisk 1.4 shapes instead of Asterisk 22 ones.
        clock: wall clock for timestamps, uniqueids and channel ages.
        max_scripts: how many calls, registrations and reloads may be in progress.
    """

    def __init__(
        self,
        seed: int | None = None,
        *,
        legacy: bool = False,
        clock: Callable[[], float] = time.time,
        max_scripts: int = 12,
    ) -> None:
        self._rng = random.Random(seed)
        self._legacy = legacy
        self._shapes: Shapes = LegacyShapes() if legacy else ModernShapes()
        self._clock = clock
        self._max_scripts = max_scripts
        self._scripts: list[_Script] = []
        self._pending: deque[list[Header]] = deque()
        self._channels: dict[str, Channel] = {}
        self._registered: set[str] = set()
        self._channel_seq = 0
        self._unique_seq = -1
        # Every fifth phone has no display name, so Asterisk reports it as <unknown>.
        self._users = [
            _User(str(100 + i), "" if i % 5 == 4 else _NAMES[i % len(_NAMES)]) for i in range(20)
        ]

    @property
    def channels(self) -> list[Channel]:
        """The channels currently up, oldest first."""
        return list(self._channels.values())

    def next_event(self) -> list[Header]:
        """The next event's headers."""
        while not self._pending:
            self._advance()
        return self._pending.popleft()

    def show_channels(self) -> list[list[Header]]:
        """One CoreShowChannel body (no ``Event``/``ActionID``) per channel that is up."""
        now = self._clock()
        return [
            [
                *snapshot(c),
                ("Application", c.application),
                ("ApplicationData", c.app_data),
                ("Duration", format_duration(now - c.created)),
                ("BridgeId", c.bridge_id),
            ]
            for c in self._channels.values()
        ]

    # -- scheduling ---------------------------------------------------------------------

    def _advance(self) -> None:
        rng = self._rng
        free = self._max_scripts - len(self._scripts)
        if not self._scripts or rng.random() < 0.1 * free / self._max_scripts:
            self._scripts.append(self._new_script())
        script = self._scripts[rng.randrange(len(self._scripts))]
        step = next(script, None)
        if step is None:
            self._scripts.remove(script)
            return
        for name, privilege, body in step:
            self._pending.append(self._stamp(name, privilege, body))

    def _stamp(self, name: str, privilege: str, body: list[Header]) -> list[Header]:
        if self._legacy:
            return [("Event", name), ("Privilege", privilege), *body]
        sec, usec = divmod(int(self._clock() * 1_000_000), 1_000_000)
        return [
            ("Event", name),
            ("Privilege", privilege),
            ("Timestamp", f"{sec}.{usec:06d}"),
            *body,
        ]

    def _new_script(self) -> _Script:
        roll = self._rng.random()
        if roll < 0.86:
            return self._call()
        if roll < 0.98:
            return self._registration()
        return self._reload()

    # -- the model ----------------------------------------------------------------------

    def _open(self, peer: str, context: str, exten: str, linkedid: str = "") -> Channel:
        self._channel_seq += 1
        self._unique_seq += 1
        # 1.4 named channels after a pointer (SIP/101-086d58a8); 12+ use a sequence number.
        suffix = f"{self._rng.getrandbits(32):08x}" if self._legacy else f"{self._channel_seq:08x}"
        now = self._clock()
        uniqueid = f"{int(now)}.{self._unique_seq}"
        channel = Channel(
            name=f"{self._shapes.tech}/{peer}-{suffix}",
            uniqueid=uniqueid,
            linkedid=linkedid or uniqueid,
            caller_num="",
            caller_name="",
            context=context,
            exten=exten,
            created=now,
        )
        self._channels[uniqueid] = channel
        return channel

    def _run(self, c: Channel, application: str, data: str) -> _Step:
        if c.application:
            c.priority += 1
        c.application, c.app_data = application, data
        return self._shapes.newexten(c)

    def _close(self, c: Channel, cause: int) -> _Step:
        del self._channels[c.uniqueid]
        return self._shapes.hangup(c, cause)

    # -- scripts ------------------------------------------------------------------------

    def _call(self) -> _Script:
        rng, s = self._rng, self._shapes
        callee = rng.choice(self._users)
        if rng.random() < 0.3:
            # From the provider trunk: an outside number, often without a name.
            a = self._open("trunk", "from-trunk", callee.number)
            a.caller_num = f"+1555{rng.randrange(10**7):07d}"
            a.caller_name = rng.choice(("", "", "WIRELESS CALLER", "ACME CORP"))
        else:
            caller = rng.choice([u for u in self._users if u != callee])
            a = self._open(caller.number, "from-internal", callee.number)
            a.caller_num, a.caller_name = caller.number, caller.name
        a.state = RING
        yield s.newchannel(a)
        yield self._run(a, "NoOp", f"Call from {_cid(a.caller_num)} to {callee.number}")
        yield self._run(a, "Dial", f"{s.tech}/{callee.number},30")
        b = self._open(callee.number, "from-internal", "s", a.uniqueid)
        yield s.newchannel(b)
        b.caller_num, b.caller_name = callee.number, callee.name
        b.connected_num, b.connected_name = a.caller_num, a.caller_name
        b.application, b.app_data = "AppDial", "(Outgoing Line)"
        yield s.callerid(b)
        yield s.dial_begin(a, b, callee.number)
        b.state = RINGING
        yield s.newstate(b)
        for _ in range(rng.randint(2, 20)):
            yield []  # ringing
        outcome = rng.choices((16, 17, 19, 21), weights=(62, 12, 14, 12))[0]
        if outcome == 16:
            yield from self._answered(a, b)
        else:
            yield from self._unanswered(a, b, outcome)

    def _answered(self, a: Channel, b: Channel) -> _Script:
        rng, s = self._rng, self._shapes
        b.state = UP
        yield s.newstate(b)
        yield s.dial_end(a, b, "ANSWER")
        a.state = UP
        a.connected_num, a.connected_name = b.caller_num, b.caller_name
        yield s.newstate(a)
        yield s.varset(a, "DIALEDPEERNUMBER", b.caller_num)
        bridge = Bridge(str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        yield s.bridge_create(bridge)
        for c, peer in ((b, a), (a, b)):
            bridge.members.append(c)
            c.bridge_id = bridge.uniqueid
            yield s.varset(c, "BRIDGEPEER", peer.name)
            yield s.bridge_enter(bridge, c)
        for _ in range(rng.randint(10, 120)):
            yield []  # talking
        first, second = (a, b) if rng.random() < 0.5 else (b, a)
        yield s.hangup_request(first, 16)
        for c in (first, second):
            before = list(bridge.members)
            bridge.members.remove(c)
            c.bridge_id = ""
            yield s.bridge_leave(bridge, c, before)
            if not bridge.members:
                yield s.bridge_destroy(bridge)
            yield self._close(c, 16)

    def _unanswered(self, a: Channel, b: Channel, cause: int) -> _Script:
        s = self._shapes
        status = "BUSY" if cause == 17 else "NOANSWER"
        if cause == 17:
            b.state = BUSY
            yield s.newstate(b)
        yield s.hangup_request(b, cause)
        yield self._close(b, cause)
        yield s.dial_end(a, b, status)
        yield s.varset(a, "DIALSTATUS", status)
        yield self._run(a, "Hangup", str(cause))
        yield self._close(a, cause)

    def _registration(self) -> _Script:
        rng, s = self._rng, self._shapes
        index = rng.randrange(len(self._users))
        peer = self._users[index].number
        address = f"192.0.2.{10 + index}:5060"
        if peer in self._registered:
            self._registered.discard(peer)
            if rng.random() < 0.5:
                yield s.peer_status(peer, "Unreachable", address, -1)
            yield s.peer_status(peer, "Unregistered", address, 0)
        else:
            self._registered.add(peer)
            yield s.peer_status(peer, "Registered", address, 0)
            yield s.peer_status(peer, "Reachable", address, rng.randint(2, 80))

    def _reload(self) -> _Script:
        module = self._rng.choice(("All", "pbx_config", "res_pjsip"))
        yield self._shapes.reload(module, len(self._users))
