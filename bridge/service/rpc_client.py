"""A client for AMI actions over the bus: publish a request, wait for its reply.

Approach
--------
One connection and one channel with publisher confirms, and an exclusive, auto-delete,
server-named reply queue consumed without acks.  :meth:`ActionClient.call` validates
the request with the contract's own model, publishes it ``mandatory`` to
``{server}.{action}`` with a fresh ``correlation_id`` and an ``expiration`` equal to the
caller's timeout (a request its client gave up on must not run later), and waits for the
reply with that correlation id.  Calls may overlap: replies are matched by id.

A request the broker hands back (``basic.return``) matched no queue at all: no bridge
takes requests on that exchange.  A missing exchange means the same.  Both raise
:class:`NotDelivered`; no reply in time raises :class:`NoReply`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType

import aio_pika
import aiormq
import yarl
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
)
from aiormq.abc import DeliveredMessage
from pydantic import ValidationError

from bridge.events.rpc import ActionReply, ActionRequest, describe_validation_error
from bridge.publish.amqp_frames import APP_ID, CONTENT_TYPE
from bridge.publish.broker import (
    BrokerAuthError,
    BrokerUnavailable,
    TlsOptions,
    describe_failure,
    mask_url,
)
from bridge.publish.routing import escape_segment, validate_server_id
from bridge.service.rpc_broker import BROKER_ERRORS, DEFAULT_RPC_EXCHANGE

__all__ = ["ActionClient", "NoReply", "NotDelivered", "RpcClientError", "prepare_request"]


class RpcClientError(Exception):
    """A request got no usable reply."""


class NotDelivered(RpcClientError):
    """No bridge takes requests on the exchange (or the exchange does not exist)."""


class NoReply(RpcClientError):
    """No reply arrived in time."""


def prepare_request(
    server: str,
    action: str,
    headers: Mapping[str, str | Sequence[str]] | None = None,
    correlation: str | None = None,
) -> tuple[str, ActionRequest]:
    """The routing key (``{server}.{action}``, lower case) and the validated request.

    ``correlation`` is the client's own value for the ActionID (see
    :class:`~bridge.events.rpc.ActionRequest`).

    Raises:
        ValueError: ``server`` is not a valid server id, or the request breaks the
            contract (the message names the key at fault, never a value).
    """
    routing_key = f"{escape_segment(validate_server_id(server))}.{action.lower()}"
    values = {k: v if isinstance(v, str) else list(v) for k, v in (headers or {}).items()}
    try:
        request = ActionRequest(action=action, headers=values, correlation=correlation)
        return routing_key, request
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc)) from None


class ActionClient:
    """Runs AMI actions through the bridge: ``async with ActionClient(url) as client``.

    Args:
        url: the broker (the password is never shown).
        exchange: the bridge's request exchange (its ``rpc_exchange`` setting).
        tls: TLS settings for an ``amqps://`` URL.
        connect_timeout: seconds to wait for the connection.
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = DEFAULT_RPC_EXCHANGE,
        tls: TlsOptions | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self._url = url
        self.exchange = exchange
        self._tls = tls
        self._connect_timeout = connect_timeout
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._reply_queue = ""
        self._waiting: dict[str, asyncio.Future[ActionReply]] = {}

    def __repr__(self) -> str:
        return f"ActionClient({mask_url(self._url)!r}, exchange={self.exchange!r})"

    async def connect(self) -> None:
        """Connect and start consuming the reply queue.

        Raises:
            NotDelivered: the exchange does not exist (no bridge ever declared it).
            BrokerAuthError: the broker refused the user.
            BrokerUnavailable: the broker cannot be reached.
            OSError: a TLS file cannot be read.
        """
        url = yarl.URL(self._url)
        ssl_context = self._tls.context() if self._tls else None
        try:
            self._connection = await aio_pika.connect(
                self._url,
                ssl_context=ssl_context,
                timeout=self._connect_timeout,
                client_properties={"connection_name": f"{APP_ID} action client"},
            )
        except aiormq.exceptions.ProbableAuthenticationError as exc:
            host = f"{url.host}:{url.port or (5671 if url.scheme == 'amqps' else 5672)}"
            raise BrokerAuthError(host, url.user or "", describe_failure(exc, self._url)) from None
        except BROKER_ERRORS as exc:
            where = mask_url(self._url)
            raise BrokerUnavailable(
                f"broker {where} unavailable: {describe_failure(exc, self._url)}"
            ) from None
        try:
            self._channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await self._channel.get_exchange(self.exchange, ensure=True)
            queue = await self._channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.consume(self._on_reply, no_ack=True)
            self._reply_queue = queue.name
        except aiormq.exceptions.ChannelNotFoundEntity:
            await self.close()
            raise NotDelivered(
                f"exchange {self.exchange!r} does not exist: no bridge takes requests there"
            ) from None
        except BROKER_ERRORS as exc:
            await self.close()
            raise BrokerUnavailable(
                f"broker {mask_url(self._url)}: {describe_failure(exc, self._url)}"
            ) from None
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection; calls still waiting raise :class:`NoReply`."""
        connection, self._connection, self._channel = self._connection, None, None
        self._exchange = None
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(NoReply("the client closed before the reply came"))
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(*BROKER_ERRORS):
                await connection.close()

    async def __aenter__(self) -> ActionClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def call(
        self,
        server: str,
        action: str,
        headers: Mapping[str, str | Sequence[str]] | None = None,
        *,
        timeout: float = 15.0,  # noqa: ASYNC109 - also the request's expiration
        correlation: str | None = None,
    ) -> ActionReply:
        """Run ``action`` with ``headers`` on ``server`` through the bridge; its reply.

        A reply with ``ok: false`` is returned, not raised.  ``correlation`` goes into
        the ActionID the bridge sends (the reply's ``action_id``).

        Raises:
            ValueError: the server id or the request is invalid (nothing was sent).
            NotDelivered: no bridge takes requests on the exchange.
            NoReply: no reply within ``timeout`` seconds.
            BrokerUnavailable: the connection failed.
            RuntimeError: the client is not connected.
        """
        routing_key, request = prepare_request(server, action, headers, correlation)
        exchange = self._exchange
        if exchange is None:
            raise RuntimeError("the client is not connected: use 'async with ActionClient(...)'")
        correlation = uuid.uuid4().hex
        answer: asyncio.Future[ActionReply] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = answer
        try:
            async with asyncio.timeout(timeout):
                await self._publish(exchange, routing_key, request, correlation, timeout)
                return await answer
        except TimeoutError:
            raise NoReply(
                f"no reply from the bridge within {timeout:g} s ({action} on {server})"
            ) from None
        finally:
            del self._waiting[correlation]

    async def _publish(
        self,
        exchange: AbstractExchange,
        routing_key: str,
        request: ActionRequest,
        correlation: str,
        timeout: float,  # noqa: ASYNC109 - the request's expiration
    ) -> None:
        message = aio_pika.Message(
            request.model_dump_json(exclude_none=True).encode(),
            content_type=CONTENT_TYPE,
            correlation_id=correlation,
            reply_to=self._reply_queue,
            expiration=timeout,
            app_id=APP_ID,
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
        )
        try:
            confirmation = await exchange.publish(message, routing_key, mandatory=True)
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(
                f"publishing the request failed: {describe_failure(exc, self._url)}"
            ) from None
        if isinstance(confirmation, DeliveredMessage):  # basic.return: no queue matched
            raise NotDelivered(f"no bridge takes requests on exchange {self.exchange!r}")

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._waiting.get(message.correlation_id or "")
        if future is None or future.done():
            return  # a late reply to a call that gave up
        try:
            future.set_result(ActionReply.model_validate_json(message.body))
        except ValidationError as exc:
            future.set_exception(
                RpcClientError(f"unreadable reply: {describe_validation_error(exc)}")
            )
