"""Simulated PBXs -> the bridge (in-process) -> real RabbitMQ -> a consumer on ``#``.

Two simulators (an Asterisk 22 one and an Asterisk 1.4 one) share one bridge process.
A seeded simulator sends the same event sequence as a fresh
:class:`~bridge.ami.traffic.TrafficGenerator` with that seed, so the test knows exactly
what must arrive, in which order, and checks every delivery's routing key, headers,
properties and body (see :mod:`tests.integration.contract`).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest

from bridge.ami.simulator import AmiSimulator
from bridge.ami.traffic import TrafficGenerator
from bridge.publish.records import decode, encode_event
from bridge.publish.routing import Router
from bridge.service.render import Renderer
from tests.events.wire import parse_event
from tests.integration.contract import Body, assert_contiguous, by_server, validate_body
from tests.integration.harness import SECRET, Consumer, bridge_settings, running_bridge
from tests.support import AmqpNames

DURATION = 2.0
RATE = 400.0
SEEDS = {"pbx1": 11, "pbx2": 22}
LEGACY = {"pbx1": False, "pbx2": True}


def _generated(seed: int, legacy: bool, count: int) -> list[tuple[str, str | None]]:
    """(event name, Channel) of the first ``count`` events a seeded simulator sends."""
    traffic = TrafficGenerator(seed, legacy=legacy)
    events = [dict(traffic.next_event()) for _ in range(count)]
    return [(e["Event"], e.get("Channel")) for e in events]


def _received(bodies: list[Body]) -> list[tuple[str, str | None]]:
    return [(b["event"], b["fields"].get("Channel")) for b in bodies]


async def test_several_pbxs_every_event_arrives_in_order(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=RATE, duration=DURATION, seed=11) as pbx1,
        AmiSimulator(
            port=0, secret=SECRET, rate=RATE, duration=DURATION, seed=22, legacy=True
        ) as pbx2,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        simulators = {"pbx1": pbx1, "pbx2": pbx2}
        settings = bridge_settings(
            {sid: sim.port for sid, sim in simulators.items()},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
        )
        async with running_bridge(settings) as app:
            for sim in simulators.values():
                await sim.wait_for_sessions(1, 10)
            await asyncio.sleep(DURATION + 0.5)  # the simulators' traffic is over
            # Each simulator's events, plus FullyBooted at login, plus the connected status.
            expected = {sid: sim.events_sent + 2 for sid, sim in simulators.items()}
            assert all(count > RATE * DURATION * 0.5 for count in expected.values())

            def all_arrived(bodies: list[Body]) -> bool:
                counts = {sid: len(group) for sid, group in by_server(bodies).items()}
                return all(counts.get(sid, 0) >= n for sid, n in expected.items())

            await consumer.wait_until(all_arrived, 20, f"{expected} messages")
            await consumer.wait_quiet(0.3)
            assert [p.journal.depth for p in app.pipelines] == [0, 0]
            assert all(sim.dropped_sessions == 0 for sim in simulators.values())

    # The graceful stop logged off: one more status per server, published before exiting.
    grouped = by_server(consumer.bodies)
    assert sorted(grouped) == ["pbx1", "pbx2"]
    for sid, bodies in grouped.items():
        assert len(bodies) == expected[sid] + 1  # no loss, and no duplicate without a fault
        assert_contiguous(bodies)
        assert len({b["epoch"] for b in bodies}) == 1
        connected, booted, *events, disconnected = bodies
        assert (connected["kind"], connected["event"]) == ("status", "connected")
        assert (disconnected["kind"], disconnected["event"]) == ("status", "disconnected")
        assert connected["fields"]["ami_version"] == ("1.0" if LEGACY[sid] else "11.0.0")
        assert booted["event"] == "FullyBooted"
        assert all(b["kind"] == "event" for b in [booted, *events])
        assert _received(events) == _generated(SEEDS[sid], LEGACY[sid], len(events))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("received_at", "yesterday"),
        ("fields", {"Uptime": "soon", "LastReload": 5, "Status": "Fully Booted"}),
        ("kind", "news"),
        ("seq", "7"),
    ],
)
def test_the_schema_check_rejects_a_broken_body(key: str, value: Any) -> None:
    """The body check above has teeth: the schemas refuse what the contract refuses."""
    event = parse_event(
        b"Event: FullyBooted\nPrivilege: system,all\nUptime: 5\nLastReload: 5\nStatus: Fully Booted"
    )
    record = decode(encode_event(1, 1, time.time(), event))
    body: Body = orjson.loads(Renderer(Router("pbx1")).render(record).message.body)
    validate_body(body)
    with pytest.raises((jsonschema_rs.ValidationError, KeyError)):
        validate_body({**body, key: value})
