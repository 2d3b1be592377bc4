"""Helpers of the cluster tests: a quorum queue bound to the bridge's exchange, and what
it holds at the end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aio_pika
import aiormq
import orjson
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from bridge.publish.topology import declare_topology
from tests.integration.contract import Body
from tests.support import AmqpNames

__all__ = ["QuorumQueue", "quorum_queue"]


@dataclass(frozen=True)
class QuorumQueue:
    """A quorum queue bound to ``#`` on the bridge's exchange."""

    names: AmqpNames
    urls: list[str]

    async def drain(self, expected: int, within: float = 30.0) -> list[Body]:
        """Every body in the queue (redeliveries included), once ``expected`` distinct
        message ids have arrived, in arrival order.

        Raises:
            TimeoutError: fewer distinct ids arrived within ``within`` seconds.
        """
        bodies: list[Body] = []
        ids: set[str] = set()
        enough = asyncio.Event()

        async def on_message(message: AbstractIncomingMessage) -> None:
            body = orjson.loads(message.body)
            bodies.append(body)
            ids.add(body["id"])
            if len(ids) >= expected:
                enough.set()

        async with _any_node(self.urls) as connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=5000)
            queue = await channel.declare_queue(self.names.queue, passive=True)
            tag = await queue.consume(on_message, no_ack=True)
            try:
                async with asyncio.timeout(within):
                    await enough.wait()
            except TimeoutError:
                raise TimeoutError(
                    f"{len(ids)} of {expected} distinct messages in the quorum queue"
                ) from None
            finally:
                await queue.cancel(tag)
        return bodies


@asynccontextmanager
async def _any_node(urls: list[str]) -> AsyncIterator[AbstractConnection]:
    """A connection to the first node of ``urls`` that answers."""
    errors: list[BaseException] = []
    for url in urls:
        try:
            connection = await aio_pika.connect(url, timeout=5)
        except (OSError, aiormq.exceptions.AMQPError, TimeoutError) as exc:
            errors.append(exc)
            continue
        try:
            yield connection
        finally:
            await connection.close()
        return
    raise ConnectionError(f"no cluster node answered: {errors}")


@asynccontextmanager
async def quorum_queue(urls: list[str], names: AmqpNames) -> AsyncIterator[QuorumQueue]:
    """Declare the bridge's topology (with a quorum unrouted queue, as recommended for a
    cluster) and a quorum queue bound to ``#``; delete them after."""
    async with _any_node(urls) as connection:
        channel = await connection.channel()
        await declare_topology(channel, names.exchange, unrouted_queue_type="quorum")
        queue = await channel.declare_queue(
            names.queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(names.exchange, "#")
    try:
        yield QuorumQueue(names, urls)
    finally:
        with contextlib.suppress(Exception):
            async with _any_node(urls) as connection:
                for name in names.queues:
                    channel = await connection.channel()
                    with contextlib.suppress(aiormq.exceptions.ChannelNotFoundEntity):
                        await channel.queue_delete(name)
                for name in names.exchanges:
                    channel = await connection.channel()
                    await channel.exchange_delete(name)
