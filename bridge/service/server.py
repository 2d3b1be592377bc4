"""One PBX's pipeline: AMI session -> journal -> publisher.

The reader side never waits on the broker.  The session calls :meth:`on_items` once per
socket read; that call stamps each message with the epoch and the next sequence number
and appends the whole read to the journal in one write, then returns.  A separate task,
:meth:`ServerPipeline.feed`, takes records from the journal in order, renders them and
publishes them within the publisher's window; confirms retire them.  While the broker is
down or slower than the PBX, records simply wait in the journal, oldest first.

After each login the pipeline resynchronises state (:mod:`bridge.service.resync`): the
first ``FullyBooted`` of the connection is followed in the journal by a ``resync``
status (``phase: started``), the snapshot items of the configured list actions, and a
second ``resync`` status (``phase: done``) with what each action gave.  The resync runs
as a task of the pipeline, cancelled when the connection ends; ``on_items`` never waits
for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from prometheus_client import Counter

from bridge.ami.client import ConnectionOptions, StreamItem
from bridge.ami.errors import AmiConnectionError
from bridge.ami.listener import Connected, Disconnected
from bridge.ami.protocol import Event, Malformed
from bridge.ami.session import AmiSession
from bridge.ha.event_id import EventIds
from bridge.ha.member import Fenced, HaMember
from bridge.publish.amqp import AmqpPublisher, Outcome, PublishResult
from bridge.publish.broker import BrokerError, BrokerUnavailable
from bridge.publish.journal import Journal
from bridge.publish.message import OutgoingMessage
from bridge.publish.records import decode, encode_event, encode_malformed, encode_status
from bridge.publish.routing import BridgeStatus, Router
from bridge.publish.topology import TopologyConflict
from bridge.service.metrics import Metrics
from bridge.service.refusals import Refusals, Verdict
from bridge.service.render import Rendered, Renderer
from bridge.service.resync import ResyncRunner, is_fully_booted, parse_resync_actions
from bridge.settings import AmiServer, Settings

__all__ = ["ServerPipeline", "Token"]

log = logging.getLogger(__name__)

#: Records rendered and published per turn before yielding to the reader.
_BATCH = 64


def _read_secret(settings: Settings, server: AmiServer) -> str:
    """The AMI secret, read again at each login so a rotated secret file is picked up.

    Raises:
        AmiConnectionError: the secret file cannot be read (retried with backoff, as a
            file being rotated may be missing for a moment).
    """
    try:
        return settings.ami_secret_for(server) or ""
    except ValueError as exc:
        raise AmiConnectionError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Token:
    """What the publisher hands back with each result."""

    pipeline: ServerPipeline
    record_id: int
    received_at: float
    event: str
    klass: str
    event_id: str | None = None


class ServerPipeline:
    """Bridges one PBX.  Create, then run :meth:`session.run`, :meth:`feed` and
    :meth:`housekeeping` as tasks."""

    def __init__(
        self,
        server: AmiServer,
        settings: Settings,
        publisher: AmqpPublisher[Token],
        metrics: Metrics,
    ) -> None:
        self.id = server.id
        self._publisher = publisher
        self._metrics = metrics
        self._renderer = Renderer(
            Router(server.id, settings.routing_key),
            include_raw=settings.include_raw,
            redact=settings.redact_headers,
        )
        self._resync = ResyncRunner(server.id, parse_resync_actions(settings.resync_actions))
        self.journal = Journal.open(
            settings.journal_dir / server.id,
            fsync=settings.journal_fsync,
            max_bytes=settings.journal_max_bytes,
            max_age=settings.journal_max_age,
            overflow=settings.journal_overflow,
        )
        self.session = AmiSession(
            server.target,
            partial(_read_secret, settings, server),
            self,
            auth=server.auth or settings.ami_auth,
            events=settings.ami_events,
            retry_on_login_failure=settings.ami_on_login_failure == "retry",
            backoff_base=settings.ami_reconnect_base,
            backoff_cap=settings.ami_reconnect_cap,
            ca_file=server.ca_file or settings.ami_ca_file,
            connection=ConnectionOptions(
                connect_timeout=settings.ami_connect_timeout,
                ping_interval=settings.ami_ping_interval,
                ping_timeout=settings.ami_ping_timeout,
            ),
        )
        self._epoch = 0
        self._seq = 0
        #: The PBX-wide identity of each event read (the same on both members of a pair).
        self._event_ids = EventIds()
        #: Hot standby (``ha``): set by the app; None publishes unconditionally.
        self.ha: HaMember | None = None
        self._gap_from: Disconnected | None = None
        self._gap_seq = 0
        #: True from a login until the connection's first FullyBooted (resync enabled).
        self._awaiting_boot = False
        self._resync_task: asyncio.Task[None] | None = None
        self._work = asyncio.Event()
        #: Messages the broker refused, each waiting for its own retry.
        self._refusals: Refusals[Token, OutgoingMessage] = Refusals(
            server.id,
            retries=settings.publish_refused_retries,
            backoff=settings.publish_refused_backoff,
        )
        self._first_unread = self.journal.acked_through + 1
        # labels() costs more than the increment: one child per (event, class), kept.
        self._read: dict[tuple[str, str], Counter] = {}
        self._published: dict[tuple[str, str], Counter] = {}
        metrics.ami_connected.labels(self.id).set(0)

    # -- reader side (called by the session, synchronously) ----------------------------

    def on_connected(self, info: Connected) -> None:
        gap = self._gap_from
        self._epoch, self._seq = info.epoch, 0
        self._awaiting_boot = bool(self._resync.plan)
        if gap is not None:
            self._status(
                BridgeStatus.GAP,
                previous_epoch=gap.epoch,
                last_seq=self._gap_seq,
                disconnected_for=round(info.at - gap.at, 6),
                reason=gap.reason,
            )
            self._metrics.ami_reconnects.labels(self.id).inc()
        self._status(BridgeStatus.CONNECTED, target=str(info.target), ami_version=info.ami_version)
        self._metrics.ami_connected.labels(self.id).set(1)

    def on_items(self, epoch: int, items: list[StreamItem]) -> None:
        self._journal_items(epoch, time.time(), items)

    def on_disconnected(self, info: Disconnected) -> None:
        self._stop_resync()
        self._metrics.ami_connected.labels(self.id).set(0)
        self._status(BridgeStatus.DISCONNECTED, reason=info.reason)
        self._gap_from, self._gap_seq = info, self._seq

    def _journal_items(self, epoch: int, now: float, items: list[StreamItem]) -> None:
        seq = self._seq
        records = []
        booted = False
        for item in items:
            seq += 1
            if type(item) is Event:
                event_id = self._event_ids.next(item.raw)
                records.append(encode_event(epoch, seq, now, item, event_id=event_id))
                if self._awaiting_boot and is_fully_booted(item):
                    self._awaiting_boot, booted = False, True
                    seq += 1
                    fields = {"phase": "started", "actions": self._resync.entries}
                    status = BridgeStatus.RESYNC.value
                    records.append(encode_status(epoch, seq, now, status, fields))
            else:
                assert isinstance(item, Malformed)
                log.warning("%s: malformed AMI message kept as invalid: %s", self.id, item.reason)
                records.append(encode_malformed(epoch, seq, now, item))
        self._seq = seq
        self._append(records)
        if booted:
            self._resync_task = asyncio.create_task(
                self._run_resync(epoch), name=f"resync-{self.id}"
            )

    # -- state resync (the runner's SnapshotSink) ---------------------------------------

    async def _run_resync(self, epoch: int) -> None:
        try:
            outcomes = await self._resync.run(self.session.send_action, self)
        except AmiConnectionError as exc:
            log.debug("%s: resync of epoch %d ended with the connection: %s", self.id, epoch, exc)
            return
        except Exception:
            log.exception("%s: resync of epoch %d failed", self.id, epoch)
            return
        results = [outcome.as_fields() for outcome in outcomes]
        self._status(BridgeStatus.RESYNC, phase="done", results=results)

    def _stop_resync(self) -> None:
        self._awaiting_boot = False
        if self._resync_task is not None:
            self._resync_task.cancel()
            self._resync_task = None

    def journal_snapshot(self, events: list[Event]) -> None:
        """Journal one list action's items as snapshot records of the current epoch."""
        epoch, now, seq = self._epoch, time.time(), self._seq
        records = [
            encode_event(epoch, seq + n, now, event, snapshot=True)
            for n, event in enumerate(events, 1)
        ]
        self._seq = seq + len(records)
        self._append(records)

    def _status(self, status: BridgeStatus, **fields: Any) -> None:
        self._seq += 1
        self._append([encode_status(self._epoch, self._seq, time.time(), status.value, fields)])

    def _append(self, records: Sequence[bytes]) -> None:
        self.journal.append(records)
        self._work.set()

    # -- publishing side ----------------------------------------------------------------

    def wake(self, *, rewind: bool = False) -> None:
        """Something changed (broker back, results freed the window): look for work."""
        if rewind:
            self._refusals.forget_waiting()  # the journal hands them out again
            self.journal.rewind()
            if self.ha is not None:  # hot standby: the follower takes them again
                self.ha.rewound()
        self._work.set()

    def announce_active(self, fields: dict[str, Any]) -> None:
        """Journal the hot-standby ``active`` status (this member took over)."""
        self._status(BridgeStatus.ACTIVE, **fields)

    async def feed(self) -> None:
        """Publish journalled records in order, and refused ones when their retry is due."""
        while True:
            # Refused messages wait for their retry only while there is a broker to take it.
            due_in = self._refusals.next_due_in() if self._publisher.is_connected else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), due_in)
            self._work.clear()
            ha = self.ha
            if ha is not None and not ha.may_publish():  # hot standby: journal, follow
                ha.follow()
                continue
            try:
                await self._publish_retries()
                while self._publisher.is_connected:
                    batch = self.journal.take(_BATCH)
                    if not batch:
                        break
                    for record_id, payload in batch:
                        await self._publish(record_id, payload)
                    await asyncio.sleep(0)
            except BrokerUnavailable:
                continue  # the broker supervisor rewinds and wakes us once it is back
            except Fenced:
                # Lost the lock (or its proof) mid-batch: what was taken goes to the follower.
                self.wake(rewind=True)

    async def _publish_retries(self) -> None:
        """Publish the refused messages whose pause is over (declaring the topology again
        first when a return said it lost a queue)."""
        if not self._publisher.is_connected:
            return
        if self._refusals.redeclare_due:
            try:
                await self._publisher.redeclare()
            except (BrokerError, TopologyConflict) as exc:
                log.warning("%s: could not declare the topology again: %s", self.id, exc)
        for token, message in self._refusals.take_due():
            await self._publish_fenced(message, token)

    async def _publish(self, record_id: int, payload: bytes) -> None:
        try:
            record = decode(payload)
            rendered = self._renderer.render(record)
            received_at = record.received_at
            if record_id >= self._first_unread:
                # Count an event as read once, the first time it is rendered.
                self._first_unread = record_id + 1
                self._count_read(rendered.message.event, rendered.klass, rendered.drift)
            await self._send(record_id, received_at, rendered)
        except (BrokerUnavailable, Fenced):
            raise
        except Exception as exc:
            # A bug, not bad input (render never raises on content): keep the bytes on
            # the invalid route rather than stall on this record forever.
            log.exception("%s: journal record %d could not be published as is", self.id, record_id)
            rendered = self._renderer.unrenderable(payload, exc)
            await self._send(record_id, time.time(), rendered)

    async def _send(self, record_id: int, received_at: float, rendered: Rendered) -> None:
        message = rendered.message
        event_id = message.headers.get("event_id")
        token = Token(
            self,
            record_id,
            received_at,
            message.event,
            rendered.klass,
            event_id if isinstance(event_id, str) else None,
        )
        await self._publish_fenced(message, token)

    async def _publish_fenced(self, message: OutgoingMessage, token: Token) -> None:
        ha = self.ha
        if ha is None:
            await self._publisher.publish(message, token)
            return
        # Hot standby: the lock is checked after any wait for the window, right before
        # the message is handed to the connection.
        await self._publisher.wait_room()
        ha.check()
        await self._publisher.publish(message, token)

    def _count_read(self, event: str, klass: str, drift: tuple[str, ...]) -> None:
        metrics = self._metrics
        if klass == "bridge":
            return
        if klass == "invalid":
            metrics.events_invalid.labels(self.id, event).inc()
        else:
            _child(self._read, metrics.events_read, self.id, (event, klass)).inc()
        if drift:
            metrics.unknown_fields.labels(self.id, event).inc(len(drift))

    def on_results(self, results: list[PublishResult[Token]]) -> None:
        """Settle a batch of publish results that belong to this pipeline."""
        metrics = self._metrics
        now = time.time()
        confirmed = []
        refusals = self._refusals
        for result in results:
            token = result.token
            if result.outcome is Outcome.CONFIRMED:
                confirmed.append(token.record_id)
                if self.ha is not None:
                    self.ha.confirmed(token.record_id, token.event_id)
                refusals.confirmed(token.record_id)
                key = (token.event, token.klass)
                _child(self._published, metrics.events_published, self.id, key).inc()
                metrics.publish_latency.observe(now - token.received_at)
            elif result.outcome is Outcome.FAILED:
                metrics.publish_failed.labels(self.id).inc()
            else:
                counter = (
                    metrics.publish_nacked
                    if result.outcome is Outcome.NACKED
                    else metrics.publish_returned
                )
                counter.labels(self.id, token.event, token.klass).inc()
                verdict, attempts = refusals.refused(
                    token.record_id,
                    token,
                    result.message,
                    outcome=result.outcome.value,
                    reason=result.reason,
                    reply_code=result.reply_code,
                    what=result.message.routing_key,
                )
                if verdict is Verdict.RETIRE:
                    confirmed.append(token.record_id)
                    self._retire(result, attempts)
        self.journal.ack_many(confirmed)
        self._work.set()

    def _retire(self, result: PublishResult[Token], attempts: int) -> None:
        """Give up on a message the broker refused every time: count it and announce it."""
        token, message = result.token, result.message
        self._metrics.publish_refused.labels(self.id, token.event, token.klass).inc()
        if token.klass == "bridge" and token.event == BridgeStatus.REFUSED.value:
            return  # announcing a refused announcement would go on forever
        self._status(
            BridgeStatus.REFUSED,
            message_id=message.message_id,
            event=token.event,
            routing_key=message.routing_key,
            outcome=result.outcome.value,
            attempts=attempts,
            reason=result.reason,
        )

    async def housekeeping(self, interval: float = 1.0) -> None:
        """Apply the journal's limits, announce drops, refresh the journal gauges."""
        metrics = self._metrics
        while True:
            for dropped in self.journal.expire():
                log.error(
                    "%s: journal overflow dropped %d messages (%s)",
                    self.id,
                    dropped.count,
                    dropped.reason,
                )
                metrics.journal_dropped.labels(self.id, str(dropped.reason)).inc(dropped.count)
                self._status(
                    BridgeStatus.OVERFLOW,
                    dropped=dropped.count,
                    reason=str(dropped.reason),
                    first_record=dropped.first_id,
                    last_record=dropped.last_id,
                )
            self._refusals.flush_log()
            metrics.journal_depth.labels(self.id).set(self.journal.depth)
            metrics.journal_oldest_age.labels(self.id).set(self.journal.oldest_age() or 0.0)
            await asyncio.sleep(interval)


def _child(
    children: dict[tuple[str, str], Counter], counter: Counter, server: str, key: tuple[str, str]
) -> Counter:
    """``counter``'s child for ``server`` and ``key``, made once and kept in ``children``."""
    child = children.get(key)
    if child is None:
        child = children[key] = counter.labels(server, *key)
    return child
