"""The channel model of the simulated PBX and how each Asterisk era writes its events.

Approach
--------
The call flow speaks in call steps (``newchannel``, ``dial_begin``, ``bridge_enter``,
...) on :class:`Channel` and :class:`Bridge` values.  A *dialect* turns each step into
zero or more events: :class:`ModernShapes` copies the Asterisk 22 shapes (full channel
snapshots, ``DialBegin``/``DialEnd``, the ``Bridge*`` family), :class:`LegacyShapes` the
Asterisk 1.4 ones (``Dial``, ``Link``/``Unlink``, ``Newcallerid``, ``ChannelReload``).
Both offer the same methods, so the call flow is written once for both eras.  No I/O and
no randomness here: the same step on the same model always gives the same events.

The items of the state list actions (``DeviceStateList``, ``ExtensionStateList``,
``QueueStatus``, ``PJSIPShowEndpoints``) are built from :class:`Phone` values by the
``*_items`` functions, in the Asterisk 22 shapes only.  A phone's :class:`DeviceState`
comes from its channels (:func:`device_state`) and is written in each spelling AMI uses
for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bridge.ami.protocol import Header

__all__ = [
    "BUSY",
    "CALL",
    "CAUSES",
    "DIALPLAN",
    "DOWN",
    "QUEUES",
    "RING",
    "RINGING",
    "SYSTEM",
    "UP",
    "Bridge",
    "Channel",
    "DeviceState",
    "EventSpec",
    "LegacyShapes",
    "ListItem",
    "ModernShapes",
    "Phone",
    "Queue",
    "Shapes",
    "Step",
    "cid",
    "device_state",
    "device_state_items",
    "endpoint_items",
    "extension_state_items",
    "format_duration",
    "queue_status_items",
    "snapshot",
]

#: (event name, privilege, body headers): an event before ``Event``/``Privilege``/``Timestamp``.
EventSpec = tuple[str, str, list[Header]]
#: The events one call step produces, in order (none where an era writes nothing).
Step = list[EventSpec]
#: One item of a list action's answer: (event name, headers without ``Event``/``ActionID``).
ListItem = tuple[str, list[Header]]

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


def cid(value: str) -> str:
    """A caller ID or connected-line field as Asterisk writes it: empty is ``<unknown>``."""
    return value or _UNKNOWN


def snapshot(chan: Channel, prefix: str = "") -> list[Header]:
    """The channel snapshot headers Asterisk 12+ writes, keys prefixed with ``prefix``."""
    return [
        (prefix + "Channel", chan.name),
        (prefix + "ChannelState", str(chan.state)),
        (prefix + "ChannelStateDesc", _STATE_DESC[chan.state]),
        (prefix + "CallerIDNum", cid(chan.caller_num)),
        (prefix + "CallerIDName", cid(chan.caller_name)),
        (prefix + "ConnectedLineNum", cid(chan.connected_num)),
        (prefix + "ConnectedLineName", cid(chan.connected_name)),
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

    def newchannel(self, c: Channel) -> Step:
        return [("Newchannel", CALL, snapshot(c))]

    def newstate(self, c: Channel) -> Step:
        return [("Newstate", CALL, snapshot(c))]

    def newexten(self, c: Channel) -> Step:
        tail = [("Extension", c.exten), ("Application", c.application), ("AppData", c.app_data)]
        return [("Newexten", DIALPLAN, snapshot(c) + tail)]

    def varset(self, c: Channel, name: str, value: str) -> Step:
        return [("VarSet", DIALPLAN, [*snapshot(c), ("Variable", name), ("Value", value)])]

    def callerid(self, c: Channel) -> Step:
        pres = ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
        return [("NewCallerid", CALL, [*snapshot(c), pres])]

    def dial_begin(self, src: Channel, dst: Channel, dial_string: str) -> Step:
        body = snapshot(src) + snapshot(dst, "Dest") + [("DialString", dial_string)]
        return [("DialBegin", CALL, body)]

    def dial_end(self, src: Channel, dst: Channel, status: str) -> Step:
        body = snapshot(src) + snapshot(dst, "Dest") + [("DialStatus", status)]
        return [("DialEnd", CALL, body)]

    def bridge_create(self, b: Bridge) -> Step:
        return [("BridgeCreate", CALL, _bridge_snapshot(b))]

    def bridge_enter(self, b: Bridge, c: Channel) -> Step:
        return [("BridgeEnter", CALL, _bridge_snapshot(b) + snapshot(c))]

    def bridge_leave(self, b: Bridge, c: Channel, before: list[Channel]) -> Step:
        return [("BridgeLeave", CALL, _bridge_snapshot(b) + snapshot(c))]

    def bridge_destroy(self, b: Bridge) -> Step:
        return [("BridgeDestroy", CALL, _bridge_snapshot(b))]

    def hangup_request(self, c: Channel, cause: int) -> Step:
        return [("HangupRequest", CALL, [*snapshot(c), ("Cause", str(cause))])]

    def hangup(self, c: Channel, cause: int) -> Step:
        tail = [("Cause", str(cause)), ("Cause-txt", CAUSES[cause])]
        return [("Hangup", CALL, snapshot(c) + tail)]

    def peer_status(self, peer: str, status: str, address: str, ms: int) -> Step:
        body = [("ChannelType", self.tech), ("Peer", f"{self.tech}/{peer}"), ("PeerStatus", status)]
        if status in ("Registered", "Unregistered"):
            body.append(("Address", address))
        elif status == "Reachable":
            body.append(("Time", str(ms)))
        return [("PeerStatus", SYSTEM, body)]

    def reload(self, module: str, peers: int) -> Step:
        return [("Reload", SYSTEM, [("Module", module), ("Status", "0")])]


class LegacyShapes:
    """Asterisk 1.4, as documented in tests/fixtures/ami-events.rst: no snapshots."""

    tech = "SIP"

    def newchannel(self, c: Channel) -> Step:
        body = [("Channel", c.name), ("State", _STATE_DESC[c.state])]
        body += [("CallerIDNum", cid(c.caller_num)), ("CallerIDName", cid(c.caller_name))]
        return [("Newchannel", CALL, [*body, ("Uniqueid", c.uniqueid)])]

    def newstate(self, c: Channel) -> Step:
        body = [("Channel", c.name), ("State", _STATE_DESC[c.state])]
        body += [("CallerID", cid(c.caller_num)), ("CallerIDName", cid(c.caller_name))]
        return [("Newstate", CALL, [*body, ("Uniqueid", c.uniqueid)])]

    def newexten(self, c: Channel) -> Step:
        body = [("Channel", c.name), ("Context", c.context), ("Extension", c.exten)]
        body += [("Priority", str(c.priority)), ("Application", c.application)]
        return [("Newexten", CALL, [*body, ("AppData", c.app_data), ("Uniqueid", c.uniqueid)])]

    def varset(self, c: Channel, name: str, value: str) -> Step:
        return []

    def callerid(self, c: Channel) -> Step:
        body = [("Channel", c.name), ("CallerID", cid(c.caller_num))]
        body += [("CallerIDName", cid(c.caller_name)), ("Uniqueid", c.uniqueid)]
        pres = ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
        return [("Newcallerid", CALL, [*body, pres])]

    def dial_begin(self, src: Channel, dst: Channel, dial_string: str) -> Step:
        body = [("Source", src.name), ("Destination", dst.name)]
        body += [("CallerID", cid(src.caller_num)), ("CallerIDName", cid(src.caller_name))]
        body += [("SrcUniqueID", src.uniqueid), ("DestUniqueID", dst.uniqueid)]
        return [("Dial", CALL, body)]

    def dial_end(self, src: Channel, dst: Channel, status: str) -> Step:
        return []

    def bridge_create(self, b: Bridge) -> Step:
        return []

    def bridge_enter(self, b: Bridge, c: Channel) -> Step:
        return self._link("Link", b.members) if len(b.members) == 2 else []

    def bridge_leave(self, b: Bridge, c: Channel, before: list[Channel]) -> Step:
        return self._link("Unlink", before) if len(before) == 2 else []

    def bridge_destroy(self, b: Bridge) -> Step:
        return []

    def hangup_request(self, c: Channel, cause: int) -> Step:
        return []

    def hangup(self, c: Channel, cause: int) -> Step:
        body = [("Channel", c.name), ("Uniqueid", c.uniqueid), ("Cause", str(cause))]
        return [("Hangup", CALL, [*body, ("Cause-txt", CAUSES[cause])])]

    def peer_status(self, peer: str, status: str, address: str, ms: int) -> Step:
        body = [("Peer", f"{self.tech}/{peer}"), ("PeerStatus", status)]
        if status in ("Reachable", "Unreachable"):
            body.append(("Time", str(ms if status == "Reachable" else -1)))
        return [("PeerStatus", SYSTEM, body)]

    def reload(self, module: str, peers: int) -> Step:
        counts = [("Registry_Count", "0"), ("Peer_Count", str(peers)), ("User_Count", str(peers))]
        reason = ("ReloadReason", "RELOAD (Channel module reload)")
        return [
            ("Reload", SYSTEM, [("Message", "Reload Requested")]),
            ("ChannelReload", SYSTEM, [("Channel", self.tech), reason, *counts]),
        ]

    @staticmethod
    def _link(name: str, pair: list[Channel]) -> Step:
        one, two = pair
        body = [("Channel1", one.name), ("Channel2", two.name)]
        body += [("Uniqueid1", one.uniqueid), ("Uniqueid2", two.uniqueid)]
        body += [("CallerID1", one.caller_num), ("CallerID2", two.caller_num)]
        return [(name, CALL, body)]


Shapes = ModernShapes | LegacyShapes


# -- the state list actions (Asterisk 22 shapes) -------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceState:
    """One ``enum ast_device_state`` value, in every spelling AMI writes it."""

    #: The enum value (``QueueMember`` ``Status``).
    code: int
    #: ``ast_devstate2str`` (``DeviceStateChange`` ``State``).
    name: str
    #: ``ast_devstate_str`` (``EndpointList`` ``DeviceState``).
    text: str
    #: The extension state a hint on the device shows (``ExtensionStatus``).
    extension: int
    extension_text: str


NOT_INUSE = DeviceState(1, "NOT_INUSE", "Not in use", 0, "Idle")
INUSE = DeviceState(2, "INUSE", "In use", 1, "InUse")
DEVICE_BUSY = DeviceState(3, "BUSY", "Busy", 2, "Busy")
UNAVAILABLE = DeviceState(5, "UNAVAILABLE", "Unavailable", 4, "Unavailable")
DEVICE_RINGING = DeviceState(6, "RINGING", "Ringing", 8, "Ringing")
RINGINUSE = DeviceState(7, "RINGINUSE", "Ring+Inuse", 9, "InUse&Ringing")


def device_state(channel_states: Iterable[int], registered: bool) -> DeviceState:
    """A phone's device state from the states of its channels, as Asterisk aggregates them."""
    states = set(channel_states)
    if RINGING in states:
        return RINGINUSE if states - {RINGING} else DEVICE_RINGING
    if BUSY in states:
        return DEVICE_BUSY
    if states:
        return INUSE
    return NOT_INUSE if registered else UNAVAILABLE


