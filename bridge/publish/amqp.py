"""The confirming AMQP publisher: many publishes in flight, every outcome reported.

Approach
--------
aio-pika opens the connection and the channel (publisher confirms on) and declares the
topology; the hot path then skips its per-message machinery.  ``Exchange.publish`` and
aiormq's ``basic_publish`` cost a task, a lock, a timeout context and a generic
property encoder per message, which held a plain loop near 5,000 msgs/s.  Here:

* the frames of a publish are encoded directly
  (:class:`~bridge.publish.amqp_frames.PublishEncoder`), with the method frame cached per
  routing key and the constant properties encoded once;
* the publish is registered in aiormq's own confirmation table (``delivery_tag``,
  ``confirmations``, ``message_id_delivery_tag``) exactly as ``basic_publish`` does, so
  aiormq's reader still resolves acks, nacks and returns;
* publishes made in the same loop iteration are joined and handed to the connection's
  writer as one buffer: one socket write for many messages.

Outcomes: each publish carries the caller's token (a journal record id, say) and ends as
exactly one :class:`PublishResult` (confirmed, nacked, returned, or failed because the
connection dropped with it in flight), handed out in batches by :meth:`results`.  The
window counts messages whose result has not been handed out yet, so a slow consumer of
results slows publishing instead of growing memory.  Reconnecting is the caller's job:
call :meth:`AmqpPublisher.connect` again (with the same node or another of the cluster)
once :meth:`wait_connection_lost` returns.

A hung broker (TCP open, nothing answers) is noticed two ways: the AMQP heartbeat
(aiormq drops a connection silent for three heartbeats plus three seconds), and a
deadline on the oldest unconfirmed publish (``confirm_timeout``), which also catches a
broker that answers heartbeats but confirms nothing.  The deadline does not run while the
broker blocks publishing for a resource alarm: then silence is expected, and the alarm is
reported instead (``blocked``, ``on_alarm``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any, Generic, TypeVar

import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import ChannelFrame, DeliveredMessage
from pamqp import commands as spec

from bridge.publish.amqp_frames import APP_ID, PublishEncoder
from bridge.publish.broker import BrokerUnavailable, TlsOptions, describe_failure, mask_url
from bridge.publish.connection import broker_failure, node_name, open_connection
from bridge.publish.message import OutgoingMessage
from bridge.publish.topology import (
    DEFAULT_EXCHANGE,
    DEFAULT_UNROUTED_MAX_LENGTH,
    StreamRetention,
    TopologyConflict,
    UnroutedQueueDown,
    declare_stream,
    declare_topology,
)

__all__ = [
    "DEFAULT_WINDOW",
    "AmqpPublisher",
    "Outcome",
    "PublishResult",
]

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 1000
#: Seconds between checks of the oldest unconfirmed publish.
_WATCH_INTERVAL = 1.0
#: Seconds a dropped connection may take to close before it is abandoned.
_CLOSE_GRACE = 2.0
#: A connection whose every publish is nacked this long (at least _NACK_STREAK_MIN of
#: them, none confirmed) is dropped for the next node.  RabbitMQ 3.10 channels that
#: published to a quorum queue whose leader died keep nacking even after a new leader is
#: elected; a new channel works.
_NACK_STREAK_SECONDS = 2.0
_NACK_STREAK_MIN = 50

T = TypeVar("T")


class Outcome(StrEnum):
    CONFIRMED = "confirmed"
    NACKED = "nacked"
    RETURNED = "returned"
    #: The connection or channel closed before the broker answered; the broker may or may
    #: not have the message, so publishing it again is at-least-once.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PublishResult(Generic[T]):
    """How one publish ended.  Only CONFIRMED means the broker took responsibility."""

    token: T
    outcome: Outcome
    message: OutgoingMessage
    reason: str = ""
    #: The broker's reply code of a return (312 NO_ROUTE, say); 0 otherwise.
    reply_code: int = 0


@dataclass(slots=True)
class _Link:
    """One live connection and everything tied to it."""

    url: str
    connection: AbstractConnection
    channel: AbstractChannel
    raw: aiormq.abc.AbstractChannel
    encoder: PublishEncoder
    tasks: list[asyncio.Task[None]]


class AmqpPublisher(Generic[T]):
    """Publishes :class:`OutgoingMessage` values with confirms, ``window`` of them in flight.

    Counters ``confirmed``, ``nacked``, ``returned`` and ``failed`` count the results
    produced so far.  Use one task to :meth:`publish` and another to consume
    :meth:`results`; the window only frees up as results are consumed.
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = DEFAULT_EXCHANGE,
        window: int = DEFAULT_WINDOW,
        tls: TlsOptions | None = None,
        connect_timeout: float = 10.0,
        heartbeat: int = 60,
        confirm_timeout: float = 15.0,
        on_alarm: Callable[[str | None], None] | None = None,
        unrouted_queue_type: str = "classic",
        unrouted_max_length: int = DEFAULT_UNROUTED_MAX_LENGTH,
        stream: StreamRetention | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._url = url
        self._tls = tls
        self._connect_timeout = connect_timeout
        self._heartbeat = heartbeat
        self.confirm_timeout = confirm_timeout
        self._on_alarm = on_alarm
        self.unrouted_queue_type = unrouted_queue_type
        self.unrouted_max_length = unrouted_max_length
        #: The broker's reason while it blocks publishing (a resource alarm), else None.
        self.blocked: str | None = None
        self._blocked_at = 0.0
        self._proven = asyncio.Event()
        self._nack_streak = 0
        self._nack_streak_since = 0.0
        self.exchange = exchange
        self.window = window
        #: The history stream's retention; None declares no stream.
        self.stream = stream
        self.confirmed = self.nacked = self.returned = self.failed = 0
        self._link: _Link | None = None
        self._closed = False
        self._in_flight: dict[int, tuple[T, OutgoingMessage]] = {}
        self._out: list[bytes] = []
        self._ready: list[PublishResult[T]] = []
        self._outstanding = 0  # published, result not handed out yet
        self._flush_needed = asyncio.Event()
        self._results_ready = asyncio.Event()
        self._room = asyncio.Event()
        self._settled = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost.set()
        self._closers: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        state = "connected" if self._link else "disconnected"
        return f"<AmqpPublisher {mask_url(self._url)} {self.exchange!r} {state}>"

    # -- connection ------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._link is not None

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet confirmed, nacked, returned or failed."""
        return len(self._in_flight)

    @property
    def url(self) -> str:
        """The node connected to, or the one the last attempt went to."""
        return self._url

    async def connect(self, url: str | None = None) -> None:
        """Connect to ``url`` (by default the last node), open a confirming channel and
        declare the topology.

        Raises:
            BrokerAuthError: the broker refused the user name or password.
            BrokerRefused: the broker refused the virtual host, or a permission needed to
                declare the topology.
            BrokerUnavailable: the broker cannot be reached, the handshake failed
                (including an untrusted certificate), or it failed while declaring.
            TopologyConflict: the exchange, a queue or the stream exists with other
                settings.
            OSError: a TLS file cannot be read or is not a certificate or key.
        """
        if self._link is not None:
            return
        if url is not None:
            self._url = url
        connection = await open_connection(
            self._url,
            name=APP_ID,
            tls=self._tls,
            timeout=self._connect_timeout,
            heartbeat=self._heartbeat,
            alarms=self,
        )
        try:
            await self._declare(connection)
            channel = await connection.channel(publisher_confirms=True)
            raw = await channel.get_underlay_channel()
        except TopologyConflict:
            await _close_quietly(connection)
            raise
        except _BROKER_FAILURES as e:
            await _close_quietly(connection)
            raise broker_failure(e, self._url, f"declaring exchange {self.exchange!r}") from None
        except BaseException:
            await _close_quietly(connection)
            raise
        encoder = PublishEncoder(raw.number, self.exchange, raw.max_content_size)  # type: ignore[attr-defined]
        link = _Link(self._url, connection, channel, raw, encoder, [])
        link.tasks.append(asyncio.create_task(self._flush_loop(link), name="amqp-flush"))
        link.tasks.append(asyncio.create_task(self._watch_confirms(link), name="amqp-watch"))
        connection.close_callbacks.add(partial(self._on_closed, link))
        channel.close_callbacks.add(partial(self._on_closed, link))
        self._link = link
        self._closed = False
        self._proven.clear()
        self._lost.clear()
        log.info("connected to broker %s, exchange %r", node_name(self._url), self.exchange)

    async def _declare(self, connection: AbstractConnection) -> None:
        """Declare the topology on a channel of its own (a refusal closes the channel)."""
        channel = await connection.channel(publisher_confirms=False)
        try:
            await declare_topology(
                channel,
                self.exchange,
                unrouted_queue_type=self.unrouted_queue_type,
                unrouted_max_length=self.unrouted_max_length,
            )
            if self.stream is not None:
                await declare_stream(channel, self.exchange, self.stream)
        except UnroutedQueueDown as e:
            log.warning("%s; publishing anyway, unrouted messages wait for that node", e)
        finally:
            if not channel.is_closed:
                await channel.close()

    async def wait_proven(self) -> None:
        """Return once the current connection had a publish confirmed."""
        await self._proven.wait()

    async def redeclare(self) -> None:
        """Declare the topology again on the current connection (an entity was deleted).

        Raises:
            BrokerUnavailable: not connected, or the declaration failed.
            TopologyConflict: an entity now exists with other settings.
        """
        link = self._link
        if link is None:
            raise BrokerUnavailable(f"not connected to {mask_url(self._url)}")
        try:
            await self._declare(link.connection)
        except _BROKER_FAILURES as e:
            raise broker_failure(e, link.url, f"declaring exchange {self.exchange!r}") from None
        log.info("declared the topology of exchange %r again", self.exchange)

    # -- resource alarms (the connection's AlarmListener) ------------------------------

    def on_blocked(self, reason: str) -> None:
        if self.blocked is not None:
            return
        self.blocked = reason
        self._blocked_at = asyncio.get_running_loop().time()
        log.warning(
            "broker %s blocked publishing: %s; events stay journalled until it unblocks",
            node_name(self._url),
            reason,
        )
        if self._on_alarm is not None:
            self._on_alarm(reason)

    def on_unblocked(self) -> None:
        if self.blocked is None:
            return
        self._clear_alarm(cleared=True)

    def _clear_alarm(self, *, cleared: bool) -> None:
        if self.blocked is None:
            return
        self.blocked = None
        if cleared:
            took = asyncio.get_running_loop().time() - self._blocked_at
            log.info("broker %s unblocked publishing after %.1f s", node_name(self._url), took)
        if self._on_alarm is not None:
            self._on_alarm(None)

    async def _watch_confirms(self, link: _Link) -> None:
        """Drop ``link`` when its oldest publish waits longer than ``confirm_timeout``."""
        loop = asyncio.get_running_loop()
        oldest: int | None = None
        since = loop.time()
        while self._link is link:
            await asyncio.sleep(_WATCH_INTERVAL)
            now = loop.time()
            first = next(iter(self._in_flight), None)
            if first != oldest or self.blocked is not None:
                oldest, since = first, now
                continue
            if first is not None and now - since > self.confirm_timeout:
                reason = f"no confirm for {now - since:.0f} s (a hung broker?)"
                log.warning("connection to broker %s dropped: %s", node_name(link.url), reason)
                self._drop_and_close(link, reason)
                return

    async def wait_connection_lost(self) -> None:
        """Return once the current connection is gone (at once when not connected)."""
        await self._lost.wait()

    async def close(self, grace: float = 5.0) -> None:
        """Wait up to ``grace`` seconds for in-flight messages to settle, then disconnect.

        Messages still in flight afterwards are reported as FAILED.  :meth:`results`
        ends once the remaining results have been handed out.
        """
        self._closed = True
        link = self._link
        if link is not None:
            try:
                await asyncio.wait_for(self.wait_settled(), grace)
            except TimeoutError:
                log.warning("closing with %d messages unconfirmed", len(self._in_flight))
            self._drop(link, "publisher closed")
            await _close_quietly(link.connection)
        await asyncio.gather(*self._closers, return_exceptions=True)
        self._results_ready.set()
        self._room.set()

    # -- publishing ------------------------------------------------------------------

    async def wait_room(self) -> None:
        """Return once :meth:`publish` would not wait for the window (or not connected)."""
        while self._outstanding >= self.window and self._link is not None:
            self._room.clear()
            await self._room.wait()

    async def publish(self, message: OutgoingMessage, token: T) -> None:
        """Send ``message``; its result, carrying ``token``, comes later from :meth:`results`.

        Waits while ``window`` results are outstanding (see :meth:`wait_room`).

        Raises:
            BrokerUnavailable: not connected, or the connection dropped while waiting.
            ValueError: the message cannot be encoded (see :meth:`PublishEncoder.encode`).
            TypeError: a header value cannot be encoded.
        """
        # wait_room's loop, inline: this is the hot path.
        while self._outstanding >= self.window and self._link is not None:
            self._room.clear()
            await self._room.wait()
        link = self._link
        if link is None or self._closed:
            raise BrokerUnavailable(f"not connected to {mask_url(self._url)}")
        link.encoder.encode(message, self._out)
        raw: Any = link.raw  # aiormq.Channel: its confirmation table is not in the ABC
        raw.delivery_tag += 1
        tag: int = raw.delivery_tag
        confirmation: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        raw.confirmations[tag] = confirmation
        raw.message_id_delivery_tag[message.message_id] = tag
        confirmation.add_done_callback(partial(self._on_confirmation, link, tag))
        self._in_flight[tag] = (token, message)
        self._outstanding += 1
        self._settled.clear()
        self._flush_needed.set()

    async def _flush_loop(self, link: _Link) -> None:
        queue: asyncio.Queue[ChannelFrame] = link.raw.write_queue  # type: ignore[attr-defined]
        while True:
            await self._flush_needed.wait()
            self._flush_needed.clear()
            if self._out:
                payload = b"".join(self._out)
                self._out.clear()
                await queue.put(ChannelFrame(payload=payload, should_close=False))

    # -- results ---------------------------------------------------------------------

    def _on_confirmation(self, link: _Link, tag: int, future: asyncio.Future[Any]) -> None:
        entry = self._in_flight.pop(tag, None)
        if entry is None:  # already reported as failed when the connection dropped
            if not future.cancelled():
                future.exception()  # retrieved, so asyncio does not log it as lost
            return
        token, message = entry
        ids: dict[str, int] = link.raw.message_id_delivery_tag  # type: ignore[attr-defined]
        if ids.get(message.message_id) == tag:
            del ids[message.message_id]
        outcome, reason, code = self._outcome_of(future)
        self._report(PublishResult(token, outcome, message, reason, code))

    def _outcome_of(self, future: asyncio.Future[Any]) -> tuple[Outcome, str, int]:
        if future.cancelled():
            return Outcome.FAILED, "cancelled", 0
        error = future.exception()
        if error is None:
            result = future.result()
            if isinstance(result, DeliveredMessage):  # what a return resolves to
                return Outcome.RETURNED, *_why(result)
            return Outcome.CONFIRMED, "", 0
        if isinstance(error, aiormq.exceptions.PublishError):
            return Outcome.RETURNED, *_why(error.message)
        if isinstance(error, aiormq.exceptions.DeliveryError):
            return Outcome.NACKED, "nacked by the broker", 0
        return Outcome.FAILED, self._scrub(error), 0

    def _report(self, result: PublishResult[T]) -> None:
        outcome = result.outcome
        if outcome is Outcome.CONFIRMED:
            self.confirmed += 1
            self._nack_streak = 0
            self._proven.set()
        elif outcome is Outcome.NACKED:
            self.nacked += 1
            self._note_nack()
        elif outcome is Outcome.RETURNED:
            self.returned += 1
        else:
            self.failed += 1
        self._ready.append(result)
        self._results_ready.set()
        if not self._in_flight:
            self._settled.set()

    def _note_nack(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._nack_streak == 0:
            self._nack_streak_since = now
        self._nack_streak += 1
        link = self._link
        if (
            link is not None
            and self._nack_streak >= _NACK_STREAK_MIN
            and now - self._nack_streak_since >= _NACK_STREAK_SECONDS
        ):
            self._nack_streak = 0
            reason = f"every publish nacked for {now - self._nack_streak_since:.1f} s"
            log.warning("connection to broker %s dropped: %s", node_name(link.url), reason)
            # Not from inside this confirmation callback: _drop settles every other one.
            asyncio.get_running_loop().call_soon(self._drop_and_close, link, reason)

    def _drop_and_close(self, link: _Link, reason: str) -> None:
        if self._link is link:
            self._drop(link, f"connection dropped: {reason}")
            self._close_later(link)

    def _on_closed(self, link: _Link, _sender: object, error: BaseException | None) -> None:
        if self._link is not link:
            return
        reason = _loss_reason(error, link.url)
        log.warning("connection to broker %s lost: %s", node_name(link.url), reason)
        self._drop(link, f"connection lost: {reason}")
        if not link.connection.is_closed:
            # The broker closed only the channel; the connection is useless without it.
            self._close_later(link)

    def _close_later(self, link: _Link) -> None:
        closer = asyncio.create_task(_close_quietly(link.connection))
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    def _drop(self, link: _Link, reason: str) -> None:
        """Forget ``link``: every message still in flight is reported as FAILED."""
        if self._link is not link:
            return
        self._link = None
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._clear_alarm(cleared=False)  # an alarm belongs to its connection
        self._out.clear()
        in_flight, self._in_flight = self._in_flight, {}
        for token, message in in_flight.values():
            self._report(PublishResult(token, Outcome.FAILED, message, reason))
        self._settled.set()
        self._room.set()
        self._lost.set()

    def take_results(self) -> list[PublishResult[T]]:
        """Every result not handed out yet (possibly none), without waiting."""
        batch, self._ready = self._ready, []
        self._results_ready.clear()
        if batch:
            self._outstanding -= len(batch)
            self._room.set()
        return batch

    async def results(self) -> AsyncGenerator[list[PublishResult[T]], None]:
        """Batches of results as they come; ends after :meth:`close` once all are out."""
        while True:
            batch = self.take_results()
            if batch:
                yield batch
            elif self._closed and self._link is None:
                return
            else:
                await self._results_ready.wait()

    async def wait_settled(self) -> None:
        """Return once no message is in flight (every result is known, maybe not taken)."""
        if self._in_flight:
            await self._settled.wait()

    def _scrub(self, error: BaseException) -> str:
        """``error`` in one line, without the password, in case a library echoed the URL."""
        return describe_failure(error, self._url)


#: What a broker failure raises (aiormq lets StopAsyncIteration out of a broken handshake).
_BROKER_FAILURES = (aiormq.exceptions.AMQPError, OSError, TimeoutError, StopAsyncIteration)


def _why(returned: DeliveredMessage | None) -> tuple[str, int]:
    frame = returned.delivery if returned else None
    if isinstance(frame, spec.Basic.Return):
        code = frame.reply_code or 0
        return f"returned by the broker: {code} {frame.reply_text}", code
    return "returned by the broker", 0


def _loss_reason(error: BaseException | None, url: str) -> str:
    if error is None:
        return "closed by the broker"
    if isinstance(error, asyncio.CancelledError):
        # aiormq cancels its reader when the heartbeat finds the broker silent.
        return "the broker stopped answering (heartbeat missed)"
    return describe_failure(error, url)


async def _close_quietly(connection: AbstractConnection) -> None:
    """Close ``connection``, giving a hung broker ``_CLOSE_GRACE`` seconds; never raises."""
    try:
        async with asyncio.timeout(_CLOSE_GRACE):
            await connection.close()
    except (TimeoutError, *_BROKER_FAILURES, RuntimeError):
        pass
