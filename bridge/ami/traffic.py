"""Deterministic, realistic AMI event traffic: a model of a small PBX, with no I/O.

Approach
--------
Each call, registration or reload is a *script*: a Python generator that changes the
channel model and yields the events that change produced.  :class:`TrafficGenerator`
keeps several scripts alive and advances a randomly chosen one per step, so calls
overlap the way they do on a real PBX.  One ``random.Random(seed)`` drives every choice,
so a seed always yields the same sequence (timestamps and the seconds part of uniqueids
come from the injected clock).

Scripts speak in call steps; the dialect in :mod:`bridge.ami.shapes` turns each step
into the events of the chosen Asterisk era.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bridge.ami.protocol import Header
from bridge.ami.shapes import (
    BUSY,
    RING,
    RINGING,
    UP,
    Bridge,
    Channel,
    LegacyShapes,
    ModernShapes,
    Phone,
    Shapes,
    Step,
    cid,
    device_state,
    format_duration,
    snapshot,
)

__all__ = ["TrafficGenerator"]

_NAMES = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy")
_Script = Iterator[Step]


def _address(index: int) -> str:
    """Where the phone at ``index`` registers from."""
    return f"192.0.2.{10 + index}:5060"


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

    def phones(self) -> list[Phone]:
        """Every phone and its current state, for the state list actions."""
        channels: dict[str, list[Channel]] = {}
        for c in self._channels.values():
            peer = c.name.partition("/")[2].rpartition("-")[0]
            channels.setdefault(peer, []).append(c)
        phones = []
        for index, user in enumerate(self._users):
            own = channels.get(user.number, [])
            registered = user.number in self._registered
            state = device_state((c.state for c in own), registered)
            address = _address(index)
            uniqueids = tuple(c.uniqueid for c in own)
            phones.append(Phone(user.number, user.name, address, registered, state, uniqueids))
        return phones

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

    def _run(self, c: Channel, application: str, data: str) -> Step:
        if c.application:
            c.priority += 1
        c.application, c.app_data = application, data
        return self._shapes.newexten(c)

    def _close(self, c: Channel, cause: int) -> Step:
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
        yield self._run(a, "NoOp", f"Call from {cid(a.caller_num)} to {callee.number}")
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
        address = _address(index)
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
