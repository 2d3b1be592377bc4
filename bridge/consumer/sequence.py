"""Duplicate and gap detection from each server's (epoch, seq) numbering: pure, no I/O.

Approach
--------
The bridge numbers every message of one AMI server within a connection *epoch*:
``seq`` 1, 2, 3... for AMI events, invalid messages and the bridge's status messages
alike, and the message id is ``"<server>:<epoch>:<seq>"``.  :class:`SequenceTracker`
keeps a little state per server and turns what it sees into reports, handed to a
callback and counted.

Duplicates (always on)
    Delivery is at least once: a publish retried after a lost confirm, or the journal
    replayed after a restart, sends a message again under the same id.  A repeated id is
    a :class:`Duplicate`, to be skipped.  Memory is bounded: each server remembers only
    its last ``window`` ids.

Sequence gaps (opt-in, ``track_gaps=True``)
    Within one epoch a jump in ``seq`` (5 after 3) is a :class:`SequenceGap`.  That is
    only evidence of loss when the consumer's bindings cover *every* message of the
    server, such as ``pbx1.#`` or ``#``: a queue bound to ``*.call.hangup`` skips most
    numbers by design, so leave gap tracking off there.  A seq at or below the last one
    seen is late (a message requeued after a failed handler), not a gap.  A newer epoch
    starts the numbering afresh at 1; the first message seen of a server sets the
    baseline (the consumer joined mid-stream) and a message of an older epoch is late.

Bridge gaps (always on)
    When the AMI connection drops, events are lost at the source, whatever the bindings:
    the bridge says so with a ``gap`` status message, reported as a :class:`BridgeGap`.

:meth:`SequenceTracker.observe` looks at a message on receipt; :meth:`~SequenceTracker.handled`
remembers its id once it was processed.  Remembering only handled ids means a message
redelivered after a failed handler or a lost connection is not taken for a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from bridge.consumer.messages import Message, StatusMessage
from bridge.events.status import GapFields

__all__ = ["BridgeGap", "Duplicate", "Report", "SequenceGap", "SequenceTracker"]

#: Ids remembered per server for duplicate detection.
DEFAULT_WINDOW = 10_000


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A message id seen before: the message is skipped."""

    server: str
    message_id: str

    def __str__(self) -> str:
        return f"duplicate {self.message_id} skipped"


@dataclass(frozen=True, slots=True)
class SequenceGap:
    """Sequence numbers ``expected`` to ``got - 1`` of one epoch never arrived."""

    server: str
    epoch: int
    expected: int
    got: int

    @property
    def missing(self) -> int:
        """How many messages are missing."""
        return self.got - self.expected

    def __str__(self) -> str:
        return (
            f"sequence gap on {self.server} epoch {self.epoch}: expected seq {self.expected}, "
            f"got {self.got} ({self.missing} missing)"
        )


@dataclass(frozen=True, slots=True)
class BridgeGap:
    """The bridge lost its AMI connection: events of that time are lost at the source."""

    server: str
    previous_epoch: int
    last_seq: int
    disconnected_for: float
    reason: str

    def __str__(self) -> str:
        return (
            f"bridge gap on {self.server}: AMI disconnected for {self.disconnected_for:g} s "
            f"after epoch {self.previous_epoch} seq {self.last_seq} ({self.reason})"
        )


#: Everything a :class:`SequenceTracker` reports.
Report: TypeAlias = Duplicate | SequenceGap | BridgeGap


@dataclass(slots=True)
class _ServerState:
    epoch: int
    last_seq: int
    # Insertion-ordered set of recent ids: the oldest is dropped first.
    recent: dict[str, None] = field(default_factory=dict)


class SequenceTracker:
    """Detects duplicate messages, sequence gaps and bridge gaps, per server.

    Args:
        track_gaps: report :class:`SequenceGap`; only meaningful when the bindings
            deliver every message of each server (``pbx1.#``).
        window: ids remembered per server for duplicate detection.
        on_report: called with each report, after it is counted.

    Raises:
        ValueError: ``window`` is below 1.
    """

    def __init__(
        self,
        *,
        track_gaps: bool = False,
        window: int = DEFAULT_WINDOW,
        on_report: Callable[[Report], None] | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.track_gaps = track_gaps
        self.window = window
        self.on_report = on_report
        #: Duplicates seen (and skipped).
        self.duplicates = 0
        #: Sequence gaps seen, and the messages they miss in all.
        self.sequence_gaps = 0
        self.missing = 0
        #: Bridge ``gap`` statuses seen.
        self.bridge_gaps = 0
        self._servers: dict[str, _ServerState] = {}

    def observe(self, message: Message) -> bool:
        """Account for one received message; False means it is a duplicate to skip."""
        state = self._servers.get(message.server)
        if state is None:
            state = self._servers[message.server] = _ServerState(message.epoch, message.seq)
        elif message.id in state.recent:
            self.duplicates += 1
            self._report(Duplicate(message.server, message.id))
            return False
        else:
            self._follow(state, message)
        if isinstance(message, StatusMessage) and isinstance(message.fields, GapFields):
            gap = message.fields
            self.bridge_gaps += 1
            self._report(
                BridgeGap(
                    message.server,
                    gap.previous_epoch,
                    gap.last_seq,
                    gap.disconnected_for,
                    gap.reason,
                )
            )
        return True

    def handled(self, message: Message) -> None:
        """Remember ``message``'s id: from now on a copy of it is a duplicate."""
        state = self._servers.get(message.server)
        if state is None:
            state = self._servers[message.server] = _ServerState(message.epoch, message.seq)
        state.recent[message.id] = None
        if len(state.recent) > self.window:
            del state.recent[next(iter(state.recent))]

    def _follow(self, state: _ServerState, message: Message) -> None:
        epoch, seq = message.epoch, message.seq
        if epoch < state.epoch:
            return  # late message of an earlier connection
        if epoch > state.epoch:
            state.epoch, state.last_seq = epoch, 0
        if seq > state.last_seq + 1 and self.track_gaps:
            self.sequence_gaps += 1
            self.missing += seq - state.last_seq - 1
            self._report(SequenceGap(message.server, epoch, state.last_seq + 1, seq))
        state.last_seq = max(state.last_seq, seq)

    def _report(self, report: Report) -> None:
        if self.on_report is not None:
            self.on_report(report)
