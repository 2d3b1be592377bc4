"""AMI actions over the bus: take requests from RabbitMQ, run them, reply to each.

Approach
--------
:class:`RpcServer` owns one aio-pika connection of its own (the event publisher's hot
path stays untouched).  It moves between the broker nodes with the same policy as the
publisher (:mod:`bridge.publish.failover`): when the connection is lost it declares its
queues again on the next node and consumes anew (see :mod:`bridge.service.rpc_broker`
for the entities).  Each delivery
becomes a task of its own (the server keeps them and lets them finish, within a grace
period, when it stops), so a slow list action never holds up a Ping; the channel's
prefetch bounds how many run at once.

One request, start to finish (:meth:`RpcServer.answer` is the part without AMQP):

1. :func:`~bridge.service.rpc_requests.admit` checks the routing key, the body and the
   allow-list, or produces the error reply;
2. the action runs on that server's AMI session with ``rpc_timeout``; every failure
   (not connected, timeout, ``Response: Error``, a fault in the bridge) becomes an
   error reply, never an exception that could stop the consumer;
3. the reply goes to the default exchange with ``reply_to`` as its routing key and the
   request's ``correlation_id``, then the request is acked.

A request without ``reply_to`` has nowhere to go: it is logged and dropped without
running.  Each request is logged at INFO with its server, action, correlation id,
outcome and duration, never its header values (they may hold secrets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from collections.abc import Mapping
from typing import Protocol

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from bridge.ami.actions import ActionResult
from bridge.ami.errors import ActionTimeout, AmiConnectionError, LocalProtocolError
from bridge.ami.protocol import HeaderInput
from bridge.events.rpc import ActionReply, ErrorCode
from bridge.publish.amqp_frames import APP_ID, CONTENT_TYPE
from bridge.publish.broker import (
    BrokerError,
    BrokerRefused,
    TlsOptions,
    describe_failure,
    mask_url,
)
from bridge.publish.connection import broker_failure, node_name, open_connection
from bridge.publish.failover import BrokerEndpoints, FailoverPolicy, reconnect
from bridge.publish.topology import TopologyConflict
from bridge.service.rpc_broker import BROKER_ERRORS, declare_rpc_topology
from bridge.service.rpc_requests import ActionPolicy, Admitted, admit, server_keys

__all__ = ["REPLY_TYPE", "ActionRunner", "RpcServer", "run_admitted"]

log = logging.getLogger(__name__)

#: AMQP ``type`` of every reply.
REPLY_TYPE = "ActionReply"
#: Requests running at once (the channel's prefetch).
DEFAULT_CONCURRENCY = 16


class ActionRunner(Protocol):
    """What runs an action on one PBX: :class:`~bridge.ami.session.AmiSession` does."""

    async def send_action(
        self,
        action: str,
        headers: HeaderInput = (),
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the deadline is part of the result
        action_tag: str | None = None,
    ) -> ActionResult: ...


async def run_admitted(request: Admitted, runner: ActionRunner, deadline: float) -> ActionReply:
    """Run an admitted request, allowing it ``deadline`` seconds; whatever happens is a reply.

    Never raises (but cancellation): a failure is an error reply.
    """
    server, action = request.server, request.action
    try:
        result = await runner.send_action(
            action, request.headers, timeout=deadline, action_tag=request.correlation
        )
    except ActionTimeout:
        message = f"no answer from the AMI of {server!r} within {deadline:g} s"
        return ActionReply.failure(ErrorCode.TIMEOUT, message, server=server, action=action)
    except AmiConnectionError as exc:
        message = f"the AMI of {server!r} is not connected: {exc}"
        return ActionReply.failure(ErrorCode.NOT_CONNECTED, message, server=server, action=action)
    except LocalProtocolError as exc:
        return ActionReply.failure(
            ErrorCode.MALFORMED_REQUEST, str(exc), server=server, action=action
        )
    except Exception:
        log.exception("action %s on %s failed inside the bridge", action, server)
        return ActionReply.failure(
            ErrorCode.INTERNAL_ERROR,
            "the bridge failed to run the action; see its log",
            server=server,
            action=action,
        )
    return ActionReply.from_result(server, action, result)


class RpcServer:
    """Takes AMI action requests from the bus and replies to each.

    Args:
        endpoints: the broker nodes and the reconnect policy, or one URL (``amqp://`` or
            ``amqps://``; the password is never logged).
        exchange: the request exchange.
        sessions: server id -> what runs actions on that server.
        policy: which actions may run.
        timeout: seconds an action may take; also the request queue's message TTL.
        tls: TLS settings for an ``amqps://`` URL.
        concurrency: requests running at once.
        heartbeat: the AMQP heartbeat in seconds (a silent broker is dropped after about
            three of them).
        quiet_outages: log a lost or unreachable broker at DEBUG only, for a process whose
            event publisher reports the same outage (refusals are WARNINGs still).

    ``await run()`` until ``await stop()``.
    """

    def __init__(
        self,
        endpoints: BrokerEndpoints | str,
        *,
        exchange: str,
        sessions: Mapping[str, ActionRunner],
        policy: ActionPolicy,
        timeout: float,
        tls: TlsOptions | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        heartbeat: int = 60,
        quiet_outages: bool = False,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = BrokerEndpoints((endpoints,))
        self._failover: FailoverPolicy = endpoints.policy()
        self._url = self._failover.current
        self.exchange = exchange
        self._sessions = dict(sessions)
        self._servers = server_keys(self._sessions)
        self.policy = policy
        self.timeout = timeout
        self._tls = tls
        self._concurrency = concurrency
        self._heartbeat = heartbeat
        self._quiet = quiet_outages
        self.queue_name = f"{exchange}.bridge-{uuid.uuid4().hex[:12]}"
        self._channel: AbstractChannel | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._grace = 5.0
        self._running = False
        self._stop = asyncio.Event()
        self._finished = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost_reason = ""
        #: Set once the queues are declared and consumed.
        self.ready = asyncio.Event()
        #: Why :meth:`run` gave up taking requests (None while it has not).
        self.off_reason: str | None = None

    def __repr__(self) -> str:
        return f"RpcServer({mask_url(self._url)!r}, exchange={self.exchange!r})"

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while :meth:`run` runs: it has not stopped nor given up."""
        return self._running

    async def run(self) -> None:
        """Consume requests until :meth:`stop`; reconnects on its own, node after node.

        Gives up (logging why) only when the exchange or a queue exists with other
        settings, or a TLS file is unusable: the bridge keeps publishing events without
        taking requests.
        """
        self._running = True
        self._finished.clear()
        try:
            while not self._stop.is_set():
                connection = await reconnect(
                    self._failover,
                    self._open,
                    what="action requests",
                    stop=self._stop,
                    quiet=self._quiet,
                )
                if connection is None:
                    return
                why, refused = "", False
                try:
                    await self._serve(connection)
                except BrokerError as exc:  # refused or failed while declaring or consuming
                    why, refused = str(exc), isinstance(exc, BrokerRefused)
                finally:
                    self._channel = None
                    with contextlib.suppress(*BROKER_ERRORS, RuntimeError):
                        async with asyncio.timeout(2.0):
                            await connection.close()
                if self._lost.is_set() and not why:
                    why = f"connection to broker {node_name(self._url)} lost: {self._lost_reason}"
                if why and not self._stop.is_set():
                    self._failover.lost()
                    level = logging.DEBUG if self._quiet and not refused else logging.WARNING
                    log.log(level, "action requests: %s; reconnecting", why)
        except (TopologyConflict, OSError, ssl.SSLError) as exc:
            self.off_reason = str(exc)
            log.error("action requests are off: %s", exc)
        finally:
            self.ready.clear()
            self._running = False
            self._finished.set()

    async def stop(self, grace: float = 5.0) -> None:
        """Take no more requests, let running ones finish for ``grace`` seconds, close.

        Returns once :meth:`run` has returned, or after ``grace`` plus a second.
        """
        self._grace = grace
        self._stop.set()
        if not self._running:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace + 1.0):
                await self._finished.wait()

    async def _open(self, url: str) -> AbstractConnection:
        self._url = url
        connection = await open_connection(
            url,
            name=f"{APP_ID} actions",
            tls=self._tls,
            heartbeat=self._heartbeat,
        )
        self._lost.clear()
        connection.close_callbacks.add(self._on_closed)
        return connection

    def _on_closed(self, _sender: object, error: BaseException | None) -> None:
        self._lost_reason = describe_failure(error, self._url) if error else "closed"
        if isinstance(error, asyncio.CancelledError):
            self._lost_reason = "the broker stopped answering (heartbeat missed)"
        self._lost.set()

    async def _serve(self, connection: AbstractConnection) -> None:
        """Declare, consume until :meth:`stop` or the connection is lost, then let running
        requests finish.

        Raises:
            TopologyConflict: an entity exists with other settings.
            BrokerError: the broker refused or failed before the consumers were in place.
        """
        try:
            channel = self._channel = await connection.channel()
            channel.close_callbacks.add(self._on_closed)
            await channel.set_qos(prefetch_count=self._concurrency)
            queues = await declare_rpc_topology(
                channel, self.exchange, self.queue_name, self._servers, ttl=self.timeout
            )
            consumers = [
                (queue, await queue.consume(self._on_message))
                for queue in (queues.own, queues.unrouted)
            ]
        except TopologyConflict:
            raise
        except BROKER_ERRORS as exc:
            raise broker_failure(exc, self._url, f"declaring exchange {self.exchange!r}") from None
        self.ready.set()
        self._failover.healthy()
        log.info(
            "taking action requests for %s on exchange %r (broker %s)",
            ", ".join(self._sessions) or "no server",
            self.exchange,
            node_name(self._url),
        )
        stop = asyncio.create_task(self._stop.wait())
        lost = asyncio.create_task(self._lost.wait())
        await asyncio.wait((stop, lost), return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        lost.cancel()
        self.ready.clear()
        for queue, tag in consumers:
            with contextlib.suppress(*BROKER_ERRORS, RuntimeError):
                await queue.cancel(tag)
        running = set(self._handlers)
        if running:
            await asyncio.wait(running, timeout=self._grace)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    # -- one request --------------------------------------------------------------------

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._stop.is_set():
            with contextlib.suppress(*BROKER_ERRORS, RuntimeError):
                await message.reject(requeue=True)
            return
        # Handled on a task of its own, so this consumer callback returns at once.
        task = asyncio.create_task(self._handle(message), name="rpc-request")
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def answer(self, routing_key: str, body: bytes) -> ActionReply:
        """The reply to one request: admit it, run it, and map every failure to a reply."""
        admitted = admit(routing_key, body, servers=self._servers, policy=self.policy)
        if isinstance(admitted, ActionReply):
            return admitted
        return await run_admitted(admitted, self._sessions[admitted.server], self.timeout)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        started = time.monotonic()
        correlation = message.correlation_id
        key = message.routing_key or ""
        if not message.reply_to:
            log.warning(
                "action request %r (correlation %r) has no reply_to; dropped without running",
                key,
                correlation,
            )
            await self._settle(message)
            return
        try:
            reply = await self.answer(key, message.body)
        except Exception:
            # Nothing a request holds may stop the consumer; its client still gets a reply.
            log.exception("action request %r could not be handled", key)
            reply = ActionReply.failure(
                ErrorCode.INTERNAL_ERROR, "the bridge failed to handle the request; see its log"
            )
        try:
            await self._reply(message.reply_to, correlation, reply)
        except Exception as exc:  # a broken connection, or a reply_to the broker refuses
            log.warning(
                "could not reply to action request %r: %s", key, describe_failure(exc, self._url)
            )
        await self._settle(message)
        outcome = "ok" if reply.ok else (reply.error.code if reply.error else "error")
        log.info(
            "action %s on %s (correlation %r): %s in %.1f ms",
            reply.action or "?",
            reply.server or repr(key),
            correlation,
            outcome,
            (time.monotonic() - started) * 1000,
        )

    async def _reply(self, reply_to: str, correlation: str | None, reply: ActionReply) -> None:
        channel = self._channel
        if channel is None:
            raise aiormq.exceptions.ChannelInvalidStateError("the request channel is closed")
        await channel.default_exchange.publish(
            aio_pika.Message(
                reply.to_json(),
                content_type=CONTENT_TYPE,
                correlation_id=correlation,
                app_id=APP_ID,
                type=REPLY_TYPE,
                delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            ),
            routing_key=reply_to,
        )

    async def _settle(self, message: AbstractIncomingMessage) -> None:
        with contextlib.suppress(*BROKER_ERRORS, RuntimeError):
            await message.ack()
