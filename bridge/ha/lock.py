"""The broker-held lock of one server, and the checkpoints that travel beside it.

Approach
--------
No home-made consensus: RabbitMQ decides.  Each member opens, per server, a connection
of its own with a short heartbeat (``ha_lock_heartbeat``, 5 s) over the bridge's broker
nodes (:mod:`bridge.publish.failover`), and declares the exclusive queue
``ami-bridge.lock.<server>``.  The broker lets one connection own it; every other
declaration fails with ``405 RESOURCE_LOCKED``, and that member stays standby, trying
again every quarter of a second.  The broker deletes the queue when its owner's connection
closes or misses its heartbeats, and the next declaration wins.

On the same connection, every few tenths of a second, the holder proves the lock (a
passive declaration of its queue; see the fencing in :mod:`bridge.ha.member`) and
publishes its checkpoint, ``{"server", "instance", "event_id", "epoch"}`` (``epoch``: the
newest it publishes under), on the bridge-internal
topic exchange ``<exchange>.ha`` with the server id as routing key (never on the events
exchange).  A standby consumes them through an exclusive, server-named queue bound to
that key, and stops consuming once it wins the lock.  Checkpoints are best effort: a
lost one only means the standby would publish a little more again on a takeover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aio_pika
import aiormq
import orjson
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from bridge.ha.member import HaMember
from bridge.publish.broker import BrokerError, BrokerUnavailable, TlsOptions
from bridge.publish.connection import broker_failure, open_connection
from bridge.publish.failover import BrokerEndpoints, reconnect

__all__ = ["LOCK_PREFIX", "LockLink", "checkpoint_exchange", "lock_queue"]

log = logging.getLogger(__name__)

LOCK_PREFIX = "ami-bridge.lock."
#: Seconds between attempts to win a lock someone else holds: a SIGKILLed active's queue
#: is gone at once, so this is most of a takeover's time.  A refused declaration costs
#: the broker one channel open and close.
RETRY_INTERVAL = 0.25
_FAILURES = (aiormq.exceptions.AMQPError, OSError, TimeoutError, StopAsyncIteration, EOFError)


def lock_queue(server_id: str) -> str:
    """The exclusive queue whose owner publishes ``server_id``'s events."""
    return LOCK_PREFIX + server_id


def checkpoint_exchange(exchange: str) -> str:
    """The bridge-internal exchange of the checkpoints beside the events ``exchange``."""
    return f"{exchange}.ha"


class LockLink:
    """Runs one server's lock connection for ``member`` until ``stop`` is set."""

    def __init__(
        self,
        member: HaMember,
        endpoints: BrokerEndpoints,
        *,
        exchange: str,
        heartbeat: int,
        checkpoint_interval: float,
        stop: asyncio.Event,
        tls: TlsOptions | None = None,
    ) -> None:
        self.member = member
        self._endpoints = endpoints
        self._exchange = checkpoint_exchange(exchange)
        self._heartbeat = heartbeat
        self._interval = min(checkpoint_interval, heartbeat / 5)
        self._stop = stop
        self._tls = tls
        self._server = member.server_id
        self.queue = lock_queue(member.server_id)

    async def run(self) -> None:
        policy = self._endpoints.policy()
        what = f"{self._server}: hot-standby lock"

        async def attempt(url: str) -> tuple[str, AbstractConnection]:
            name = f"ami-bridge lock {self._server} {self.member.instance}"
            connection = await open_connection(
                url, name=name, tls=self._tls, heartbeat=self._heartbeat
            )
            return url, connection

        while not self._stop.is_set():
            opened = await reconnect(policy, attempt, what=what, stop=self._stop)
            if opened is None:
                return
            url, connection = opened
            reason = "closed"
            try:
                await self._serve(connection, url, policy.healthy)
            except BrokerError as exc:
                reason = str(exc)
            except _FAILURES as exc:
                reason = str(broker_failure(exc, url, "holding the lock"))
            finally:
                self.member.lost(reason)
                with contextlib.suppress(*_FAILURES, RuntimeError):
                    async with asyncio.timeout(2.0):
                        await connection.close()
            if self._stop.is_set():
                return
            log.info("%s: %s; connecting again", what, reason)
            policy.lost()

    async def _serve(self, connection: AbstractConnection, url: str, healthy: Any) -> None:
        closed = asyncio.Event()
        connection.close_callbacks.add(lambda *_: closed.set())
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            self._exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        follow = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await follow.bind(exchange, routing_key=self._server)
        tag = await follow.consume(self._on_checkpoint, no_ack=True)
        healthy()
        lock_channel = await self._win(connection, closed)
        if lock_channel is None:
            return
        with contextlib.suppress(*_FAILURES):
            await follow.cancel(tag)
            await follow.delete(if_unused=False, if_empty=False)
        self.member.acquired(time.monotonic())
        await self._hold(lock_channel, exchange, closed)

    async def _win(self, connection: AbstractConnection, closed: asyncio.Event) -> Any:
        """Declare the lock queue until it is ours; None once stopping."""
        standby_logged = False
        while not self._stop.is_set():
            channel = await connection.channel()
            try:
                await channel.declare_queue(self.queue, exclusive=True, auto_delete=True)
            except aiormq.exceptions.ChannelLockedResource:
                if not standby_logged:
                    log.info(
                        "%s: another member holds %s; this member (%s) stands by",
                        self._server,
                        self.queue,
                        self.member.instance,
                    )
                    standby_logged = True
            else:
                return channel
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), RETRY_INTERVAL)
            if closed.is_set():
                raise BrokerUnavailable(f"lock connection of {self._server} closed")
        return None

    async def _hold(self, channel: Any, exchange: Any, closed: asyncio.Event) -> None:
        """Prove the lock and publish checkpoints until the connection ends."""
        member = self.member
        while not self._stop.is_set():
            sent = time.monotonic()
            async with asyncio.timeout(self._heartbeat):
                await channel.declare_queue(self.queue, passive=True)
            member.proven(sent)
            event_id = member.checkpoint_due()
            if event_id is not None:
                body = orjson.dumps(
                    {
                        "server": self._server,
                        "instance": member.instance,
                        "event_id": event_id,
                        "epoch": member.numbering.latest,
                    }
                )
                await exchange.publish(
                    aio_pika.Message(body, content_type="application/json"),
                    routing_key=self._server,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), self._interval)
            if closed.is_set():
                raise BrokerUnavailable(f"lock connection of {self._server} closed")

    async def _on_checkpoint(self, message: AbstractIncomingMessage) -> None:
        try:
            data = orjson.loads(message.body)
            event_id, epoch = data["event_id"], data.get("epoch")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.debug("%s: ignoring a malformed checkpoint", self._server)
            return
        if isinstance(event_id, str):
            self.member.checkpoint(event_id, epoch if type(epoch) is int else None)
