"""One server's member of a hot-standby pair: may it publish, and what it does on a turn.

The pipeline (:mod:`bridge.service.server`) asks :meth:`HaMember.may_publish` before
every publish, and hands its standby turns to :meth:`HaMember.follow`; the lock link
(:mod:`bridge.ha.lock`) tells the member when it won or lost the lock, when the lock
connection was last proven alive, and what the active's checkpoints say.

Fencing
-------
Holding the lock is not enough to publish: the lock connection must also have been
proven alive (a round trip to the broker on it) within ``fence`` seconds, the lock
heartbeat.  A member frozen by SIGSTOP, or cut off from the broker, finds its proof too
old the moment it runs again and publishes nothing more, even before it notices that
the broker dropped its lock connection (and, with it, the lock).  The broker drops a
silent connection only after about two heartbeats, so the old active has stopped before
the standby can win the lock.  What the old active had already handed to its socket
before it froze may still arrive: that is its in-flight window, never more.

Checkpoints
-----------
The active remembers the event id of each record the broker confirmed; a checkpoint
names the last one inside the journal's acked prefix, so everything before it is
confirmed too.  The standby's :class:`~bridge.ha.follower.Follower` retires its own
journal up to it.  On takeover the member hands out again everything it has not
retired, in order, then goes on live, and announces ``bridge.active``.

Numbering
---------
What a member publishes in one turn holding the lock carries epochs minted for that
turn (:mod:`bridge.ha.numbering`): the two members never publish one ``id`` for two
different messages, and a takeover's epochs are newer than anything published before.
Checkpoints carry the newest of them, so the standby mints above it even if its clock
is behind.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from bridge.ha.follower import Follower
from bridge.ha.numbering import Clock, PublishedNumbering
from bridge.publish.journal import Journal

__all__ = ["Fenced", "HaMember"]

log = logging.getLogger(__name__)


class Fenced(Exception):
    """This member may not publish (it does not hold the lock, or cannot prove it)."""


class HaMember:
    """The hot-standby state of one server's pipeline.

    ``announce(fields)`` journals the ``active`` status; ``wake()`` gets the pipeline
    to look for work.
    """

    def __init__(
        self,
        server_id: str,
        journal: Journal,
        *,
        instance: str,
        fence: float,
        announce: Callable[[dict[str, Any]], None],
        wake: Callable[[], None],
        epochs: Clock,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server_id = server_id
        self.instance = instance
        self.fence = fence
        self._journal = journal
        self._announce = announce
        self._wake = wake
        self._clock = clock
        self.follower = Follower(journal)
        #: The (epoch, seq) published in this lock turn.
        self.numbering = PublishedNumbering(epochs)
        self.holding = False
        self._proven_at = float("-inf")
        self._confirmed: deque[tuple[int, str]] = deque()
        self._checkpoint: str | None = None
        self._sent_checkpoint: str | None = None
        #: Times this member took over, and records it published again doing so.
        self.takeovers = 0
        self.republished = 0

    # -- the pipeline's hooks ------------------------------------------------------------

    def may_publish(self) -> bool:
        """True while this member holds the lock and proved it within ``fence`` seconds."""
        return self.holding and self._clock() - self._proven_at < self.fence

    def check(self) -> None:
        """Raise :class:`Fenced` unless :meth:`may_publish`."""
        if not self.may_publish():
            raise Fenced(self.server_id)

    def follow(self) -> None:
        """A standby's turn: take and index what was journalled, publish nothing."""
        self.follower.follow()

    def confirmed(self, record_id: int, event_id: str | None) -> None:
        """The broker confirmed the record ``record_id`` (carrying ``event_id``)."""
        if event_id is not None and self.holding:
            self._confirmed.append((record_id, event_id))

    def rewound(self) -> None:
        """The journal was rewound: the standby takes its unretired records again."""
        self.follower.reset()

    # -- the lock link's hooks -----------------------------------------------------------

    def proven(self, at: float) -> None:
        """A round trip on the lock connection, sent at ``at`` (monotonic), came back."""
        self._proven_at = max(self._proven_at, at)

    def acquired(self, at: float) -> None:
        """This member now holds the lock: publish what the active may not have, go live."""
        journal, follower = self._journal, self.follower
        follower.follow()
        place = follower.placement()
        republished = journal.depth
        not_covered = None
        if not place.found:
            not_covered = (
                "events read by the previous active after its last checkpoint "
                f"({place.checkpoint}) and before this member's journal begins"
                if place.checkpoint is not None
                else None
            )
        journal.rewind()
        follower.reset()
        self.numbering.restart()
        self._confirmed.clear()
        self._sent_checkpoint = None
        self.proven(at)
        self.holding = True
        self.takeovers += 1
        self.republished += republished
        log.warning(
            "%s: this member (%s) holds the lock and publishes; %d journalled records "
            "published again from checkpoint %s%s",
            self.server_id,
            self.instance,
            republished,
            place.checkpoint,
            "" if place.found or place.checkpoint is None else " (not in this journal)",
        )
        self._announce(
            {
                "instance": self.instance,
                "checkpoint": place.checkpoint,
                "checkpoint_found": place.found,
                "republished": republished,
                "not_covered": not_covered,
            }
        )
        self._wake()

    def lost(self, reason: str) -> None:
        """The lock connection ended: stop publishing, follow as a standby."""
        if self.holding:
            log.warning(
                "%s: lock lost (%s); this member (%s) stops publishing and stands by",
                self.server_id,
                reason,
                self.instance,
            )
        self.holding = False
        self._proven_at = float("-inf")
        self._confirmed.clear()
        # Records handed to the publisher and never confirmed go to the follower again.
        self._journal.rewind()
        self.follower.reset()
        self._wake()

    def checkpoint(self, event_id: str, epoch: int | None = None) -> None:
        """The active's checkpoint: retire the standby's journal up to ``event_id``.

        ``epoch`` is the newest the active publishes under: this member mints above it.
        """
        if epoch is not None:
            self.numbering.observe(epoch)
        if self.holding:
            return
        if self.follower.placement().checkpoint is None:
            log.info("%s: following the active's checkpoints", self.server_id)
        self.follower.checkpoint(event_id)

    def checkpoint_due(self) -> str | None:
        """The event id to announce as this active's checkpoint, None when unchanged."""
        confirmed = self._confirmed
        if confirmed:
            through = self._journal.acked_through
            while confirmed and confirmed[0][0] <= through:
                self._checkpoint = confirmed.popleft()[1]
        if self._checkpoint is None or self._checkpoint == self._sent_checkpoint:
            return None
        self._sent_checkpoint = self._checkpoint
        return self._checkpoint
