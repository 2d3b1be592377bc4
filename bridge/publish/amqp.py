"""The confirming AMQP publisher: many publishes in flight, every outcome reported.

Approach
--------
aio-pika opens the connection and the channel (publisher confirms on) and declares the
topology; the hot path then skips its per-message machinery.  ``Exchange.publish`` and
aiormq's ``basic_publish`` cost a task, a lock, a timeout context and a generic
property encoder per message, which held a plain loop near 5,000 msgs/s.  Here:

* the frames of a publish are encoded directly (:class:`PublishEncoder`): the
  ``Basic.Publish`` method frame is cached per routing key, and the content header is
  packed with ``struct`` around the per-message fields, the constant properties
  (persistent, ``application/json``, ``app_id``) encoded once;
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
import ssl
import struct
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any, Generic, TypeVar

import aio_pika
import aiormq
import pamqp.frame
import yarl
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import ChannelFrame, DeliveredMessage
from pamqp import commands as spec
from pamqp.encode import field_table, table_integer

from bridge.publish.message import HeaderValue, OutgoingMessage
from bridge.publish.topology import DEFAULT_EXCHANGE, declare_topology

__all__ = [
    "APP_ID",
    "CONTENT_TYPE",
    "DEFAULT_WINDOW",
    "AmqpPublisher",
    "BrokerAuthError",
    "BrokerError",
    "BrokerUnavailable",
    "Outcome",
    "PublishEncoder",
    "PublishResult",
    "TlsOptions",
    "mask_url",
]

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 1000
APP_ID = "ami-bridge"
CONTENT_TYPE = "application/json"

T = TypeVar("T")


class BrokerError(Exception):
    """The broker could not be used."""


class BrokerAuthError(BrokerError):
    """The broker refused the user name and password at connect."""

    def __init__(self, host: str, user: str, reason: str) -> None:
        super().__init__(f"broker {host} refused the login of user {user!r}: {reason}")
        self.host = host
        self.user = user


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached, or the connection to it is gone."""


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for logs and errors."""
    parsed = yarl.URL(url)
    return str(parsed.with_password("***")) if parsed.password else str(parsed)


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """TLS settings for ``amqps://`` URLs.  Verification is on unless ``verify`` is False."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True

    def context(self) -> ssl.SSLContext:
        """Build the client context.

        Raises:
            OSError: a CA, certificate or key file cannot be read.
            ssl.SSLError: a file is not a valid certificate or key.
        """
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


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


# -- frame encoding ----------------------------------------------------------------------

_FRAME_END = b"\xce"
_U32 = struct.Struct(">I")
_FRAME_HEAD = struct.Struct(">BHI")  # frame type, channel, payload size
# frame head + content header: class id, weight, body size, property flags
_CONTENT_HEAD = struct.Struct(">BHIHHQH")
_CONTENT_HEAD_SIZE = 14  # class id + weight + body size + flags
# content_type, headers, delivery_mode, message_id, timestamp, type, app_id
_PROPERTY_FLAGS = 0x8000 | 0x2000 | 0x1000 | 0x0080 | 0x0040 | 0x0020 | 0x0008
_EMPTY_TABLE = b"\x00\x00\x00\x00"
_MAX_METHOD_CACHE = 4096