@dataclass(frozen=True, slots=True)
class Phone:
    """One PJSIP endpoint of the simulated PBX and its current state."""

    number: str
    name: str
    #: ``host:port`` of its contact.
    address: str
    registered: bool
    state: DeviceState
    #: Uniqueids of its channels that are up.
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Queue:
    name: str
    strategy: str
    #: Numbers of the member phones.
    members: tuple[str, ...]
    dynamic: bool


#: The queues of the simulated PBX.
QUEUES = (
    Queue("support", "ringall", ("100", "101", "102", "103"), dynamic=False),
    Queue("sales", "rrmemory", ("104", "105", "106"), dynamic=True),
)
_TECH = ModernShapes.tech


def device_state_items(phones: Iterable[Phone]) -> list[ListItem]:
    """``DeviceStateList``: one ``DeviceStateChange`` per device."""
    return [
        ("DeviceStateChange", [("Device", f"{_TECH}/{p.number}"), ("State", p.state.name)])
        for p in phones
    ]


def extension_state_items(phones: Iterable[Phone]) -> list[ListItem]:
    """``ExtensionStateList``: one ``ExtensionStatus`` per hint (one per phone)."""
    return [
        (
            "ExtensionStatus",
            [
                ("Exten", p.number),
                ("Context", "from-internal"),
                ("Hint", f"{_TECH}/{p.number}"),
                ("Status", str(p.state.extension)),
                ("StatusText", p.state.extension_text),
            ],
        )
        for p in phones
    ]


