"""A hot-standby pair under test: one simulator, two ``ami-bridge run --ha`` processes.

The traffic is injected by the test at a steady rate, each event numbered in a ``N``
header, so "every event arrived" is a set comparison.  The simulator starts no traffic
of its own; injection begins once both members are logged in, so both journals hold
every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aio_pika.abc import AbstractIncomingMessage

from bridge.ami.simulator import AmiSimulator
from bridge.publish.topology import declare_topology
from tests.integration.contract import Body
from tests.integration.harness import SECRET, BridgeProcess, run_args
from tests.support import amqp_connection, bind_queue

__all__ = [
    "Consumer",
    "Pair",
    "Traffic",
    "actives",
    "assert_each_id_names_one_message",
    "first_new_epoch_at",
    "number",
    "numbered",
    "running_pair",
]


#: How often :meth:`Consumer.wait_until` looks again while messages keep arriving.
_RECHECK = 0.05


def numbered(n: int) -> list[tuple[str, str]]:
    """The injected event number ``n``."""
    return [("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", "ha"), ("N", str(n))]


def number(body: Body) -> int | None:
    """The injected event number of ``body`` (an unknown header: kept in ``extra``)."""
    value = body.get("extra", {}).get("N")
    return None if value is None else int(value)


@dataclass
class Traffic:
    """Injects numbered UserEvents at ``rate`` per second until stopped."""

    simulator: AmiSimulator
    rate: float
    sent: int = 0
    sent_at: list[float] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        begun = time.monotonic()
        while True:
            due = int((time.monotonic() - begun) * self.rate) - self.sent
            for _ in range(due):
                self.simulator.inject(numbered(self.sent))
                self.sent += 1
            await asyncio.sleep(0.01)


class Consumer:
    """Every body on a queue bound to ``#``, in arrival order, with its arrival time.

    Lean on purpose (no contract check per message): at 1,000 events/s from a pair the
    test process must keep up; the contract has its own tests.
    """

    def __init__(self) -> None:
        self.bodies: list[Body] = []
        self.arrived_at: list[float] = []
        #: How many times each injected event number arrived, kept as they come.
        self.numbers: Counter[int] = Counter()
        self._arrived = asyncio.Event()

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        self.bodies.append(body)
        self.arrived_at.append(time.monotonic())
        n = number(body)
        if n is not None:
            self.numbers[n] += 1
        self._arrived.set()

    def received_all(self, sent: int) -> bool:
        """Every injected event number below ``sent`` arrived at least once."""
        return len(self.numbers) >= sent

    @property
    def duplicates(self) -> int:
        """Injected events that arrived more than once, counted once per extra copy."""
        return sum(n - 1 for n in self.numbers.values())

    @classmethod
    @asynccontextmanager
    async def bound(cls, url: str, exchange: str, queue: str) -> AsyncIterator[Consumer]:
        consumer = cls()
        async with amqp_connection(url) as connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=5000)
            await declare_topology(channel, exchange)
            declared = await bind_queue(channel, exchange, queue)
            await declared.consume(consumer._deliver, no_ack=True)
            yield consumer

    async def wait_until(
        self, done: Callable[[list[Body]], bool], within: float, what: str
    ) -> None:
        try:
            async with asyncio.timeout(within):
                while not done(self.bodies):
                    self._arrived.clear()
                    await self._arrived.wait()
                    # done() looks at every body: checked after each arrival, it would
                    # cost the test process more than the bridges it measures.
                    await asyncio.sleep(_RECHECK)
        except TimeoutError:
            raise TimeoutError(
                f"waited {within} s for {what}; {len(self.bodies)} messages arrived"
            ) from None


@dataclass
class Pair:
    server: str
    simulator: AmiSimulator
    consumer: Consumer
    members: dict[str, BridgeProcess]

    def member_args(self, name: str) -> list[str]:
        return self.members[name].args


def assert_each_id_names_one_message(bodies: list[Body]) -> None:
    """What the pair published twice under one id (a member publishing again after a
    broker outage) is the same message; the two members never share an id."""
    by_id: dict[str, Body] = {}
    for body in bodies:
        first = by_id.setdefault(body["id"], body)
        assert first == body, f"{body['id']} names two messages: {first} and {body}"


def actives(bodies: list[Body]) -> list[Body]:
    """The ``bridge.active`` statuses among ``bodies``: one per turn a member took the lock."""
    return [b for b in bodies if b.get("kind") == "status" and b.get("event") == "active"]


def first_new_epoch_at(pair: Pair, since: float) -> float:
    """When the first message under an epoch not seen before ``since`` (monotonic) arrived:
    the new active's first message after a takeover (each turn has epochs of its own)."""
    consumer = pair.consumer
    arrivals = list(zip(consumer.bodies, consumer.arrived_at, strict=True))
    seen = {body["epoch"] for body, at in arrivals if at < since}
    for body, at in arrivals:
        if at >= since and body["epoch"] not in seen:
            return at
    raise AssertionError("no message under a new epoch")


@asynccontextmanager
async def running_pair(
    amqp_url: str,
    exchange: str,
    queue: str,
    tmp_path: Path,
    *,
    sequence_numbers: bool = False,
    ha: bool = True,
    names: tuple[str, ...] = ("a", "b"),
    start: bool = True,
    members_amqp: str | None = None,
) -> AsyncIterator[Pair]:
    """The simulator, a consumer bound to ``exchange`` and one bridge per name.

    The consumer uses ``amqp_url``; the members use ``members_amqp`` when given (a proxy
    in front of the same broker, say).
    """
    server = f"ha{uuid.uuid4().hex[:10]}"
    simulator = AmiSimulator(port=0, secret=SECRET, rate=0, sequence_numbers=sequence_numbers)
    async with simulator, Consumer.bound(amqp_url, exchange, queue) as consumer:
        members = {}
        for name in names:
            args = run_args(
                {server: simulator.port},
                amqp=members_amqp or amqp_url,
                exchange=exchange,
                journal_dir=tmp_path / name,
                ha=ha,
                instance_id=name,
                ami_ping_interval=60,
            )
            env = {"AMI_BRIDGE_AMI_SECRET": SECRET}
            members[name] = BridgeProcess(args, tmp_path / f"{name}.log", env)
        pair = Pair(server, simulator, consumer, members)
        try:
            if start:
                for member in members.values():
                    await member.start()
            yield pair
        finally:
            for member in members.values():
                with contextlib.suppress(ProcessLookupError):
                    await member.ensure_stopped()
