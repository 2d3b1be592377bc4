"""Read the bridge's history from its stream: from the start, a time or a saved offset.

Approach
--------
The bridge binds a stream queue, ``<exchange>.stream``, with ``#`` (see
:func:`bridge.publish.topology.declare_stream`).  A stream is a log: reading it takes
nothing away, and a reader says where to begin with the ``x-stream-offset`` consumer
argument of AMQP 0-9-1 (``first``, ``last``, ``next``, an offset, or a time).
:class:`StreamReplay` consumes it with a prefetch (RabbitMQ requires one for streams) and
yields each message as a :class:`Replayed`: the same typed model a
:class:`~bridge.consumer.Consumer` yields, its routing key, and its **offset**, the
message's position in the stream.  Save the offset of the last message handled and pass
``start=offset + 1`` next time: the replay resumes with the next message, with no gap
and no repeat.

What the broker leaves to the reader, done here:

* **Patterns.**  The stream holds every message; routing patterns are matched on the
  client (:class:`~bridge.consumer.patterns.TopicFilter`), with topic-exchange rules.
* **Time.**  A start time is a seek by the time the broker stored each chunk of
  messages, so the first chunk can hold messages stored a little earlier.  Messages whose
  ``received_at`` (when the bridge read them from the AMI) is before the start time are
  skipped.  A message the bridge read long before it could publish it (held in its
  journal during a broker outage) is stored late but skipped all the same: the start
  time is about when events happened.
* **The present.**  With ``until_now=True`` the replay stops at the newest message the
  stream held when it started.  AMQP 0-9-1 has no call for a stream's last offset, so a
  short-lived probe consumer starts at ``last`` (the broker's newest chunk) and takes the
  highest offset it is sent; a stream that sends nothing within ``probe_timeout``
  seconds is empty, and the replay ends at once.  :attr:`StreamReplay.present` is that
  offset.  A replay that starts past the present (a later time or offset) gets nothing
  more from the broker; it ends after ``probe_timeout`` seconds of silence.
* **Duplicates.**  A message the bridge published twice (at-least-once, after a lost
  confirm) is in the stream twice; the second copy is skipped, as
  :class:`~bridge.consumer.Consumer` skips it.
* **Acks.**  Stream deliveries are acked only to let the broker send more (nothing is
  removed), so they are acked in batches of half the prefetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Literal, TypeAlias

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
)

from bridge.consumer.errors import ConsumerError
from bridge.consumer.messages import Message, MessageError, parse_message
from bridge.consumer.patterns import TopicFilter
from bridge.consumer.sequence import Report, SequenceTracker
from bridge.events.envelope import format_received_at
from bridge.publish.broker import mask_url
from bridge.publish.topology import DEFAULT_EXCHANGE, stream_name

__all__ = ["OFFSET_HEADER", "Replayed", "StreamReplay", "StreamStart"]

log = logging.getLogger(__name__)

#: Where a replay begins: ``"first"`` (the oldest message kept), ``"last"`` (the newest
#: chunk), ``"next"`` (only what comes after it starts), an offset, or a time (aware).
StreamStart: TypeAlias = Literal["first", "last", "next"] | int | datetime

#: The header RabbitMQ puts on every stream delivery: the message's offset.
OFFSET_HEADER = "x-stream-offset"

_BROKER_ERRORS = (aiormq.exceptions.AMQPError, OSError, TimeoutError)
_NOT_STARTED = "the replay is not started: use 'async with StreamReplay(...)'"
#: After the probe's first delivery, how long to wait for the rest of the newest chunk.
_PROBE_SETTLE = 0.3
#: The longest the probe listens once the newest chunk has begun to arrive.
_PROBE_LONGEST = 1.0


@dataclass(frozen=True, slots=True)
class Replayed:
    """One message read from the stream."""

    #: Its position in the stream; ``start=offset + 1`` resumes after it.
    offset: int
    routing_key: str
    message: Message
    #: The body exactly as published.
    body: bytes


class StreamReplay:
    """The messages of the bridge's stream, from ``start``, matching ``patterns``.

    Args:
        url: the broker (never logged with its password).
        exchange: the bridge's exchange; the stream is ``<exchange>.stream``.
        patterns: routing patterns to keep (``#``: all), matched on the client.
        start: where to begin (see :data:`StreamStart`); a naive datetime is refused.
        until_now: stop after the newest message the stream held at the start, instead
            of following new messages.
        prefetch: messages the broker sends ahead of the reader.
        connect_timeout: seconds to wait for the connection.
        probe_timeout: with ``until_now``, seconds to wait for the newest chunk before
            taking the stream as empty.
        track_gaps, on_report: as for :class:`~bridge.consumer.Consumer`: sequence gaps
            are only meaningful when ``patterns`` cover whole servers.

    Iterate with ``async for`` inside ``async with``; iteration ends when the replay
    reaches the present (``until_now``) or is closed.

    Raises:
        ValueError: no pattern, a prefetch below 2, a negative offset or a naive time.
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = DEFAULT_EXCHANGE,
        patterns: Sequence[str] = ("#",),
        start: StreamStart = "first",
        until_now: bool = False,
        prefetch: int = 1000,
        connect_timeout: float = 10.0,
        probe_timeout: float = 2.0,
        track_gaps: bool = False,
        on_report: Callable[[Report], None] | None = None,
    ) -> None:
        if isinstance(patterns, str):
            raise ValueError("patterns must be a sequence of routing patterns")
        if prefetch < 2:
            raise ValueError("prefetch must be at least 2")
        if isinstance(start, bool) or (isinstance(start, int) and start < 0):
            raise ValueError("a start offset must be an integer of 0 or more")
        if isinstance(start, datetime) and start.tzinfo is None:
            raise ValueError("a start time must carry its time zone")
        self._url = url
        self.exchange = exchange
        self.stream = stream_name(exchange)
        self.filter = TopicFilter(patterns)
        self.start_at = start
        self.until_now = until_now
        self.prefetch = prefetch
        self.connect_timeout = connect_timeout
        self.probe_timeout = probe_timeout
        #: With ``until_now``: the newest offset at the start, None for an empty stream.
        self.present: int | None = None
        #: Duplicates skipped (their first copy was yielded), and gaps when tracked.
        self.tracker = SequenceTracker(track_gaps=track_gaps, on_report=on_report)
        #: Bodies that are not messages of the contract (logged and skipped).
        self.unreadable = 0
        #: The offset of the last message read, whether yielded or skipped.
        self.last_offset: int | None = None
        self._since = format_received_at(start.timestamp()) if isinstance(start, datetime) else None
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        # Deliveries in arrival order; None once the channel is gone.
        self._buffer: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._lost_because = ""
        self._unacked: AbstractIncomingMessage | None = None
        self._pending_acks = 0
        self._done = False

    def __repr__(self) -> str:
        return (
            f"StreamReplay({mask_url(self._url)!r}, stream={self.stream!r}, "
            f"patterns={list(self.filter.patterns)!r}, start={self.start_at!r})"
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, find the stream (and, with ``until_now``, the present), start reading.

        Raises:
            ConsumerError: the broker cannot be used or the stream does not exist.
        """
        where = mask_url(self._url)
        try:
            self._connection = await aio_pika.connect(self._url, timeout=self.connect_timeout)
        except _BROKER_ERRORS as exc:
            raise ConsumerError(f"cannot connect to the broker at {where}: {_why(exc)}") from None
        try:
            await self._require_stream()
            if self.until_now:
                self.present = await self._probe_present()
                if self.present is None:
                    self._done = True
                    return
            channel = self._channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            channel.close_callbacks.add(self._on_channel_closed)
            queue = await channel.get_queue(self.stream, ensure=False)
            # A datetime is sent as an AMQP timestamp: a seek by time.  (aio-pika's queue
            # iterator is not used: it nacks what it holds on close, which a stream refuses
            # by closing the connection.)
            await queue.consume(self._buffer.put, arguments={OFFSET_HEADER: self.start_at})
        except ConsumerError:
            await self.close()
            raise
        except _BROKER_ERRORS as exc:
            await self.close()
            raise ConsumerError(f"broker {where}: {_why(exc)}") from exc
        except BaseException:
            await self.close()
            raise
        log.info("replaying %s on %s from %r", self.stream, where, self.start_at)

    async def close(self) -> None:
        """Stop reading and close the connection."""
        connection, self._connection = self._connection, None
        self._done = True
        if connection is None or connection.is_closed:
            return
        with contextlib.suppress(*_BROKER_ERRORS, RuntimeError):
            await self._flush_acks()
        # Unacked stream deliveries need no settling: closing takes nothing away.
        with contextlib.suppress(*_BROKER_ERRORS, RuntimeError):
            await connection.close()

    async def __aenter__(self) -> StreamReplay:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- reading ------------------------------------------------------------------------

    def __aiter__(self) -> StreamReplay:
        return self

    async def __anext__(self) -> Replayed:
        """The next message that matches, in stream order.

        Raises:
            StopAsyncIteration: the present is reached (``until_now``) or the replay closed.
            ConsumerError: the connection to the broker was lost; resume from
                :attr:`last_offset` + 1 on a new replay.
            RuntimeError: the replay is not started.
        """
        while True:
            if self._done:
                raise StopAsyncIteration
            if self._connection is None:
                raise RuntimeError(_NOT_STARTED)
            try:
                if self.present is None:
                    raw = await self._buffer.get()
                else:
                    # Stored messages come at once; silence means the start was past
                    # the present (a later time or offset) and nothing is left to show.
                    raw = await asyncio.wait_for(self._buffer.get(), self.probe_timeout)
            except TimeoutError:
                await self._flush_acks()
                self._done = True
                raise StopAsyncIteration from None
            if raw is None:
                self._done = True
                raise ConsumerError(
                    f"lost the stream {self.stream!r} after offset {self.last_offset}: "
                    f"{self._lost_because}; resume from the next offset"
                )
            replayed = await self._take(raw)
            if replayed is not None:
                return replayed

    async def _take(self, raw: AbstractIncomingMessage) -> Replayed | None:
        offset = _offset_of(raw)
        self.last_offset = offset
        await self._ack_later(raw)
        present = self.present
        if present is not None and offset >= present:
            self._done = True  # this one is still shown; nothing after it
            if offset > present:
                return None
        key = raw.routing_key or ""
        if not self.filter(key):
            return None
        try:
            message = parse_message(raw.body)
        except MessageError as exc:
            self.unreadable += 1
            log.error("unreadable message at offset %d (routing key %r): %s", offset, key, exc)
            return None
        if self._since is not None and message.received_at < self._since:
            return None  # the seek is by chunk: this one was read before the start time
        if not self.tracker.observe(message):
            return None
        self.tracker.handled(message)
        return Replayed(offset, key, message, raw.body)

    async def _ack_later(self, raw: AbstractIncomingMessage) -> None:
        # Acks only grant the broker credit on a stream; one multiple ack per half
        # prefetch keeps it sending without a frame per message.
        self._unacked = raw
        self._pending_acks += 1
        if self._pending_acks >= self.prefetch // 2:
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        raw, self._unacked = self._unacked, None
        self._pending_acks = 0
        if raw is not None:
            await raw.ack(multiple=True)

    # -- internals ----------------------------------------------------------------------

    def _on_channel_closed(self, _sender: object, error: BaseException | None) -> None:
        if not self._done:
            self._lost_because = _why(error) if error else "the channel closed"
            self._buffer.put_nowait(None)

    async def _require_stream(self) -> None:
        """Check that the stream exists, on a channel of its own (a miss closes it)."""
        assert self._connection is not None
        probe = await self._connection.channel()
        try:
            await probe.declare_queue(self.stream, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise ConsumerError(
                f"stream {self.stream!r} does not exist: is the bridge publishing to "
                f"{self.exchange!r} with the stream setting on?"
            ) from None
        finally:
            if not probe.is_closed:
                await probe.close()

    async def _probe_present(self) -> int | None:
        """The highest offset of the newest chunk, or None when nothing comes in time."""
        assert self._connection is not None
        channel = await self._connection.channel()
        newest: int | None = None
        arrived = asyncio.Event()

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal newest
            offset = _offset_of(message)
            newest = offset if newest is None else max(newest, offset)
            arrived.set()

        try:
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.get_queue(self.stream, ensure=False)
            await queue.consume(on_message, no_ack=False, arguments={OFFSET_HEADER: "last"})
            try:
                await asyncio.wait_for(arrived.wait(), self.probe_timeout)
            except TimeoutError:
                return None
            # The rest of the chunk follows at once; chunks stored meanwhile only move
            # the present a little later, and live traffic cannot hold the probe open.
            deadline = asyncio.get_running_loop().time() + _PROBE_LONGEST
            while asyncio.get_running_loop().time() < deadline:
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), _PROBE_SETTLE)
                except TimeoutError:
                    break
            return newest
        finally:
            with contextlib.suppress(*_BROKER_ERRORS, RuntimeError):
                await channel.close()


def _offset_of(raw: AbstractIncomingMessage) -> int:
    offset = (raw.headers or {}).get(OFFSET_HEADER)
    if not isinstance(offset, int):
        raise ConsumerError(
            f"a delivery without {OFFSET_HEADER!r}: is {raw.routing_key!r} from a stream?"
        )
    return offset


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
