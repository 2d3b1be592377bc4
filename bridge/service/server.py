"""One PBX's pipeline: AMI session -> journal -> publisher.

The reader side never waits on the broker, nor on the event loop.  The connection's
reader thread calls :meth:`on_items` once per socket read; that call stamps each message
with the epoch and the next sequence number and appends the whole read to the journal
in one write, on the reader thread, before the bytes leave the socket, then returns.
The status records of the connection (``disconnected`` when the reader sees the end,
stamped with that moment) are appended the same way; one lock orders the appends of the
reader thread and of the event loop, and the loop is woken with
``call_soon_threadsafe``.  A separate task,
:meth:`ServerPipeline.feed`, takes records from the journal in order, renders them and
publishes them within the publisher's window; confirms retire them.  While the broker is
down or slower than the PBX, records simply wait in the journal, oldest first.

After each login the pipeline resynchronises state (:mod:`bridge.service.resync`): the
first ``FullyBooted`` of the connection is followed in the journal by a ``resync``
status (``phase: started``), the snapshot items of the configured list actions, and a
second ``resync`` status (``phase: done``) with what each action gave.  The resync runs
as a task of the pipeline, cancelled when the connection ends; ``on_items`` never waits
for it; it is started on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
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
from bridge.ami.read_priority import read_priority
from bridge.ami.session import AmiSession
from bridge.ha.event_id import EventIds
from bridge.ha.member import Fenced, HaMember
from bridge.logs import ServerLog
from bridge.publish.amqp import AmqpPublisher, Outcome, PublishResult
from bridge.publish.broker import BrokerError, BrokerUnavailable
from bridge.publish.journal import DiskState, Journal, JournalIOError
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
#: Seconds between tries to read the journal back while its disk fails reads.
_READ_RETRY = 1.0


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
        self._log = ServerLog(log, server.id)
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
            memory_max_bytes=settings.journal_memory_max_bytes,
        )
        self.session = AmiSession(
            server.target,
            partial(_read_secret, settings, server),
            self,
            name=server.id,
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
            read_observer=self,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        #: Orders the appends of the reader thread and of the event loop (epoch, seq).
        self._lock = threading.RLock()
        self._wake_pending = False
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
        self._memory_max_bytes = settings.journal_memory_max_bytes
        self._first_unread = self.journal.acked_through + 1
        #: True while the journal's disk fails reads (for the one line each way).
        self._journal_unreadable = False
        self._log_inherited_backlog()
        #: Events read (on the reader thread) and messages confirmed so far (for the
        #: status line).
        self.read_count = 0
        self.published_count = 0
        # labels() costs more than the increment: one child per (event, class), kept.
        self._published: dict[tuple[str, str], Counter] = {}
        #: (event, class) pairs read so far, whose counters exist at 0 (Metrics.add_event).
        self._seen: set[tuple[str, str]] = set()
        metrics.add_server(self.id)
        metrics.ami_connected.labels(self.id).set(0)
        self._read_events = metrics.events_read.labels(self.id)
        metrics.read_lag.labels(self.id).set_function(lambda: self.journal.depth)
        self._read_gaps = metrics.ami_read_gap.labels(self.id)
        self._read_gap_max = metrics.ami_read_gap_max.labels(self.id)
        self._longest_gap = 0.0
        self._receive_queue = metrics.ami_receive_queue.labels(self.id)

    def _log_inherited_backlog(self) -> None:
        journal = self.journal
        if journal.depth:
            self._log.info(
                "%d messages (%s) journalled by the last run, the oldest %s old, "
                "are published before new events",
                journal.depth,
                _size(journal.pending_bytes),
                _duration(journal.oldest_age() or 0.0),
            )

    # -- reader side (called by the session, synchronously) ----------------------------

    def on_connected(self, info: Connected) -> None:
        """On the event loop, after a login."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        with self._lock:
            gap = self._gap_from
            self._epoch, self._seq = info.epoch, 0
            self._awaiting_boot = bool(self._resync.plan)
            if gap is not None:
                self._status(
                    BridgeStatus.GAP,
                    previous_epoch=gap.epoch,
                    last_seq=self._gap_seq,
                    # From the last byte read on the old connection to this login.
                    disconnected_for=round(info.at - gap.last_read_at, 6),
                    reason=gap.reason,
                )
                self._metrics.ami_reconnects.labels(self.id).inc()
            self._status(
                BridgeStatus.CONNECTED, target=str(info.target), ami_version=info.ami_version
            )
        self._metrics.ami_connected.labels(self.id).set(1)

    def on_items(self, epoch: int, items: list[StreamItem]) -> None:
        """On the reader thread, once per socket read."""
        self._journal_items(epoch, time.time(), items)

    def on_disconnected(self, info: Disconnected) -> None:
        """On the reader thread, when it sees the connection end."""
        with self._lock:
            self._awaiting_boot = False
            self._metrics.ami_connected.labels(self.id).set(0)
            self._append(
                [
                    encode_status(
                        self._epoch,
                        self._seq + 1,
                        info.at,
                        BridgeStatus.DISCONNECTED.value,
                        {"reason": info.reason},
                    )
                ]
            )
            self._seq += 1
            self._gap_from, self._gap_seq = info, self._seq
        self._on_loop(self._stop_resync)

    # -- reader side: what the reader thread observes (a ReadObserver) -----------------

    def read_gap(self, seconds: float) -> None:
        self._read_gaps.observe(seconds)
        if seconds > self._longest_gap:
            self._longest_gap = seconds
            self._read_gap_max.set(seconds)

    def receive_queue(self, nbytes: int) -> None:
        self._receive_queue.set(nbytes)

    def _journal_items(self, epoch: int, now: float, items: list[StreamItem]) -> None:
        with self._lock:
            booted, events = self._journal_items_locked(epoch, now, items)
        self._read_events.inc(events)
        self.read_count += events
        if booted:
            self._on_loop(self._start_resync, epoch)

    def _journal_items_locked(
        self, epoch: int, now: float, items: list[StreamItem]
    ) -> tuple[bool, int]:
        seq = self._seq
        records = []
        booted = False
        events = 0
        for item in items:
            seq += 1
            if type(item) is Event:
                events += 1
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
                self._log.warning("malformed AMI message kept as invalid: %s", item.reason)
                records.append(encode_malformed(epoch, seq, now, item))
        self._seq = seq
        self._append(records)
        return booted, events

    def _start_resync(self, epoch: int) -> None:
        """On the loop: the connection's first FullyBooted was journalled."""
        if epoch != self._epoch or not self.session.connected:
            return  # that connection is gone already
        self._resync_task = asyncio.create_task(self._run_resync(epoch), name=f"resync-{self.id}")

    # -- state resync (the runner's SnapshotSink) ---------------------------------------

    async def _run_resync(self, epoch: int) -> None:
        try:
            outcomes = await self._resync.run(self.session.send_action, self)
        except AmiConnectionError as exc:
            self._log.debug("resync of epoch %d ended with the connection: %s", epoch, exc)
            return
        except Exception:
            self._log.exception("resync of epoch %d failed", epoch)
            return
        results = [outcome.as_fields() for outcome in outcomes]
        self._status(BridgeStatus.RESYNC, phase="done", results=results)

    def _stop_resync(self) -> None:
        self._awaiting_boot = False
        if self._resync_task is not None:
            self._resync_task.cancel()
            self._resync_task = None

    def journal_snapshot(self, events: list[Event]) -> None:
        """Journal one list action's items as snapshot records of the current epoch.

        Called on the reader thread, at the list's place in the stream.
        """
        with self._lock:
            epoch, now, seq = self._epoch, time.time(), self._seq
            records = [
                encode_event(epoch, seq + n, now, event, snapshot=True)
                for n, event in enumerate(events, 1)
            ]
            self._seq = seq + len(records)
            self._append(records)

    def _status(self, status: BridgeStatus, **fields: Any) -> None:
        with self._lock:
            self._seq += 1
            record = encode_status(self._epoch, self._seq, time.time(), status.value, fields)
            # Kept even when the journal's disk failed and its memory buffer is full: a
            # status is what announces those drops.
            self._append([record], essential=True)

    def _append(self, records: Sequence[bytes], *, essential: bool = False) -> None:
        self.journal.append(records, essential=essential)
        if threading.get_ident() == self._loop_thread or self._loop is None:
            self._work.set()
        elif not self._wake_pending:
            # One wake-up per turn of the loop, however many reads came meanwhile.
            self._wake_pending = True
            self._on_loop(self._wake_feed)

    def _wake_feed(self) -> None:
        self._wake_pending = False
        self._work.set()

    def _on_loop(self, callback: Any, *args: Any) -> None:
        """Run ``callback`` on the event loop (from the reader thread)."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            callback(*args)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                loop.call_soon_threadsafe(callback, *args)

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
                    # A reader behind its socket goes first: this can be done later.
                    await read_priority.step_aside()
                    batch = self.journal.take(_BATCH)
                    if self._journal_unreadable:
                        self._log.warning("the journal can be read again; publishing goes on")
                        self._journal_unreadable = False
                    if not batch:
                        break
                    for record_id, payload in batch:
                        await self._publish(record_id, payload)
                    await asyncio.sleep(0)
            except BrokerUnavailable:
                continue  # the broker supervisor rewinds and wakes us once it is back
            except JournalIOError as exc:
                # The records stay on disk, the reader keeps journalling: wait and retry.
                self._metrics.journal_read_errors.labels(self.id).inc()
                if not self._journal_unreadable:
                    self._log.error(
                        "%s; publishing waits, trying again every %g s", exc, _READ_RETRY
                    )
                self._journal_unreadable = True
                await asyncio.sleep(_READ_RETRY)
                self._work.set()
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
                self._log.warning("could not declare the topology again: %s", exc)
        for token, message in self._refusals.take_due():
            await self._publish_fenced(message, token)

    async def _publish(self, record_id: int, payload: bytes) -> None:
        try:
            record = decode(payload)
            if self.ha is not None:  # hot standby: this lock turn's own epochs
                record = self.ha.numbering.published(record)
            rendered = self._renderer.render(record)
            received_at = record.received_at
            if record_id >= self._first_unread:
                # Count an invalid event once, the first time it is rendered.
                self._first_unread = record_id + 1
                self._count_rendered(rendered.message.event, rendered.klass, rendered.drift)
            await self._send(record_id, received_at, rendered)
        except (BrokerUnavailable, Fenced):
            raise
        except Exception as exc:
            # A bug, not bad input (render never raises on content): keep the bytes on
            # the invalid route rather than stall on this record forever.
            self._log.exception("journal record %d could not be published as is", record_id)
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

    def _count_rendered(self, event: str, klass: str, drift: tuple[str, ...]) -> None:
        metrics = self._metrics
        if klass == "bridge":
            return
        if (event, klass) not in self._seen:
            self._seen.add((event, klass))
            metrics.add_event(self.id, event, klass)
        if klass == "invalid":
            metrics.events_invalid.labels(self.id, event).inc()
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
        self.published_count += len(confirmed)
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
        """Apply the journal's limits, announce drops and disk changes, refresh the gauges."""
        metrics = self._metrics
        unwritten = 0
        while True:
            journal = self.journal
            for change in journal.disk_changes():
                self._announce_disk(change)
            metrics.journal_unwritten.labels(self.id).inc(journal.unwritten - unwritten)
            unwritten = journal.unwritten
            try:
                drops = journal.expire()
            except JournalIOError:
                drops = []  # the disk fails reads (feed says so): the limits wait a round
            for dropped in drops:
                self._log.error(
                    "journal overflow dropped %d messages (%s)",
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
            metrics.journal_depth.labels(self.id).set(journal.depth)
            metrics.journal_oldest_age.labels(self.id).set(journal.oldest_age() or 0.0)
            metrics.journal_bytes.labels(self.id).set(journal.pending_bytes)
            metrics.journal_available.labels(self.id).set(journal.unavailable is None)
            metrics.journal_disk_bytes.labels(self.id).set(journal.disk_bytes)
            metrics.journal_memory_bytes.labels(self.id).set(journal.memory_bytes)
            await asyncio.sleep(interval)

    async def report_status(self, interval: float) -> None:
        """Log one INFO line every ``interval`` seconds: rates, journal and connections."""
        loop = asyncio.get_running_loop()
        then, read, published = loop.time(), self.read_count, self.published_count
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            elapsed = max(now - then, 1e-9)
            self._log.info(
                "%s",
                self.status(
                    (self.read_count - read) / elapsed, (self.published_count - published) / elapsed
                ),
            )
            then, read, published = now, self.read_count, self.published_count

    def status(self, read_rate: float, published_rate: float) -> str:
        """The status line's text, given the rates since the last one."""
        journal, publisher = self.journal, self._publisher
        if not publisher.is_connected:
            broker = "down"
        elif publisher.blocked is not None:
            broker = f"blocked ({publisher.blocked})"
        else:
            broker = "connected"
        return (
            f"status: AMI {'connected' if self.session.connected else 'down'}, "
            f"{read_rate:.1f} events/s read, {published_rate:.1f} messages/s published; "
            f"journal {journal.depth} messages ({_size(journal.pending_bytes)}), "
            f"oldest {_duration(journal.oldest_age() or 0.0)}; broker {broker}"
        )

    def _announce_disk(self, change: DiskState) -> None:
        """One log line and one ``journal`` status per change of the journal's disk."""
        if change.state == "unavailable":
            self._log.error(
                "journal cannot be written (%s); publishing from memory, up to %d bytes",
                change.reason,
                self._memory_max_bytes,
            )
        else:
            self._log.warning(
                "journal written again after: %s; %d events were not journalled, "
                "%d dropped with the memory buffer full",
                change.reason,
                change.unwritten,
                change.dropped,
            )
        self._status(
            BridgeStatus.JOURNAL,
            state=change.state,
            reason=change.reason,
            unwritten=change.unwritten,
            dropped=change.dropped,
        )


def _size(size: int) -> str:
    """Bytes for a log line: ``512 B``, ``3.2 MB``."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    """Seconds for a log line: ``4.2 s``, ``12 min``, ``3.5 h``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _child(
    children: dict[tuple[str, str], Counter], counter: Counter, server: str, key: tuple[str, str]
) -> Counter:
    """``counter``'s child for ``server`` and ``key``, made once and kept in ``children``."""
    child = children.get(key)
    if child is None:
        child = children[key] = counter.labels(server, *key)
    return child