def endpoint_items(phones: Iterable[Phone]) -> list[ListItem]:
    """``PJSIPShowEndpoints``: one ``EndpointList`` per endpoint."""
    return [
        (
            "EndpointList",
            [
                ("ObjectType", "endpoint"),
                ("ObjectName", p.number),
                ("Transport", "transport-udp"),
                ("Aor", p.number),
                ("Auths", p.number),
                ("OutboundAuths", ""),
                ("DeviceState", p.state.text),
                ("ActiveChannels", ",".join(p.channels)),
                ("Contacts", f"{p.number}/sip:{p.number}@{p.address}," if p.registered else ""),
            ],
        )
        for p in phones
    ]


def queue_status_items(phones: Sequence[Phone], login_time: int) -> list[ListItem]:
    """``QueueStatus``: per queue a ``QueueParams``, then a ``QueueMember`` per member."""
    by_number = {p.number: p for p in phones}
    items: list[ListItem] = []
    for queue in QUEUES:
        params = [("Queue", queue.name), ("Max", "0"), ("Strategy", queue.strategy)]
        params += [(key, "0") for key in ("Calls", "Holdtime", "TalkTime", "Completed")]
        params += [("Abandoned", "0"), ("ServiceLevel", "60")]
        params += [("ServicelevelPerf", "0.0"), ("ServicelevelPerf2", "0.0"), ("Weight", "0")]
        items.append(("QueueParams", params))
        for member in (by_number[number] for number in queue.members):
            interface = f"{_TECH}/{member.number}"
            body = [("Queue", queue.name), ("Name", member.name or interface)]
            body += [("Location", interface), ("StateInterface", interface)]
            body += [("Membership", "dynamic" if queue.dynamic else "static"), ("Penalty", "0")]
            body += [("CallsTaken", "0"), ("LastCall", "0"), ("LastPause", "0")]
            body += [("LoginTime", str(login_time)), ("InCall", str(int(bool(member.channels))))]
            body += [("Status", str(member.state.code)), ("Paused", "0")]
            items.append(("QueueMember", [*body, ("PausedReason", ""), ("Wrapuptime", "0")]))
    return items
