"""The standby's view of its journal: what the active has published, and what not yet.

A standby reads and journals every event, like the active, but publishes nothing.  It
takes its records from the journal in order (so the journal's own in-flight set holds
them) and indexes their event ids.  Each checkpoint from the active names the last event
id it had confirmed; the follower retires (acks) every record up to the one with that id,
so the standby's journal stays small.  What stays unacked is exactly what the standby
publishes if it takes over: everything after the last checkpoint it could place.

A checkpoint may name an event the standby has not read yet (its AMI session is a little
behind): it is kept as pending, and placed as soon as that event is taken.  A checkpoint
the standby never reads (it connected later than the active) is never placed; later ones
are.  Both the index and the pending set are bounded.

Sans-I/O apart from the journal calls; the member drives it from the event loop.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from bridge.publish.journal import Journal
from bridge.publish.records import decode

__all__ = ["Follower", "Placement"]

#: Checkpoints remembered while the events they name are not read yet.
_PENDING = 256
#: Records taken per call of :meth:`Follower.follow`.
_TAKE = 512


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the standby stands against the active's checkpoints, for the takeover."""

    #: The last checkpoint received (an event id), None when none came.
    checkpoint: str | None
    #: True when that checkpoint was found in this journal (everything up to it retired).
    found: bool
    #: Records retired by checkpoints so far.
    retired: int


class Follower:
    """Indexes a standby's journal by event id and retires it up to each checkpoint."""

    def __init__(self, journal: Journal, *, index_limit: int = 1_000_000) -> None:
        self._journal = journal
        self._index_limit = index_limit
        #: Taken and not retired, in id order: (record id, event id or None).
        self._taken: deque[tuple[int, str | None]] = deque()
        #: event id -> record id of its first occurrence among ``_taken``.
        self._by_event: dict[str, int] = {}
        self._pending: OrderedDict[str, None] = OrderedDict()
        self._last: str | None = None
        self._last_found = False
        self.retired = 0

    def reset(self) -> None:
        """Forget the index; call it after the journal was rewound (records come again)."""
        self._taken.clear()
        self._by_event.clear()

    def follow(self) -> int:
        """Take and index what was journalled since the last call; returns how many."""
        taken = 0
        while True:
            batch = self._journal.take(_TAKE)
            if not batch:
                return taken
            taken += len(batch)
            for record_id, payload in batch:
                try:
                    event_id = decode(payload).event_id
                except ValueError:
                    event_id = None  # published (as invalid) on takeover like any other
                self._taken.append((record_id, event_id))
                if event_id is None:
                    continue
                self._by_event.setdefault(event_id, record_id)
                if event_id in self._pending:
                    self._place(event_id)
            self._bound()

    def checkpoint(self, event_id: str) -> bool:
        """The active confirmed everything up to ``event_id``: retire up to it.

        Returns True when the event was found (else it waits as pending).
        """
        self._last, self._last_found = event_id, False
        if event_id in self._by_event:
            self._place(event_id)
            return True
        self._pending[event_id] = None
        if len(self._pending) > _PENDING:
            self._pending.popitem(last=False)
        return False

    def placement(self) -> Placement:
        return Placement(self._last, self._last_found, self.retired)

    def _place(self, event_id: str) -> None:
        through = self._by_event[event_id]
        acked = []
        taken, by_event = self._taken, self._by_event
        while taken and taken[0][0] <= through:
            record_id, eid = taken.popleft()
            acked.append(record_id)
            if eid is not None and by_event.get(eid) == record_id:
                del by_event[eid]
        self._journal.ack_many(acked)
        self.retired += len(acked)
        # Checkpoints older than this one can only name events retired now, or never read.
        pending = self._pending
        if event_id in pending:
            while pending:
                oldest, _ = pending.popitem(last=False)
                if oldest == event_id:
                    break
        else:
            pending.clear()
        if event_id == self._last:
            self._last_found = True
        # A newer checkpoint still pending stays so: it is placed when its event comes.

    def _bound(self) -> None:
        # A standby that no checkpoint reaches (no active) keeps everything journalled;
        # the index only forgets ids, so those records are published on takeover anyway.
        by_event = self._by_event
        if len(by_event) <= self._index_limit:
            return
        excess = len(by_event) - self._index_limit // 2
        for record_id, eid in self._taken:
            if excess <= 0:
                break
            if eid is not None and by_event.get(eid) == record_id:
                del by_event[eid]
                excess -= 1
