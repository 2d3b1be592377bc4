"""A hot-standby pair against the real broker: takeover after SIGKILL, the standby's
death, and no trace of the pair without ``--ha``."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiormq
import pytest

from bridge.ha.lock import lock_queue
from bridge.settings import Settings
from tests.ha.pair import (
    Pair,
    Traffic,
    actives,
    assert_each_id_names_one_message,
    first_new_epoch_at,
    number,
    running_pair,
)
from tests.support import AmqpNames, amqp_connection

pytestmark = pytest.mark.timeout(90)

RATE = 1000.0
WINDOW: int = Settings.model_fields["publish_window"].default
#: The publish window (the default) plus a checkpoint interval (0.2 s) at RATE: what the
#: active may have published beyond the last checkpoint the standby saw.
DUPLICATE_BOUND = WINDOW + int(RATE * 0.2)


async def first_active(pair: Pair) -> str:
    await pair.simulator.wait_for_sessions(2, 60)
    await pair.consumer.wait_until(lambda b: bool(actives(b)), 30, "a member to take the lock")
    instance: str = actives(pair.consumer.bodies)[0]["fields"]["instance"]
    return instance


async def everything_arrived(pair: Pair, traffic: Traffic, within: float = 30) -> None:
    sent = traffic.sent
    try:
        await pair.consumer.wait_until(
            lambda _: pair.consumer.received_all(sent), within, f"all {sent} events"
        )
    except TimeoutError as exc:
        missing = sorted(set(range(sent)) - set(pair.consumer.numbers))
        raise AssertionError(f"{exc}; missing {len(missing)}: {missing[:20]}...") from None


@pytest.mark.parametrize("sequence_numbers", [False, True], ids=["fingerprint", "sequence"])
async def test_sigkill_of_the_active_loses_nothing(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path, sequence_numbers: bool
) -> None:
    async with running_pair(
        amqp_url,
        amqp_names.exchange,
        amqp_names.queue,
        tmp_path,
        sequence_numbers=sequence_numbers,
    ) as pair:
        active = await first_active(pair)
        standby = "b" if active == "a" else "a"
        traffic = Traffic(pair.simulator, RATE)
        traffic.start()
        await asyncio.sleep(3)
        pair.members[active].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await asyncio.sleep(2)
        await traffic.stop()
        await everything_arrived(pair, traffic, within=60)
        await pair.consumer.wait_until(
            lambda b: len(actives(b)) == 2, 10, "the standby to take over"
        )
        taken = actives(pair.consumer.bodies)[1]
        took = first_new_epoch_at(pair, killed_at) - killed_at
        assert taken["fields"]["instance"] == standby
        assert taken["fields"]["checkpoint_found"] is True
        assert took < 5.0, f"the standby took over {took:.1f} s after the kill"
        duplicates = pair.consumer.duplicates
        print(f"takeover {took:.2f} s, {duplicates} duplicates")
        assert duplicates <= DUPLICATE_BOUND, duplicates
        assert taken["fields"]["republished"] >= duplicates
        assert_each_id_names_one_message(pair.consumer.bodies)
        # The new active publishes under epochs of its own, newer than the old active's.
        consumer = pair.consumer
        arrivals = list(zip(consumer.bodies, consumer.arrived_at, strict=True))
        old = {body["epoch"] for body, at in arrivals if at < killed_at}
        assert taken["epoch"] not in old
        assert taken["epoch"] > max(old), (old, taken["epoch"])
        if sequence_numbers:
            ids = {b["event_id"] for b in pair.consumer.bodies if number(b) is not None}
            assert all(i.startswith("sn:") for i in ids)
        assert pair.members[standby].running


async def test_the_active_goes_on_when_the_standby_dies(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with running_pair(amqp_url, amqp_names.exchange, amqp_names.queue, tmp_path) as pair:
        active = await first_active(pair)
        standby = "b" if active == "a" else "a"
        traffic = Traffic(pair.simulator, RATE)
        traffic.start()
        await asyncio.sleep(1)
        pair.members[standby].send_signal(signal.SIGKILL)
        await asyncio.sleep(2)
        await traffic.stop()
        await everything_arrived(pair, traffic, within=60)
        assert len(actives(pair.consumer.bodies)) == 1
        assert pair.consumer.duplicates == 0
        assert pair.members[active].running


async def test_without_ha_no_lock_and_no_checkpoints(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with running_pair(
        amqp_url, amqp_names.exchange, amqp_names.queue, tmp_path, ha=False, names=("solo",)
    ) as pair:
        await pair.simulator.wait_for_sessions(1, 20)
        traffic = Traffic(pair.simulator, RATE)
        traffic.start()
        await asyncio.sleep(1)
        await traffic.stop()
        await everything_arrived(pair, traffic, within=60)
        async with amqp_connection(amqp_url) as connection:
            for kind, name in (
                ("queue", lock_queue(pair.server)),
                ("exchange", amqp_names.checkpoints),
            ):
                channel = await connection.channel()
                declare = channel.declare_queue if kind == "queue" else channel.declare_exchange
                with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
                    await declare(name, passive=True)
        assert not actives(pair.consumer.bodies)
        # Events still carry their PBX-wide id.
        assert all(
            b["event_id"].startswith("fp:")
            for b in pair.consumer.bodies
            if "N" in b.get("fields", {})
        )


@pytest.mark.timeout(150)
async def test_a_frozen_active_is_fenced_and_becomes_standby(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with running_pair(amqp_url, amqp_names.exchange, amqp_names.queue, tmp_path) as pair:
        active = await first_active(pair)
        standby = "b" if active == "a" else "a"
        # A lower rate than the kill test: 25 s of traffic must drain on a shared machine.
        traffic = Traffic(pair.simulator, RATE / 5)
        traffic.start()
        await asyncio.sleep(2)
        pair.members[active].send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        # The active's AMI epoch (its first status may predate its AMI login: epoch 0).
        old_epoch = next(
            b["epoch"] for b in reversed(pair.consumer.bodies) if number(b) is not None
        )
        await pair.consumer.wait_until(
            lambda b: any(body.get("epoch") != old_epoch for body in b[-200:]),
            20,
            "the standby to take over from the frozen one",
        )
        took = time.monotonic() - stopped_at
        await asyncio.sleep(max(0.0, 20 - took))
        pair.members[active].send_signal(signal.SIGCONT)
        continued_at = time.monotonic()
        await asyncio.sleep(3)
        await traffic.stop()
        await everything_arrived(pair, traffic, within=90)
        await pair.consumer.wait_until(lambda b: len(actives(b)) == 2, 10, "bridge.active")
        await asyncio.sleep(2)  # whatever the old active still sends
        consumer = pair.consumer
        late = [
            body
            for body, at in zip(consumer.bodies, consumer.arrived_at, strict=True)
            if at > continued_at and body.get("epoch") == old_epoch
        ]
        taken = actives(consumer.bodies)
        print(f"takeover {took:.2f} s after SIGSTOP; {len(late)} old-active messages after SIGCONT")
        assert taken[1]["fields"]["instance"] == standby
        assert len(taken) == 2, "the old active must not win the lock back"
        assert len(late) <= WINDOW, "beyond its in-flight window"
        assert_each_id_names_one_message(consumer.bodies)
        assert "stops publishing and stands by" in pair.members[active].log()
        assert pair.members[active].running
        assert pair.members[standby].running
