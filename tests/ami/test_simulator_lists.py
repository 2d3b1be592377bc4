"""The simulator's state list actions, read over loopback with the project's own client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from bridge.ami.actions import ActionResult
from bridge.ami.client import AmiConnection
from bridge.ami.login import log_in
from bridge.ami.protocol import Event
from bridge.ami.simulator import AmiSimulator
from bridge.ami.target import AmiTarget
from bridge.events.validation import Validated, validate

SECRET = "bridge-secret"
#: action -> (the Message of its response, its item events, its Complete event)
LISTS = {
    "DeviceStateList": (
        "Device State Changes will follow",
        {"DeviceStateChange"},
        "DeviceStateListComplete",
    ),
    "ExtensionStateList": (
        "Extension Statuses will follow",
        {"ExtensionStatus"},
        "ExtensionStateListComplete",
    ),
    "QueueStatus": (
        "Queue status will follow",
        {"QueueParams", "QueueMember"},
        "QueueStatusComplete",
    ),
    "PJSIPShowEndpoints": (
        "A listing of Endpoints follows, presented as EndpointList events",
        {"EndpointList"},
        "EndpointListComplete",
    ),
}


@asynccontextmanager
async def logged_in(sim: AmiSimulator) -> AsyncIterator[AmiConnection]:
    target = AmiTarget(user="bridge", host="127.0.0.1", port=sim.port, tls=False)
    conn = await AmiConnection.open(target, on_items=lambda items: None)
    try:
        await log_in(conn, lambda: SECRET, auth="md5", events="on", timeout=3)
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def frozen_pbx(seed: int) -> AsyncIterator[tuple[AmiSimulator, AmiConnection]]:
    """A simulator whose half second of traffic is over: its state no longer changes."""
    simulator = AmiSimulator(port=0, secret=SECRET, rate=400, duration=0.5, seed=seed)
    async with simulator as sim, logged_in(sim) as conn:
        await asyncio.sleep(0.8)
        yield sim, conn


def by_key(events: list[Event], key: str) -> dict[str, Event]:
    return {event.get(key) or "": event for event in events}


@pytest.mark.parametrize("action", sorted(LISTS))
async def test_each_state_list_is_framed_like_core_show_channels(action: str) -> None:
    message, item_names, complete_name = LISTS[action]
    async with frozen_pbx(seed=3) as (_, conn):
        result = await conn.send_action(action, timeout=3)
    assert result.ok
    assert result.response.get("EventList") == "start"
    assert result.response.get("Message") == message
    action_id = result.response.action_id
    assert action_id
    assert result.events
    for item in result.events:
        assert item.name in item_names
        assert item.action_id == action_id
        # app_queue writes ActionID last; everyone else right after Event.
        position = -1 if action == "QueueStatus" else 1
        assert item.headers[position] == ("ActionID", action_id)
        assert "Privilege" not in dict(item.headers)  # list items carry no Privilege
        assert isinstance(validate(item), Validated)
    assert result.complete is not None
    assert result.complete.headers == (
        ("Event", complete_name),
        ("ActionID", action_id),
        ("EventList", "Complete"),
        ("ListItems", str(len(result.events))),
    )


async def test_the_lists_agree_with_the_channels_that_are_up() -> None:
    async with frozen_pbx(seed=3) as (sim, conn):
        results: dict[str, ActionResult] = {}
        for action in ("CoreShowChannels", *LISTS):
            results[action] = await conn.send_action(action, timeout=3)
        assert sim.channel_count > 2
    channels: dict[str, set[str]] = {}
    for item in results["CoreShowChannels"].events:
        peer = (item.get("Channel") or "").partition("/")[2].rpartition("-")[0]
        channels.setdefault(peer, set()).add(item.get("Uniqueid") or "")
    devices = by_key(results["DeviceStateList"].events, "Device")
    hints = by_key(results["ExtensionStateList"].events, "Exten")
    endpoints = by_key(results["PJSIPShowEndpoints"].events, "ObjectName")
    assert len(devices) == len(hints) == len(endpoints) == 20
    busy = 0
    for number, endpoint in endpoints.items():
        device = devices[f"PJSIP/{number}"]
        up = channels.get(number, set())
        active = endpoint.get("ActiveChannels") or ""
        assert set(filter(None, active.split(","))) == up
        state = device.get("State")
        if up:
            busy += 1
            assert state in ("INUSE", "RINGING", "RINGINUSE", "BUSY")
        else:
            assert state in ("NOT_INUSE", "UNAVAILABLE")
        assert (state, endpoint.get("DeviceState"), hints[number].get("StatusText")) in {
            ("NOT_INUSE", "Not in use", "Idle"),
            ("INUSE", "In use", "InUse"),
            ("BUSY", "Busy", "Busy"),
            ("UNAVAILABLE", "Unavailable", "Unavailable"),
            ("RINGING", "Ringing", "Ringing"),
            ("RINGINUSE", "Ring+Inuse", "InUse&Ringing"),
        }
        registered = bool(endpoint.get("Contacts"))
        if not up:
            assert (state == "NOT_INUSE") is registered
    assert busy > 0
    queue = results["QueueStatus"].events
    assert [(e.name, e.get("Queue")) for e in queue if e.name == "QueueParams"] == [
        ("QueueParams", "support"),
        ("QueueParams", "sales"),
    ]
    for member in (e for e in queue if e.name == "QueueMember"):
        number = (member.get("Location") or "").removeprefix("PJSIP/")
        assert member.get("InCall") == ("1" if number in channels else "0")
        assert (
            member.get("Status")
            == {
                "NOT_INUSE": "1",
                "INUSE": "2",
                "BUSY": "3",
                "UNAVAILABLE": "5",
                "RINGING": "6",
                "RINGINUSE": "7",
            }[devices[f"PJSIP/{number}"].get("State") or ""]
        )


async def test_an_action_without_action_id_gets_items_without_one() -> None:
    async with frozen_pbx(seed=4) as (_, conn):
        # AmiConnection always sends an ActionID, so speak to the socket directly.
        reader, writer = await asyncio.open_connection("127.0.0.1", conn.target.port)
        try:
            writer.write(b"Action: Login\r\nUsername: bridge\r\nSecret: bridge-secret\r\n\r\n")
            writer.write(b"Action: DeviceStateList\r\n\r\n")
            async with asyncio.timeout(3):
                data = b""
                while b"Event: DeviceStateListComplete" not in data:
                    data += await reader.read(65536)
        finally:
            writer.close()
    listing = data[data.index(b"Response: Success\r\nEventList: start") :]
    assert b"ActionID" not in listing
    assert listing.count(b"Event: DeviceStateChange\r\nDevice: PJSIP/") == 20


@pytest.mark.parametrize("action", ["SIPpeers", "IAXpeerlist"])
async def test_chan_sip_and_iax2_lists_are_unknown(action: str) -> None:
    async with AmiSimulator(port=0, secret=SECRET, rate=0) as sim, logged_in(sim) as conn:
        result = await conn.send_action(action, timeout=3)
    assert not result.ok
    assert result.response.get("Message") == (
        f"Invalid/unknown command: {action}. Use Action: ListCommands to show available commands."
    )


async def test_a_legacy_simulator_does_not_model_the_state_lists() -> None:
    simulator = AmiSimulator(port=0, secret=SECRET, rate=0, legacy=True)
    async with simulator as sim, logged_in(sim) as conn:
        answers = [await conn.send_action(action, timeout=3) for action in LISTS]
        channels = await conn.send_action("CoreShowChannels", timeout=3)
    assert [a.ok for a in answers] == [False] * len(LISTS)
    assert channels.ok


async def test_list_commands_names_every_action_it_answers_as_asterisk_does() -> None:
    """``action_listcommands`` in manager.c: one ``Name: synopsis (Priv: ...)`` per action."""
    async with AmiSimulator(port=0, secret=SECRET, rate=0) as sim, logged_in(sim) as conn:
        result = await conn.send_action("ListCommands", timeout=3)
        unknown = await conn.send_action("SIPpeers", timeout=3)
        # Those that need headers of their own (or end the session) are left out.
        needs_more = ("Response", "ActionID", "Login", "Logoff", "Challenge", "Originate", "Events")
        answered = {
            name: (await conn.send_action(name, timeout=3)).ok
            for name, _ in result.response.headers
            if name not in needs_more
        }
    assert result.ok
    assert result.events == []
    commands = [(k, v) for k, v in result.response.headers if k not in ("Response", "ActionID")]
    names = [name for name, _ in commands]
    assert names == sorted(names, key=str.lower)
    assert ("Ping", "Keepalive command. (Priv: <none>)") in commands
    assert ("CoreShowChannels", "List currently active channels. (Priv: system,reporting)") in (
        commands
    )
    assert set(LISTS) <= set(names)
    assert "SIPpeers" not in names
    assert not unknown.ok
    assert all(answered.values()), answered  # everything listed is answered


async def test_a_legacy_simulator_does_not_list_the_state_lists() -> None:
    simulator = AmiSimulator(port=0, secret=SECRET, rate=0, legacy=True)
    async with simulator as sim, logged_in(sim) as conn:
        result = await conn.send_action("ListCommands", timeout=3)
    names = {name for name, _ in result.response.headers}
    assert "CoreShowChannels" in names
    assert not names & set(LISTS)
