"""How many times a message has been tried, and whether a failure is its last: pure.

Approach
--------
A quorum queue counts deliveries itself: from the second delivery on, a message carries
``x-delivery-count`` (the deliveries before this one), and the queue's
``x-delivery-limit`` makes RabbitMQ dead-letter a message that keeps failing even when
no consumer decides to.  A classic queue counts nothing, so there the consumer counts
failures per message id, in memory (a window of the most recent, so a queue of poison
messages cannot grow it without bound).  Either way the attempt number is 1 on first
delivery, and a failure at ``max_attempts`` is final: the message is rejected without
requeue, which dead-letters it.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DELIVERY_COUNT_HEADER", "AttemptCounter"]

#: The header a quorum queue adds to redelivered messages.
DELIVERY_COUNT_HEADER = "x-delivery-count"

_WINDOW = 10_000


class AttemptCounter:
    """Attempt numbers of the messages of one queue.

    Args:
        max_attempts: tries before a failing message is dead-lettered.
        broker_counts: the queue is a quorum queue that counts deliveries itself.

    Raises:
        ValueError: ``max_attempts`` is below 1.
    """

    def __init__(self, max_attempts: int, *, broker_counts: bool) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.broker_counts = broker_counts
        self._failures: dict[str, int] = {}

    def attempt(self, message_id: str, headers: Mapping[str, object]) -> int:
        """The attempt number (from 1) of this delivery of ``message_id``."""
        if self.broker_counts:
            count = headers.get(DELIVERY_COUNT_HEADER, 0)
            return (count if isinstance(count, int) else 0) + 1
        return self._failures.get(message_id, 0) + 1

    def failed(self, message_id: str, attempt: int) -> bool:
        """Record that ``attempt`` failed; True when it was the last one allowed."""
        if attempt >= self.max_attempts:
            self._failures.pop(message_id, None)
            return True
        if not self.broker_counts:
            self._failures.pop(message_id, None)  # re-insert as the newest
            self._failures[message_id] = attempt
            if len(self._failures) > _WINDOW:
                del self._failures[next(iter(self._failures))]
        return False

    def settled(self, message_id: str) -> None:
        """Forget ``message_id``: it was handled."""
        self._failures.pop(message_id, None)
