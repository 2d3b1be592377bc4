"""What to do with a message the broker refuses: retry it a few times, then let it go.

Approach
--------
A broker nacks a publish when a queue it routes to refuses it (a full queue with
``x-overflow=reject-publish``, a quorum queue electing a leader) and returns it when
nothing takes it (``NO_ROUTE``: the unrouted queue was deleted).  Most refusals pass in
a moment; some never do.  Holding every later message behind one that is refused forever
would stop the whole stream, so each refused message gets a retry of its own:

* it is published again after ``backoff`` seconds, then twice as long each time (capped
  at :data:`MAX_BACKOFF`), ``retries`` times at most, while every other message keeps
  flowing;
* after the last retry it is *retired*: the caller acks its journal record, counts it
  and announces it on ``{server}.bridge.refused`` with its id;
* a return with ``312 NO_ROUTE`` means the topology lost its unrouted queue: the caller
  is asked (:attr:`Refusals.redeclare_due`) to declare the topology again, at most every
  :data:`REDECLARE_INTERVAL` seconds.

Refusals come in floods (every message of a busy routing key, say), so they are logged
as one line at once and then one summary line per :data:`LOG_INTERVAL` with the count.

:class:`Refusals` is sans-I/O: the pipeline tells it what the broker said and asks it
what is due; it never publishes nor logs anything but those summary lines.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

__all__ = [
    "LOG_INTERVAL",
    "MAX_BACKOFF",
    "MAX_WAITING",
    "REDECLARE_INTERVAL",
    "Refusals",
    "Verdict",
]

log = logging.getLogger(__name__)

#: Longest pause between two publishes of one refused message (s).
MAX_BACKOFF = 30.0
#: Seconds between two summary lines about refusals.
LOG_INTERVAL = 10.0
#: Seconds between two declarations of the topology after ``NO_ROUTE`` returns.
REDECLARE_INTERVAL = 5.0
#: Refused messages kept for a retry at once; past that, new refusals are retired.
MAX_WAITING = 10_000
#: The reply code of a return that found no queue at all.
NO_ROUTE = 312

T = TypeVar("T")
M = TypeVar("M")


class Verdict(Enum):
    RETRY = "retry"
    RETIRE = "retire"


@dataclass(order=True)
class _Waiting(Generic[T, M]):
    due: float
    record_id: int
    token: T = field(compare=False)
    message: M = field(compare=False)


class Refusals(Generic[T, M]):
    """One server's refused messages: their attempts and when each is published again.

    ``T`` is the publisher's token, ``M`` the message; both are handed back unchanged.
    """

    def __init__(
        self,
        server: str,
        *,
        retries: int,
        backoff: float,
        clock: Callable[[], float] = time.monotonic,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.server = server
        self.retries = retries
        self.backoff = backoff
        self._clock = clock
        self._max_waiting = max_waiting
        self._attempts: dict[int, int] = {}
        self._waiting: list[_Waiting[T, M]] = []
        self._redeclare_wanted = False
        self._redeclared_at = -REDECLARE_INTERVAL
        self._since_log: Counter[str] = Counter()
        self._logged_at = -LOG_INTERVAL

    # -- what the broker said ----------------------------------------------------------

    def refused(
        self,
        record_id: int,
        token: T,
        message: M,
        *,
        outcome: str,
        reason: str,
        reply_code: int = 0,
        what: str = "",
    ) -> tuple[Verdict, int]:
        """The broker ``outcome`` (nacked, returned) the publish of ``record_id``.

        Returns the verdict and how many times the message was refused so far.  On
        RETRY the message is kept and handed back by :meth:`take_due`; on RETIRE it is
        forgotten, and the caller retires it.  ``what`` names it in the log (its routing
        key).
        """
        attempts = self._attempts.get(record_id, 0) + 1
        if reply_code == NO_ROUTE:
            self._redeclare_wanted = True
        self._note(outcome, reason, what)
        if attempts > self.retries or len(self._waiting) >= self._max_waiting:
            self._attempts.pop(record_id, None)
            self._since_log["retired"] += 1
            return Verdict.RETIRE, attempts
        self._attempts[record_id] = attempts
        delay = min(MAX_BACKOFF, self.backoff * 2.0 ** (attempts - 1))
        heapq.heappush(self._waiting, _Waiting(self._clock() + delay, record_id, token, message))
        return Verdict.RETRY, attempts

    def confirmed(self, record_id: int) -> None:
        """The broker took ``record_id`` at last: forget its attempts."""
        if self._attempts:
            self._attempts.pop(record_id, None)

    # -- what the caller does next -----------------------------------------------------

    def take_due(self) -> list[tuple[T, M]]:
        """The refused messages whose pause is over, oldest record first."""
        now = self._clock()
        due = []
        while self._waiting and self._waiting[0].due <= now:
            entry = heapq.heappop(self._waiting)
            due.append(entry)
        due.sort(key=lambda entry: entry.record_id)
        return [(entry.token, entry.message) for entry in due]

    def next_due_in(self) -> float | None:
        """Seconds until the next retry is due (0 when one is), None when none waits."""
        if not self._waiting:
            return None
        return max(0.0, self._waiting[0].due - self._clock())

    @property
    def waiting(self) -> int:
        """Refused messages waiting for their next publish."""
        return len(self._waiting)

    def forget_waiting(self) -> None:
        """Drop the waiting retries (the journal hands them out again after a reconnect);
        their attempt counts stay."""
        self._waiting.clear()

    @property
    def redeclare_due(self) -> bool:
        """True once, at most every REDECLARE_INTERVAL seconds, after a NO_ROUTE return."""
        now = self._clock()
        if not self._redeclare_wanted or now - self._redeclared_at < REDECLARE_INTERVAL:
            return False
        self._redeclare_wanted = False
        self._redeclared_at = now
        return True

    # -- the log -----------------------------------------------------------------------

    def _note(self, outcome: str, reason: str, what: str) -> None:
        now = self._clock()
        if now - self._logged_at >= LOG_INTERVAL and not self._since_log:
            self._logged_at = now
            log.warning(
                "%s: the broker %s %s (%s); publishing it again up to %d times, "
                "then it is retired and announced on %s.bridge.refused",
                self.server,
                outcome,
                what or "a message",
                reason,
                self.retries,
                self.server,
            )
            return
        self._since_log[outcome] += 1
        self._since_log[f"reason:{reason}"] += 1
        self.flush_log()

    def flush_log(self) -> None:
        """Log the summary of refusals since the last line, if LOG_INTERVAL has passed."""
        now = self._clock()
        if not self._since_log or now - self._logged_at < LOG_INTERVAL:
            return
        counts = self._since_log
        outcomes = {k: v for k, v in counts.items() if k in ("nacked", "returned")}
        reasons = sorted(
            ((v, k.removeprefix("reason:")) for k, v in counts.items() if k.startswith("reason:")),
            reverse=True,
        )
        log.warning(
            "%s: the broker refused %d more messages in the last %.0f s (%s; most often: %s); "
            "%d retired",
            self.server,
            sum(outcomes.values()),
            now - self._logged_at,
            ", ".join(f"{name} {n}" for name, n in sorted(outcomes.items())),
            reasons[0][1] if reasons else "?",
            counts.get("retired", 0),
        )
        self._since_log = Counter()
        self._logged_at = now