def _short_string(value: str, what: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError(f"{what} is {len(raw)} bytes; AMQP allows 255: {value[:40]!r}...")
    return bytes((len(raw),)) + raw


_CONTENT_TYPE_FIELD = _short_string(CONTENT_TYPE, "content type")
_APP_ID_FIELD = _short_string(APP_ID, "app id")
# content type + delivery mode + timestamp + app id
_FIXED_PROPS_SIZE = len(_CONTENT_TYPE_FIELD) + 1 + 8 + len(_APP_ID_FIELD)


def _long_string(value: str) -> bytes:
    raw = value.encode()
    return b"S" + _U32.pack(len(raw)) + raw


# Most header values repeat from message to message (event name, server, schema), so their
# encoded (name, value) pairs are kept; a cleared cache costs only re-encoding.
_pairs: dict[tuple[str, str], bytes] = {}
_names: dict[str, bytes] = {}
_MAX_CACHED = 4096


def _name(key: str) -> bytes | None:
    name = _names.get(key)
    if name is None:
        raw = key.encode()
        if len(raw) > 128:  # pamqp truncates such names (and warns); keep its behaviour
            return None
        if len(_names) >= _MAX_CACHED:
            _names.clear()
        name = _names[key] = bytes((len(raw),)) + raw
    return name


def _field_table(headers: dict[str, HeaderValue]) -> bytes:
    """Encode ``headers`` as an AMQP field table, byte for byte as pamqp's ``field_table``.

    pamqp dispatches on every type for every value; str, int and list-of-str values take
    a direct (and, for repeated strings, cached) path here, anything else goes to pamqp.
    """
    parts: list[bytes] = []
    for key in sorted(headers):
        value = headers[key]
        if isinstance(value, str):
            pair = _pairs.get((key, value))
            if pair is None:
                name = _name(key)
                if name is None:
                    break
                if len(_pairs) >= _MAX_CACHED:
                    _pairs.clear()
                pair = _pairs[key, value] = name + _long_string(value)
            parts.append(pair)
            continue
        name = _name(key)
        if name is None or isinstance(value, bool):  # bool is an int, but has its own type
            break
        if isinstance(value, int):
            parts += (name, table_integer(value))
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            array = b"".join(map(_long_string, value))
            parts += (name, b"A", _U32.pack(len(array)), array)
        else:
            break
    else:
        payload = b"".join(parts)
        return _U32.pack(len(payload)) + payload
    loose: Any = headers  # dict is invariant; the values are a subset of pamqp's
    return field_table(loose)


class PublishEncoder:
    """Encodes an :class:`OutgoingMessage` as the frames of one persistent, mandatory publish.

    The output equals what pamqp marshals for ``Basic.Publish`` + ``ContentHeader`` +
    ``ContentBody`` with the same properties.
    """

    __slots__ = ("_channel", "_exchange", "_max_body_frame", "_methods")

    def __init__(self, channel_number: int, exchange: str, max_body_frame: int) -> None:
        self._channel = channel_number
        self._exchange = exchange
        self._max_body_frame = max_body_frame
        self._methods: dict[str, bytes] = {}

    def _method_frame(self, routing_key: str) -> bytes:
        frame = self._methods.get(routing_key)
        if frame is None:
            _short_string(routing_key, "routing key")
            frame = pamqp.frame.marshal(
                spec.Basic.Publish(
                    exchange=self._exchange, routing_key=routing_key, mandatory=True
                ),
                self._channel,
            )
            if len(self._methods) >= _MAX_METHOD_CACHE:
                self._methods.clear()
            self._methods[routing_key] = frame
        return frame

    def encode(self, message: OutgoingMessage, out: list[bytes]) -> None:
        """Append the frames for ``message`` to ``out`` (nothing when it raises).

        Raises:
            ValueError: the routing key, message id or event name is over 255 bytes,
                the message id is empty or the timestamp is negative.
            TypeError: a header value cannot be encoded.
        """
        method = self._method_frame(message.routing_key)
        if not message.message_id:  # returns are matched to publishes by message id
            raise ValueError("message id is empty")
        message_id = _short_string(message.message_id, "message id")
        event = _short_string(message.event, "event name")
        if not 0 <= message.timestamp < 2**64:
            raise ValueError(f"timestamp {message.timestamp} is not a 64-bit unix time")
        table = _field_table(message.headers) if message.headers else _EMPTY_TABLE
        body = message.body
        props_size = _FIXED_PROPS_SIZE + len(table) + len(message_id) + len(event)
        out += (
            method,
            _CONTENT_HEAD.pack(
                2,
                self._channel,
                _CONTENT_HEAD_SIZE + props_size,
                60,
                0,
                len(body),
                _PROPERTY_FLAGS,
            ),
            _CONTENT_TYPE_FIELD,
            table,
            b"\x02",  # delivery_mode: persistent
            message_id,
            message.timestamp.to_bytes(8, "big"),
            event,
            _APP_ID_FIELD,
            _FRAME_END,
        )
        step = self._max_body_frame
        for start in range(0, len(body), step):
            chunk = body[start : start + step]
            out += (_FRAME_HEAD.pack(3, self._channel, len(chunk)), chunk, _FRAME_END)


# -- the publisher -----------------------------------------------------------------------


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
    ) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._url = url
        self._tls = tls
        self._connect_timeout = connect_timeout
        self.exchange = exchange
        self.window = window
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
            TopologyConflict: the exchange or queue exists with other settings.
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
        except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as e:
            raise BrokerUnavailable(f"broker {where} unavailable: {self._scrub(e)}") from None
        try:
            channel = await connection.channel(publisher_confirms=True)
            await declare_topology(channel, self.exchange)
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
        """``str(error)`` with the password removed, in case a library echoed the URL."""
        text = str(error) or type(error).__name__
        password = yarl.URL(self._url).password
        return text.replace(password, "***") if password else text


def _why(returned: DeliveredMessage | None) -> str:
    frame = returned.delivery if returned else None
    if isinstance(frame, spec.Basic.Return):
        return f"returned by the broker: {frame.reply_code} {frame.reply_text}"
    return "returned by the broker"
