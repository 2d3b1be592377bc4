"""The broker topology the bridge publishes into, declared in one idempotent function.

Approach
--------
Events go to a durable topic exchange (``ami.events`` by default).  A message no binding
matches must not vanish, so the exchange names an alternate exchange,
``<exchange>.unrouted``: a durable fanout exchange bound to a durable queue of the same
name.  The broker then routes every unmatched message there, and a publisher confirm
means "stored somewhere" even before any consumer has bound a queue.  Nobody may ever
read that queue, so it keeps the newest 100,000 messages by default (``x-max-length``
with ``x-overflow: drop-head``); a queue that exists without that cap is used as it is,
with a WARNING saying how to cap it, rather than stopping the bridge.

In a cluster the unrouted queue lives on one node (a classic queue) or on a majority of
them (``unrouted_queue_type = "quorum"``, recommended there).  While a classic queue's
node is down, other nodes refuse to declare it (``NOT_FOUND - home node ... is down``);
the exchanges are declared first, so :class:`UnroutedQueueDown` tells the caller it may
publish anyway: only messages nothing is bound to wait for that node.

AMQP declarations are idempotent as long as the arguments match, so declaring on every
connect is safe.  If an exchange or queue already exists with other arguments, the broker
closes the channel with PRECONDITION_FAILED; that becomes :class:`TopologyConflict`,
which names the entity instead of surfacing a bare channel error.

History: :func:`declare_stream` adds a stream queue, ``<exchange>.stream``, bound with
``#``: an append-only log of every message that consumers read from any offset or time
without taking anything away (see :mod:`bridge.consumer.replay`).  Its retention is
the ``x-max-age`` and ``x-max-length-bytes`` queue arguments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

__all__ = [
    "DEFAULT_EXCHANGE",
    "DEFAULT_UNROUTED_MAX_LENGTH",
    "StreamRetention",
    "TopologyConflict",
    "UnroutedQueueDown",
    "declare_stream",
    "declare_topology",
    "stream_name",
    "unrouted_name",
    "unrouted_queue_arguments",
]

DEFAULT_EXCHANGE = "ami.events"
#: Messages the unrouted queue keeps by default; beyond it the oldest are dropped.
DEFAULT_UNROUTED_MAX_LENGTH = 100_000

log = logging.getLogger(__name__)


class TopologyConflict(RuntimeError):
    """An exchange or queue exists on the broker with different settings."""


class UnroutedQueueDown(RuntimeError):
    """The exchanges are declared, but the unrouted queue's cluster node is down."""


def unrouted_name(exchange: str) -> str:
    """The name of the alternate exchange and of its queue for ``exchange``."""
    return f"{exchange}.unrouted"


def unrouted_queue_arguments(queue_type: str, max_length: int) -> dict[str, Any]:
    """The ``x-`` arguments of the unrouted queue: its type and its length cap (0: none)."""
    arguments: dict[str, Any] = {}
    if queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
    if max_length:
        arguments.update({"x-max-length": max_length, "x-overflow": "drop-head"})
    return arguments


async def declare_topology(
    channel: AbstractChannel,
    exchange: str = DEFAULT_EXCHANGE,
    *,
    unrouted_queue_type: str = "classic",
    unrouted_max_length: int = DEFAULT_UNROUTED_MAX_LENGTH,
) -> AbstractExchange:
    """Declare the event exchange, its alternate exchange and the unrouted queue.

    Returns the event exchange.  Calling it again with the same names changes nothing.
    The unrouted queue keeps at most ``unrouted_max_length`` messages, dropping the
    oldest (0: no cap).  If it already exists with other arguments (one created before
    the cap, or by hand), it is used as it is, with a WARNING that says how to cap it:
    ``channel`` is reopened for that, and stays usable.

    Raises:
        TopologyConflict: an exchange exists with other settings (the broker has closed
            ``channel``).
        UnroutedQueueDown: the exchanges are declared but the unrouted queue's node is
            down (the broker has closed ``channel``).
        aiormq.exceptions.AMQPError: any other broker or connection failure.
    """
    unrouted = unrouted_name(exchange)
    try:
        alternate = await channel.declare_exchange(
            unrouted, aio_pika.ExchangeType.FANOUT, durable=True
        )
        events = await channel.declare_exchange(
            exchange,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": unrouted},
        )
    except aiormq.exceptions.ChannelPreconditionFailed as e:
        raise TopologyConflict(
            f"exchange {exchange!r} or {unrouted!r} already exists with other settings: {e}"
        ) from e
    arguments = unrouted_queue_arguments(unrouted_queue_type, unrouted_max_length)
    try:
        queue = await channel.declare_queue(unrouted, durable=True, arguments=arguments or None)
    except aiormq.exceptions.ChannelNotFoundEntity as e:
        if "home node" not in str(e):
            raise
        raise UnroutedQueueDown(f"queue {unrouted!r} is unavailable: {e}") from e
    except aiormq.exceptions.ChannelPreconditionFailed as e:
        await channel.reopen()
        queue = await channel.declare_queue(unrouted, passive=True)
        log.warning(
            "queue %r exists with other arguments than %s (%s); it is used as it is. To cap "
            "it, delete it while it is empty (the bridge declares it again) or give it a "
            "policy: max-length %d, overflow drop-head",
            unrouted,
            arguments,
            e.args[0] if e.args else e,
            unrouted_max_length or DEFAULT_UNROUTED_MAX_LENGTH,
        )
    await queue.bind(alternate, routing_key="")
    return events


def stream_name(exchange: str) -> str:
    """The name of the stream that keeps the history of ``exchange``."""
    return f"{exchange}.stream"


@dataclass(frozen=True, slots=True)
class StreamRetention:
    """How much history the stream keeps: whichever limit is reached first applies.

    RabbitMQ removes whole segments, so the stream holds a little more than either
    limit before the oldest segment goes.
    """

    max_age: float
    max_bytes: int

    def arguments(self) -> dict[str, Any]:
        """The stream's ``x-`` queue arguments."""
        return {
            "x-queue-type": "stream",
            "x-max-age": f"{max(1, round(self.max_age))}s",
            "x-max-length-bytes": self.max_bytes,
        }


async def declare_stream(
    channel: AbstractChannel, exchange: str, retention: StreamRetention
) -> AbstractQueue:
    """Declare ``<exchange>.stream`` with ``retention`` and bind it to ``exchange`` with ``#``.

    Call it after :func:`declare_topology`.  A stream bound with ``#`` receives every
    message, so nothing is unrouted any more once it exists.

    Raises:
        TopologyConflict: the stream exists with other arguments (the broker has closed
            ``channel``).
        aiormq.exceptions.AMQPError: any other broker or connection failure.
    """
    name = stream_name(exchange)
    try:
        queue = await channel.declare_queue(name, durable=True, arguments=retention.arguments())
    except aiormq.exceptions.ChannelPreconditionFailed as e:
        raise TopologyConflict(
            f"stream {name!r} already exists with other arguments than "
            f"{retention.arguments()}: delete it or configure the same retention ({e})"
        ) from e
    await queue.bind(exchange, routing_key="#")
    return queue
