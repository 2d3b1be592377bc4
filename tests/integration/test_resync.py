"""State resync and header redaction through the whole bridge, on the real broker.

After the simulator drops the bridge, the consumer must see the ``gap`` marker, then the
``resync`` marker, then the active channels as ``CoreShowChannel`` snapshots, all in the
new epoch; and a consumer that applies what it receives in order must end with the
PBX's channels, even while calls keep changing during the resync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from bridge.ami.client import AmiConnection
from bridge.ami.login import log_in
from bridge.ami.simulator import AmiSimulator
from bridge.ami.target import AmiTarget
from tests.integration.contract import Body, assert_contiguous, first_occurrences
from tests.integration.harness import SECRET, Consumer, bridge_settings, running_bridge, wait_for
from tests.support import AmqpNames

SERVER = "pbx1"
RESYNC = [
    "CoreShowChannels",
    "DeviceStateList",
    "ExtensionStateList",
    "QueueStatus",
    "PJSIPShowEndpoints|SIPpeers|IAXpeerlist",
]


def is_done(body: Body) -> bool:
    return bool(body["event"] == "resync" and body["fields"].get("phase") == "done")


def resyncs_done(count: int) -> Callable[[list[Body]], bool]:
    def done(bodies: list[Body]) -> bool:
        return sum(1 for b in bodies if is_done(b)) >= count

    return done


def index_of(bodies: list[Body], event: str, start: int = 0) -> int:
    return next(i for i, b in enumerate(bodies) if i >= start and b["event"] == event)


async def channels_of(pbx: AmiSimulator) -> set[str]:
    """The uniqueids the simulator reports as up, asked over AMI."""
    target = AmiTarget(user="bridge", host="127.0.0.1", port=pbx.port, tls=False)
    conn = await AmiConnection.open(target, on_items=lambda items: None)
    try:
        await log_in(conn, lambda: SECRET, auth="md5", events="off", timeout=3)
        result = await conn.send_action("CoreShowChannels", timeout=3)
    finally:
        await conn.close()
    return {item.get("Uniqueid") or "" for item in result.events}


def live_channels(bodies: list[Body]) -> set[str]:
    """Channels up according to a consumer applying ``bodies`` in order.

    A snapshot's ``CoreShowChannel`` items replace what it knew (the first item starts a
    new set); every other Newchannel and Hangup applies on top.
    """
    up: set[str] = set()
    in_snapshot = False
    for body in bodies:
        event, fields = body["event"], body.get("fields", {})
        if body.get("snapshot") and event == "CoreShowChannel":
            if not in_snapshot:
                up, in_snapshot = set(), True
            up.add(fields["Uniqueid"])
            continue
        in_snapshot = False
        if event == "Newchannel":
            up.add(fields["Uniqueid"])
        elif event == "Hangup":
            up.discard(fields["Uniqueid"])
    return up


async def test_after_an_ami_drop_come_gap_resync_then_the_active_channels(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    # One second of traffic, then calls stay up and nothing changes: the snapshot after
    # the drop must list exactly the channels the first epoch left up.
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=400, duration=1.0, seed=7) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
            ami_reconnect_base=0.2,
            ami_reconnect_cap=0.5,
            resync_actions=RESYNC,
        )
        async with running_bridge(settings) as app:
            await pbx.wait_for_sessions(1, 10)
            await consumer.wait_until(resyncs_done(1), 10, "the first resync")
            await asyncio.sleep(1.2)  # the traffic is over
            await consumer.wait_quiet(0.3)
            up = pbx.channel_count
            assert up > 0
            dropped_at = len(consumer.bodies)
            pbx.drop_connections()
            await consumer.wait_until(resyncs_done(2), 10, "the resync after the drop")
            await wait_for(lambda: app.pipelines[0].journal.depth == 0, 5, "the journal to drain")
        expected = await channels_of(pbx)

    bodies = first_occurrences(consumer.bodies)
    assert_contiguous(bodies)
    before, after = bodies[:dropped_at], bodies[dropped_at:]
    after = after[: next(i for i, b in enumerate(after) if is_done(b)) + 1]  # not the stop
    assert [(b["event"], b.get("snapshot", False)) for b in after[:6]] == [
        ("disconnected", False),
        ("gap", False),
        ("connected", False),
        ("FullyBooted", False),
        ("resync", False),
        ("CoreShowChannel", True),
    ]
    epoch = after[1]["epoch"]
    assert epoch > before[0]["epoch"]
    assert all(b["epoch"] == epoch for b in after[1:])
    resync = after[4]
    assert resync["fields"] == {"phase": "started", "actions": RESYNC}
    snapshot = after[5 : 5 + up]
    assert all(b["event"] == "CoreShowChannel" and b["snapshot"] for b in snapshot)
    assert after[5 + up]["event"] == "DeviceStateChange"  # the next action's items
    listed = {b["fields"]["Uniqueid"] for b in snapshot}
    assert listed == expected == live_channels(before)
    assert len(listed) == up
    # Every item after the marker is a snapshot, routed as itself, flagged in its headers.
    items = after[5:-1]
    assert {b["event"] for b in items} == {
        "CoreShowChannel",
        "DeviceStateChange",
        "ExtensionStatus",
        "QueueParams",
        "QueueMember",
        "EndpointList",
    }
    assert all(b["snapshot"] is True for b in items)
    messages = {m.message_id: m for m in consumer.messages}
    assert all(messages[b["id"]].headers["snapshot"] is True for b in items)
    assert messages[snapshot[0]["id"]].routing_key == f"{SERVER}.none.coreshowchannel"
    # The header travels with exactly the bodies that carry the flag, in both epochs.
    assert all(messages[b["id"]].headers.get("snapshot") is b.get("snapshot") for b in bodies)
    assert is_done(after[-1])
    assert after[-1]["fields"]["results"] == [
        {"entry": "CoreShowChannels", "action": "CoreShowChannels", "items": up},
        {"entry": "DeviceStateList", "action": "DeviceStateList", "items": 20},
        {"entry": "ExtensionStateList", "action": "ExtensionStateList", "items": 20},
        {"entry": "QueueStatus", "action": "QueueStatus", "items": 9},
        {"entry": RESYNC[4], "action": "PJSIPShowEndpoints", "items": 20},
    ]


async def test_with_calls_changing_during_the_resync_a_consumer_ends_with_the_pbx_channels(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=400, duration=3.0, seed=8) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
            ami_reconnect_base=0.1,
            ami_reconnect_cap=0.2,
            resync_actions=RESYNC,
        )
        async with running_bridge(settings):
            await pbx.wait_for_sessions(1, 10)
            await wait_for(lambda: pbx.channel_count > 0, 5, "calls to be up")
            await consumer.wait_until(lambda b: len(b) > 200, 10, "traffic before the drop")
            pbx.drop_connections()
            await consumer.wait_until(resyncs_done(2), 10, "the resync after the drop")
            await asyncio.sleep(3.0)  # the traffic is over
            await consumer.wait_quiet(0.3)
        expected = await channels_of(pbx)

    bodies = first_occurrences(consumer.bodies)
    assert_contiguous(bodies)
    gap = index_of(bodies, "gap")
    resync = index_of(bodies, "resync", gap)
    first_item = next(i for i, b in enumerate(bodies) if i > gap and b.get("snapshot"))
    assert gap < resync < first_item
    assert bodies[first_item]["event"] == "CoreShowChannel"
    epoch = bodies[gap]["epoch"]
    assert all(b["epoch"] == epoch for b in bodies[gap:])
    seqs = [b["seq"] for b in bodies[gap:]]
    assert seqs == sorted(seqs)
    # Live events kept flowing during and after the resync...
    assert sum(1 for b in bodies[first_item:] if not b.get("snapshot")) > 100
    # ...and applying everything in order converges on the PBX's own list.
    assert expected
    assert live_channels(bodies[gap:]) == expected


async def test_redacted_headers_never_reach_the_bus(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=300, duration=1.0, seed=9) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        settings = bridge_settings(
            {SERVER: pbx.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
            include_raw=True,
            redact_headers=["*CallerIDName", "*ChanVariable*"],
            resync_actions=["CoreShowChannels"],
        )
        async with running_bridge(settings):
            await pbx.wait_for_sessions(1, 10)
            pbx.inject(
                [
                    ("Event", "Hangup"),
                    ("Privilege", "call,all"),
                    ("Channel", "SIP/1-0001"),
                    ("CallerIDName", "Injected Name"),
                    ("ChanVariable", "PIN=123987"),
                    ("ChanVariable(SIP/1-0001)", "ACCOUNT=acct-9898"),
                    ("Cause", "16"),
                ]
            )
            await asyncio.sleep(1.2)  # the traffic is over, calls stay up
            assert pbx.channel_count > 0
            pbx.drop_connections()  # so that a resync lists them
            await consumer.wait_until(resyncs_done(2), 10, "the resync after the drop")
            await consumer.wait_quiet(0.3)

    raw = [message.body for message in consumer.messages]
    assert len(raw) > 200
    assert not [body for body in raw if b"CallerIDName" in body or b"ChanVariable" in body]
    assert not [body for body in raw if b"123987" in body or b"acct-9898" in body]
    assert not [body for body in raw if b"Injected Name" in body]
    events = [b for b in consumer.bodies if b["kind"] == "event"]
    with_callers = [b for b in events if "CallerIDNum" in b["fields"]]
    assert len(with_callers) > 100  # these would have carried a CallerIDName
    assert any(b.get("snapshot") for b in with_callers)  # snapshot items are redacted too
    assert all(key != "CallerIDName" for b in events for key, _ in b["raw"])
    (injected,) = [b for b in events if b["fields"].get("Channel") == "SIP/1-0001"]
    assert [key for key, _ in injected["raw"]] == ["Event", "Privilege", "Channel", "Cause"]
