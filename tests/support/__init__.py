"""Broker helpers for tests: connections, throwaway names and collecting messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

__all__ = [
    "AmqpNames",
    "amqp_connection",
    "bind_queue",
    "collect",
    "collect_until",
    "delete_names",
    "queue_depth",
]


@dataclass(frozen=True)
class AmqpNames:
    """Names for one test: ``exchange`` (with its ``.unrouted`` pair and its history
    ``.stream``) and a ``queue``."""

    exchange: str

    @property
    def queue(self) -> str:
        return f"{self.exchange}.queue"

    @property
    def unrouted(self) -> str:
        return f"{self.exchange}.unrouted"

    @property
    def stream(self) -> str:
        return f"{self.exchange}.stream"

    @property
    def checkpoints(self) -> str:
        """The hot-standby checkpoint exchange beside ``exchange``."""
        return f"{self.exchange}.ha"

    @property
    def exchanges(self) -> tuple[str, ...]:
        return (self.exchange, self.unrouted, self.checkpoints)

    @property
    def queues(self) -> tuple[str, ...]:
        return (self.queue, self.unrouted, self.stream)


@asynccontextmanager
async def amqp_connection(url: str) -> AsyncIterator[AbstractConnection]:
    """A plain aio-pika connection, closed on exit."""
    connection = await aio_pika.connect(url, timeout=10)
    try:
        yield connection
    finally:
        await connection.close()


async def delete_names(url: str, names: AmqpNames) -> None:
    """Delete every exchange and queue named by ``names``; missing ones are fine."""
    async with amqp_connection(url) as connection:
        for kind, name in [("queue", q) for q in names.queues] + [
            ("exchange", e) for e in names.exchanges
        ]:
            # A failed delete closes its channel, so each gets a fresh one.
            channel = await connection.channel()
            try:
                if kind == "queue":
                    await channel.queue_delete(name)
                else:
                    await channel.exchange_delete(name)
            except aiormq.exceptions.ChannelNotFoundEntity:
                pass
            finally:
                if not channel.is_closed:
                    await channel.close()


async def bind_queue(
    channel: AbstractChannel, exchange: str, queue: str, routing_key: str = "#"
) -> AbstractQueue:
    """Declare ``queue`` and bind it to the existing ``exchange``."""
    declared = await channel.declare_queue(queue, durable=True)
    await declared.bind(exchange, routing_key)
    return declared


async def collect_until(
    queue: AbstractQueue,
    done: Callable[[list[AbstractIncomingMessage]], bool],
    within: float = 10.0,
) -> list[AbstractIncomingMessage]:
    """Consume (auto-ack) from ``queue`` until ``done(received)`` is true; arrival order.

    Raises:
        TimeoutError: ``done`` was still false after ``within`` seconds; the message says
            how many messages had arrived.
    """
    received: list[AbstractIncomingMessage] = []
    finished = asyncio.Event()

    async def on_message(message: AbstractIncomingMessage) -> None:
        received.append(message)
        if done(received):
            finished.set()

    tag = await queue.consume(on_message, no_ack=True)
    try:
        async with asyncio.timeout(within):
            await finished.wait()
    except TimeoutError:
        raise TimeoutError(
            f"only {len(received)} messages arrived on {queue.name} in {within} s"
        ) from None
    finally:
        await queue.cancel(tag)
    return received


async def collect(
    queue: AbstractQueue, count: int, within: float = 10.0
) -> list[AbstractIncomingMessage]:
    """Consume (auto-ack) ``count`` messages from ``queue``, in arrival order.

    Raises:
        TimeoutError: fewer than ``count`` arrived in ``within`` seconds.
    """
    return await collect_until(queue, lambda received: len(received) >= count, within)


async def queue_depth(channel: AbstractChannel, queue: str) -> int:
    """How many messages ``queue`` holds now."""
    declared = await channel.declare_queue(queue, passive=True)
    result = declared.declaration_result
    return int(result.message_count or 0)
