"""The broker side of AMI actions over the bus: its entities, and errors fit for logs.

Approach
--------
Requests go to a durable topic exchange (``ami.actions`` by default).  Each bridge
consumes them from its own exclusive, auto-delete queue, bound with ``{server}`` and
``{server}.*`` for every server it serves.  The queue has a message TTL close to the
action timeout: a request nobody took in time has a client that gave up on it, and must
not run late.  (Two bridges serving the same server id on one exchange would both run
each request: give each bridge its own server ids, or its own exchange.)

A request for a server no bridge serves would match no queue and vanish, leaving its
client to time out.  So the exchange names an alternate exchange, ``<exchange>.unrouted``
(fanout), bound to a shared, auto-delete queue of the same name that every bridge
consumes: whichever bridge takes such a request replies ``unknown_server``.  Its TTL is
a constant, so bridges with different timeouts declare it alike.  When no bridge runs at
all nothing is bound, and a client publishing with ``mandatory`` gets its request back.

Declaring the same entities again changes nothing; an entity that exists with other
settings raises :class:`~bridge.publish.topology.TopologyConflict`.

Broker failures are :data:`BROKER_ERRORS`; :func:`bridge.publish.broker.describe_failure`
turns one into text without the AMQP password, in case a library echoed the URL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractQueue

from bridge.publish.topology import TopologyConflict, unrouted_name

__all__ = [
    "BROKER_ERRORS",
    "DEFAULT_RPC_EXCHANGE",
    "UNROUTED_TTL",
    "RpcQueues",
    "declare_rpc_topology",
    "request_bindings",
]

#: The request exchange unless the ``rpc_exchange`` setting names another.
DEFAULT_RPC_EXCHANGE = "ami.actions"
#: What a broker failure raises (aiormq lets StopAsyncIteration out of a broken handshake).
BROKER_ERRORS = (aiormq.exceptions.AMQPError, OSError, TimeoutError, StopAsyncIteration)
#: Seconds a request nobody serves waits in the shared queue for a bridge to refuse it.
UNROUTED_TTL = 10.0


@dataclass(frozen=True, slots=True)
class RpcQueues:
    """The two queues a bridge consumes requests from."""

    #: This bridge's own queue, bound for its servers.
    own: AbstractQueue
    #: The shared queue of requests no bridge's binding matched.
    unrouted: AbstractQueue


def request_bindings(server_keys: Iterable[str]) -> list[str]:
    """The binding keys for servers whose routing-key segments are ``server_keys``."""
    return [key for server in server_keys for key in (server, f"{server}.*")]


async def declare_rpc_topology(
    channel: AbstractChannel,
    exchange: str,
    queue: str,
    server_keys: Iterable[str],
    *,
    ttl: float,
) -> RpcQueues:
    """Declare the request exchange, its alternate exchange and both queues, and bind them.

    ``queue`` names this bridge's exclusive queue; ``ttl`` (seconds) is its message TTL.

    Raises:
        TopologyConflict: an entity exists with other settings (the broker has closed
            ``channel``).
        aiormq.exceptions.AMQPError: any other broker or connection failure.
    """
    unrouted = unrouted_name(exchange)
    try:
        # The request exchange first: a conflict there leaves nothing else behind.
        requests = await channel.declare_exchange(
            exchange,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": unrouted},
        )
        alternate = await channel.declare_exchange(
            unrouted, aio_pika.ExchangeType.FANOUT, durable=True
        )
        shared = await channel.declare_queue(
            unrouted, auto_delete=True, arguments={"x-message-ttl": int(UNROUTED_TTL * 1000)}
        )
        await shared.bind(alternate, routing_key="")
        own = await channel.declare_queue(
            queue,
            exclusive=True,
            auto_delete=True,
            arguments={"x-message-ttl": max(1, round(ttl * 1000))},
        )
        for key in request_bindings(server_keys):
            await own.bind(requests, routing_key=key)
    except aiormq.exceptions.ChannelPreconditionFailed as e:
        raise TopologyConflict(
            f"exchange {exchange!r} or {unrouted!r} (or queue {unrouted!r}) already exists "
            f"with other settings: {e}"
        ) from e
    return RpcQueues(own, shared)
