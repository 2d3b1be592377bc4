"""What happens to each received message: skip, hand over, ack, retry or dead-letter.

Approach
--------
:class:`Settlement` is the policy of one consumer, kept apart from its connection:

* :meth:`~Settlement.accept` parses a body and asks the
  :class:`~bridge.consumer.sequence.SequenceTracker` about it.  A body that is not a
  message of the contract cannot be handled by retrying, so it is rejected without
  requeue - dead-lettered - at once, and logged.  A duplicate is acked and skipped.
  Anything else becomes a :class:`Delivery` with its attempt number.
* :meth:`Delivery.ack` acks and marks the id handled (from then on a copy is a
  duplicate).
* :meth:`Delivery.fail` requeues the message until it has been tried ``max_attempts``
  times, then rejects it without requeue, which dead-letters it (see
  :mod:`bridge.consumer.attempts` for who counts).  Each failure is logged with the
  message id, its server and event, the attempt and the error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage

from bridge.consumer.attempts import AttemptCounter
from bridge.consumer.messages import Message, MessageError, parse_message
from bridge.consumer.sequence import Duplicate, Report, SequenceTracker

__all__ = ["ConsumerStats", "Delivery", "Settlement"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ConsumerStats:
    """Counters of one consumer since it started."""

    acked: int = 0
    requeued: int = 0
    dead_lettered: int = 0
    #: Bodies that were not messages of the contract (rejected at once).
    unreadable: int = 0


class Delivery:
    """One received message, to be settled once with :meth:`ack` or :meth:`fail`."""

    __slots__ = ("_incoming", "_settlement", "attempt", "body", "message", "routing_key")

    def __init__(
        self,
        settlement: Settlement,
        incoming: AbstractIncomingMessage,
        message: Message,
        attempt: int,
    ) -> None:
        self._settlement = settlement
        self._incoming = incoming
        #: The parsed message.
        self.message = message
        #: The body exactly as published (compact JSON).
        self.body = incoming.body
        self.routing_key = incoming.routing_key or ""
        #: 1 on the first delivery, counting failed tries before it.
        self.attempt = attempt

    async def ack(self) -> None:
        """The message was handled: remove it from the queue."""
        await self._settlement.ack(self._incoming, self.message)

    async def fail(self, error: BaseException) -> bool:
        """The handler failed with ``error``: requeue, or dead-letter after the last try.

        Returns True when the message was dead-lettered (or dropped, without a
        dead-letter exchange).
        """
        return await self._settlement.fail(self._incoming, self.message, self.attempt, error)

    def __repr__(self) -> str:
        return f"Delivery({self.message.id!r}, attempt={self.attempt})"


class Settlement:
    """The fate of each message of one queue.

    Args:
        attempts: counts tries and says which failure is the last.
        track_gaps: report sequence gaps (see :class:`SequenceTracker`).
        dead_letter_exchange: where rejected messages go, None when they are dropped.
        on_report: the application's callback for duplicate and gap reports.
    """

    def __init__(
        self,
        attempts: AttemptCounter,
        *,
        track_gaps: bool,
        dead_letter_exchange: str | None,
        on_report: Callable[[Report], None] | None = None,
    ) -> None:
        self.attempts = attempts
        self.tracker = SequenceTracker(track_gaps=track_gaps, on_report=self._report)
        self.stats = ConsumerStats()
        self._on_report = on_report
        self._rejected_to = (
            f"dead-lettered to {dead_letter_exchange!r}"
            if dead_letter_exchange is not None
            else "dropped (no dead-letter exchange)"
        )

    async def accept(self, raw: AbstractIncomingMessage) -> Delivery | None:
        """A :class:`Delivery` for ``raw``, or None when it was settled here."""
        try:
            message = parse_message(raw.body)
        except MessageError as exc:
            self.stats.unreadable += 1
            log.error(
                "unreadable message %s (routing key %r): %s; %s",
                raw.message_id,
                raw.routing_key,
                exc,
                self._rejected_to,
            )
            await raw.reject(requeue=False)
            return None
        if not self.tracker.observe(message):
            await raw.ack()
            return None
        attempt = self.attempts.attempt(message.id, raw.headers or {})
        return Delivery(self, raw, message, attempt)

    async def ack(self, raw: AbstractIncomingMessage, message: Message) -> None:
        """Ack ``message`` and remember it as handled."""
        await raw.ack()
        self.stats.acked += 1
        self.attempts.settled(message.id)
        self.tracker.handled(message)

    async def fail(
        self, raw: AbstractIncomingMessage, message: Message, attempt: int, error: BaseException
    ) -> bool:
        """Requeue ``message``, or reject it after its last attempt; True when rejected."""
        what = f"{message.id} ({message.server} {message.event})"
        limit = self.attempts.max_attempts
        cause = f"{type(error).__name__}: {error}"
        if self.attempts.failed(message.id, attempt):
            await raw.reject(requeue=False)
            self.stats.dead_lettered += 1
            log.error(
                "handler failed on %s at attempt %d of %d: %s; %s",
                *(what, attempt, limit, cause, self._rejected_to),
                exc_info=error,
            )
            return True
        await raw.nack(requeue=True)
        self.stats.requeued += 1
        log.warning(
            "handler failed on %s at attempt %d of %d: %s; requeued", what, attempt, limit, cause
        )
        return False

    def _report(self, report: Report) -> None:
        # Duplicates are expected with at-least-once delivery; gaps are news.
        log.log(logging.INFO if isinstance(report, Duplicate) else logging.WARNING, "%s", report)
        if self._on_report is not None:
            self._on_report(report)
