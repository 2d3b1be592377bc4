"""The broker entities a consumer needs, declared in one function.

Approach
--------
A consumer binds one queue to the event exchange with its routing patterns:

* a *named* queue is durable and survives the consumer: a quorum queue by default
  (replicated, and it counts deliveries: ``x-delivery-limit`` is ``max_attempts - 1``,
  so RabbitMQ itself dead-letters a message after ``max_attempts`` tries), or a classic
  one with ``quorum=False``;
* with no name, the queue is exclusive and auto-delete (always classic: quorum queues
  cannot be exclusive), for live views that need nothing kept.

Failed messages go to a dead-letter exchange, ``<exchange>.dlx`` unless named: a
durable topic exchange.  Dead letters keep their routing key, so a dead-letter queue
bound with the consumer's own patterns receives exactly the dead letters of the events
that consumer wanted; applications with overlapping patterns that share a dead-letter
exchange see each other's dead letters, so give each its own exchange.

The event exchange is declared with the bridge's own :func:`declare_topology`, so a
consumer may start before the bridge; a read-only view passes ``declare_exchange=False``
and gets a :class:`ConsumerError` when the exchange is missing.  AMQP declarations are idempotent
while the arguments match; a mismatch becomes :class:`TopologyConflict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue

from bridge.consumer.errors import ConsumerError
from bridge.publish.topology import TopologyConflict, declare_topology

__all__ = ["QueuePlan", "TopologyConflict", "dead_letter_name", "declare_consumer_topology"]


def dead_letter_name(exchange: str) -> str:
    """The default dead-letter exchange of consumers of ``exchange``."""
    return f"{exchange}.dlx"


@dataclass(frozen=True, slots=True)
class QueuePlan:
    """What one consumer declares: its queue, bindings and dead-lettering."""

    exchange: str
    patterns: tuple[str, ...]
    #: None: an exclusive, auto-delete, server-named queue.
    queue: str | None
    quorum: bool
    max_attempts: int
    #: None: failed messages are dropped after ``max_attempts``.
    dead_letter_exchange: str | None
    #: A durable queue to bind to the dead-letter exchange, if any.
    dead_letter_queue: str | None = None

    @property
    def is_quorum(self) -> bool:
        """True when the queue is a quorum queue (named, and ``quorum`` asked for)."""
        return self.queue is not None and self.quorum

    def queue_arguments(self) -> dict[str, Any]:
        """The ``x-`` arguments of the consumer's queue."""
        arguments: dict[str, Any] = {}
        if self.is_quorum:
            arguments["x-queue-type"] = "quorum"
            arguments["x-delivery-limit"] = self.max_attempts - 1
        if self.dead_letter_exchange is not None:
            arguments["x-dead-letter-exchange"] = self.dead_letter_exchange
        return arguments


async def declare_consumer_topology(
    connection: AbstractConnection,
    channel: AbstractChannel,
    plan: QueuePlan,
    *,
    declare_exchange: bool = True,
) -> AbstractQueue:
    """Declare and bind what ``plan`` describes; returns the consumer's queue.

    Raises:
        ConsumerError: the event exchange is missing (with ``declare_exchange=False``).
        TopologyConflict: an entity exists with other settings.
        aiormq.exceptions.AMQPError: any other broker or connection failure.
    """
    if declare_exchange:
        await declare_topology(channel, plan.exchange)
    else:
        await _require_exchange(connection, plan.exchange)
    try:
        if plan.dead_letter_exchange is not None:
            await _declare_dead_letters(channel, plan, plan.dead_letter_exchange)
        if plan.queue is None:
            queue = await channel.declare_queue(
                exclusive=True, auto_delete=True, arguments=plan.queue_arguments()
            )
        else:
            queue = await channel.declare_queue(
                plan.queue, durable=True, arguments=plan.queue_arguments()
            )
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise TopologyConflict(
            f"queue {plan.queue!r} or {plan.dead_letter_queue!r}, or exchange "
            f"{plan.dead_letter_exchange!r}, already exists with other settings: {exc}"
        ) from exc
    for pattern in plan.patterns:
        await queue.bind(plan.exchange, routing_key=pattern)
    return queue


async def _require_exchange(connection: AbstractConnection, exchange: str) -> None:
    # A failed passive declare closes its channel, so it gets a channel of its own.
    probe = await connection.channel()
    try:
        await probe.declare_exchange(exchange, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        raise ConsumerError(
            f"exchange {exchange!r} does not exist: is the bridge publishing to it?"
        ) from exc
    finally:
        if not probe.is_closed:
            await probe.close()


async def _declare_dead_letters(channel: AbstractChannel, plan: QueuePlan, name: str) -> None:
    exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
    if plan.dead_letter_queue is None:
        return
    arguments: dict[str, Any] | None = {"x-queue-type": "quorum"} if plan.quorum else None
    queue = await channel.declare_queue(plan.dead_letter_queue, durable=True, arguments=arguments)
    for pattern in plan.patterns:
        await queue.bind(exchange, routing_key=pattern)
