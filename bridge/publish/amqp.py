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
call :meth:`AmqpPublisher.connect` again once :meth:`wait_connection_lost` returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any, Generic, TypeVar

import aio_pika
import aiormq
import yarl
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import ChannelFrame, DeliveredMessage
from pamqp import commands as spec

from bridge.publish.amqp_frames import APP_ID, PublishEncoder
from bridge.publish.broker import (
    BrokerAuthError,
    BrokerUnavailable,
    TlsOptions,
    describe_failure,
    mask_url,
)
from bridge.publish.message import OutgoingMessage
from bridge.publish.topology import (
    DEFAULT_EXCHANGE,
    StreamRetention,
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


@dataclass(slots=True)
class _Link:
    """One live connection and everything tied to it."""

    connection: AbstractConnection
    channel: AbstractChannel
    raw: aiormq.abc.AbstractChannel
    encoder: PublishEncoder
    flusher: asyncio.Task[None] | None = None


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
        stream: StreamRetention | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._url = url
        self._tls = tls
        self._connect_timeout = connect_timeout
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

    async def connect(self) -> None:
        """Connect, open a confirming channel and declare the topology.

        Raises:
            BrokerAuthError: the broker refused the user or virtual host.
            BrokerUnavailable: the broker cannot be reached or the handshake failed
                (including a refused virtual host or an untrusted certificate).
            TopologyConflict: the exchange, a queue or the stream exists with other
                settings.
            OSError: a TLS file cannot be read or is not a certificate or key.
        """
        if self._link is not None:
            return
        url = yarl.URL(self._url)
        where = mask_url(self._url)
        ssl_context = self._tls.context() if self._tls else None  # config errors raise here
        try:
            connection = await aio_pika.connect(
                self._url,
                ssl_context=ssl_context,
                timeout=self._connect_timeout,
                client_properties={"connection_name": APP_ID},
            )
        except aiormq.exceptions.ProbableAuthenticationError as e:
            port = url.port or (5671 if url.scheme == "amqps" else 5672)
            raise BrokerAuthError(f"{url.host}:{port}", url.user or "", self._scrub(e)) from None
        except (aiormq.exceptions.AMQPError, OSError, TimeoutError, StopAsyncIteration) as e:
            # aiormq lets StopAsyncIteration out when the peer closes during the handshake.
            why = describe_failure(e, self._url)
            raise BrokerUnavailable(f"broker {where} unavailable: {why}") from None
        try:
            channel = await connection.channel(publisher_confirms=True)
            await declare_topology(channel, self.exchange)
            if self.stream is not None:
                await declare_stream(channel, self.exchange, self.stream)
            raw = await channel.get_underlay_channel()
        except BaseException:
            await connection.close()
            raise
        encoder = PublishEncoder(raw.number, self.exchange, raw.max_content_size)  # type: ignore[attr-defined]
        link = _Link(connection, channel, raw, encoder)
        link.flusher = asyncio.create_task(self._flush_loop(link), name="amqp-flush")
        connection.close_callbacks.add(partial(self._on_closed, link))
        channel.close_callbacks.add(partial(self._on_closed, link))
        self._link = link
        self._closed = False
        self._lost.clear()
        log.info("connected to %s, exchange %r", where, self.exchange)

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
            await link.connection.close()
        await asyncio.gather(*self._closers, return_exceptions=True)
        self._results_ready.set()
        self._room.set()

    # -- publishing ------------------------------------------------------------------

    async def publish(self, message: OutgoingMessage, token: T) -> None:
        """Send ``message``; its result, carrying ``token``, comes later from :meth:`results`.

        Waits while ``window`` results are outstanding.

        Raises:
            BrokerUnavailable: not connected, or the connection dropped while waiting.
            ValueError: the message cannot be encoded (see :meth:`PublishEncoder.encode`).
            TypeError: a header value cannot be encoded.
        """
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
            return
        token, message = entry
        ids: dict[str, int] = link.raw.message_id_delivery_tag  # type: ignore[attr-defined]
        if ids.get(message.message_id) == tag:
            del ids[message.message_id]
        outcome, reason = self._outcome_of(future)
        self._report(PublishResult(token, outcome, message, reason))

    def _outcome_of(self, future: asyncio.Future[Any]) -> tuple[Outcome, str]:
        if future.cancelled():
            return Outcome.FAILED, "cancelled"
        error = future.exception()
        if error is None:
            result = future.result()
            if isinstance(result, DeliveredMessage):  # what a return resolves to
                return Outcome.RETURNED, _why(result)
            return Outcome.CONFIRMED, ""
        if isinstance(error, aiormq.exceptions.PublishError):
            return Outcome.RETURNED, _why(error.message)
        if isinstance(error, aiormq.exceptions.DeliveryError):
            return Outcome.NACKED, "nacked by the broker"
        return Outcome.FAILED, self._scrub(error)

    def _report(self, result: PublishResult[T]) -> None:
        outcome = result.outcome
        if outcome is Outcome.CONFIRMED:
            self.confirmed += 1
        elif outcome is Outcome.NACKED:
            self.nacked += 1
        elif outcome is Outcome.RETURNED:
            self.returned += 1
        else:
            self.failed += 1
        self._ready.append(result)
        self._results_ready.set()
        if not self._in_flight:
            self._settled.set()

    def _on_closed(self, link: _Link, _sender: object, error: BaseException | None) -> None:
        if self._link is not link:
            return
        reason = self._scrub(error) if error else "closed by the broker"
        log.warning("connection to %s lost: %s", mask_url(self._url), reason)
        self._drop(link, f"connection lost: {reason}")
        if not link.connection.is_closed:
            # The broker closed only the channel; the connection is useless without it.
            closer = asyncio.create_task(link.connection.close())
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)

    def _drop(self, link: _Link, reason: str) -> None:
        """Forget ``link``: every message still in flight is reported as FAILED."""
        if self._link is not link:
            return
        self._link = None
        if link.flusher is not None:
            link.flusher.cancel()
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


def _why(returned: DeliveredMessage | None) -> str:
    frame = returned.delivery if returned else None
    if isinstance(frame, spec.Basic.Return):
        return f"returned by the broker: {frame.reply_code} {frame.reply_text}"
    return "returned by the broker"
