"""Consume the bridge's messages from RabbitMQ as typed models, with retries and dead letters.

Approach
--------
:class:`Consumer` owns one robust aio-pika connection (it reconnects, redeclares and
resumes by itself) and one queue bound to the event exchange with routing patterns; the
entities are described in :mod:`bridge.consumer.topology`.  Each delivery is parsed
into a typed message and settled by the policy of :mod:`bridge.consumer.delivery`:
unreadable bodies are dead-lettered at once, duplicates skipped, and a message whose
handler fails is requeued until it has been tried ``max_attempts`` times, then
dead-lettered.  Retries are immediate; a handler that wants a pause before the next try
sleeps before it raises.

The consumer is its own async iterator (not an async generator), so leaving a loop
early leaves nothing to finalize after the connection is closed.  Two ways to consume::

    async with Consumer(url, patterns=["pbx1.call.hangup"], queue="billing") as consumer:
        await consumer.run(handle)          # handle(message) is async; ack on return

    async with Consumer(url, patterns=["#"]) as consumer:
        async for delivery in consumer:     # settle every delivery yourself
            print(delivery.message.event)
            await delivery.ack()
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractQueue,
    AbstractQueueIterator,
    AbstractRobustConnection,
)

from bridge.consumer.attempts import AttemptCounter
from bridge.consumer.delivery import Delivery, Settlement
from bridge.consumer.errors import ConsumerError
from bridge.consumer.messages import Message
from bridge.consumer.sequence import Report
from bridge.consumer.topology import (
    QueuePlan,
    TopologyConflict,
    dead_letter_name,
    declare_consumer_topology,
)
from bridge.publish.broker import mask_url
from bridge.publish.topology import DEFAULT_EXCHANGE

__all__ = ["Consumer", "Handler"]

log = logging.getLogger(__name__)

#: An application's message handler: ack when it returns, retry when it raises.
Handler = Callable[[Message], Awaitable[None]]

_NOT_STARTED = "the consumer is not started: use 'async with Consumer(...)'"

# Broker failures that mean "cannot use the broker" rather than a bug.
_BROKER_ERRORS = (aiormq.exceptions.AMQPError, OSError, TimeoutError)


class Consumer:
    """A queue of the bridge's messages, bound to routing patterns on the event exchange.

    Args:
        url: the broker, ``amqp://user:password@host:port/vhost`` (never logged as is).
        exchange: the bridge's topic exchange.
        patterns: routing patterns to bind, such as ``pbx1.#`` or ``*.call.hangup``
            (keys are ``{server}.{class}.{event}``, lower case).
        queue: a durable queue name; None for an exclusive, auto-delete queue.
        quorum: make the named queue a quorum queue (RabbitMQ counts deliveries).
        prefetch: messages in flight to this consumer.
        max_attempts: tries before a failing message is dead-lettered.
        dead_letters: dead-letter failed messages; False drops them after the last try.
        dead_letter_exchange: the dead-letter exchange; ``<exchange>.dlx`` when None.
        dead_letter_queue: a durable queue to declare and bind to the dead-letter
            exchange with ``patterns``, if any.
        declare_exchange: declare the event exchange as the bridge does; False only
            checks that it exists.
        track_gaps: report sequence gaps (only meaningful when ``patterns`` cover every
            message of each server, e.g. ``pbx1.#``); duplicates are always detected.
        on_report: called with each duplicate, sequence gap or bridge gap report.
        connect_timeout: seconds to wait for the first connection.

    Raises:
        ValueError: no pattern, or ``prefetch`` or ``max_attempts`` below 1.
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = DEFAULT_EXCHANGE,
        patterns: Sequence[str],
        queue: str | None = None,
        quorum: bool = True,
        prefetch: int = 100,
        max_attempts: int = 5,
        dead_letters: bool = True,
        dead_letter_exchange: str | None = None,
        dead_letter_queue: str | None = None,
        declare_exchange: bool = True,
        track_gaps: bool = False,
        on_report: Callable[[Report], None] | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        if isinstance(patterns, str) or not patterns:
            raise ValueError("patterns must be a non-empty sequence of routing patterns")
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self._url = url
        self.plan = QueuePlan(
            exchange=exchange,
            patterns=tuple(patterns),
            queue=queue,
            quorum=quorum,
            max_attempts=max_attempts,
            dead_letter_exchange=(dead_letter_exchange or dead_letter_name(exchange))
            if dead_letters
            else None,
            dead_letter_queue=dead_letter_queue if dead_letters else None,
        )
        self.settlement = Settlement(
            AttemptCounter(max_attempts, broker_counts=self.plan.is_quorum),
            track_gaps=track_gaps,
            dead_letter_exchange=self.plan.dead_letter_exchange,
            on_report=on_report,
        )
        #: Duplicate and gap detection, with its counters.
        self.tracker = self.settlement.tracker
        #: Acked, requeued, dead-lettered and unreadable messages so far.
        self.stats = self.settlement.stats
        self.prefetch = prefetch
        self.declare_exchange = declare_exchange
        self.connect_timeout = connect_timeout
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._incoming: AbstractQueueIterator | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"Consumer({mask_url(self._url)!r}, exchange={self.plan.exchange!r}, "
            f"patterns={list(self.plan.patterns)!r}, queue={self.plan.queue!r})"
        )

    @property
    def queue_name(self) -> str:
        """The bound queue's name (the broker's for an exclusive queue).

        Raises:
            RuntimeError: the consumer is not started.
        """
        return self._started_queue().name

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, declare the queue and its bindings.

        Raises:
            ConsumerError: the broker is unreachable, refused the credentials, lacks the
                exchange (``declare_exchange=False``) or holds an entity with other
                settings.
        """
        where = mask_url(self._url)
        self._closed = False
        try:
            self._connection = await aio_pika.connect_robust(
                self._url, timeout=self.connect_timeout
            )
        except _BROKER_ERRORS as exc:
            raise ConsumerError(
                f"cannot connect to the broker at {where}: {self._why(exc)}"
            ) from None
        try:
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            self._queue = await declare_consumer_topology(
                self._connection, channel, self.plan, declare_exchange=self.declare_exchange
            )
            self._incoming = self._queue.iterator()
            await self._incoming.consume()
        except (TopologyConflict, *_BROKER_ERRORS) as exc:
            await self.close()
            raise ConsumerError(f"broker {where}: {self._why(exc)}") from exc
        except BaseException:
            await self.close()
            raise
        log.info(
            "consuming %s from %r on %s, bound to %s",
            self._queue.name,
            self.plan.exchange,
            where,
            ", ".join(self.plan.patterns),
        )

    async def close(self) -> None:
        """Close the connection; unacked messages go back to the queue."""
        connection, self._connection, self._queue = self._connection, None, None
        incoming, self._incoming = self._incoming, None
        self._closed = True
        if connection is None or connection.is_closed:
            return
        if incoming is not None:
            # Cancel the subscription first, so prefetched messages go back at once.
            with contextlib.suppress(*_BROKER_ERRORS, RuntimeError, ExceptionGroup):
                await incoming.close()
        await connection.close()

    async def __aenter__(self) -> Consumer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- consuming ----------------------------------------------------------------------

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Delivery:
        """The next new message, in queue order; duplicates and unreadable bodies are not.

        Raises:
            RuntimeError: the consumer is not started.
            StopAsyncIteration: the consumer was closed.
        """
        if self._incoming is None:
            if self._closed:
                raise StopAsyncIteration
            raise RuntimeError(_NOT_STARTED)
        while True:
            delivery = await self.settlement.accept(await anext(self._incoming))
            if delivery is not None:
                return delivery

    async def run(self, handler: Handler) -> None:
        """Call ``handler(message)`` for each message until cancelled or closed.

        The message is acked when the handler returns, retried when it raises (see
        :meth:`Delivery.fail`).  Only ``Exception`` counts as a failure: cancellation
        stops the loop and leaves the message for the next consumer.

        Raises:
            RuntimeError: the consumer is not started.
        """
        async for delivery in self:
            try:
                await handler(delivery.message)
            except Exception as exc:
                await delivery.fail(exc)
            else:
                await delivery.ack()

    def _why(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"no answer within {self.connect_timeout:g} s"
        return str(exc) or type(exc).__name__

    def _started_queue(self) -> AbstractQueue:
        if self._queue is None:
            raise RuntimeError(_NOT_STARTED)
        return self._queue
