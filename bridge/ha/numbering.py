"""The numbers a member of a pair publishes under: fresh epochs each time it wins the lock.

Why
---
Each member numbers what it reads by its own AMI logins (epoch = unix milliseconds of
the login, ``seq`` counting from 1).  Published as journalled, a takeover could break the
contract's promise that ``id`` (``server:epoch:seq``) names one message:

- the two members may log in within the same millisecond, and then the same id names
  different events on each (a consumer deduplicating on ``id`` would drop one);
- a status journalled before the first login has epoch 0 on both members;
- a standby that logged in first has the older epoch, so what it publishes after a
  takeover looks older to consumers than what they already saw.

Approach
--------
The member that wins the lock publishes everything from then on under epochs minted for
that turn: the first time a record of a journal epoch is published, that epoch is given
a new one from the process's :class:`~bridge.ami.session.EpochClock` (strictly
increasing, and above every epoch the other member's checkpoints announced), and its
records are numbered from 1 in it, the differences between their ``seq`` (any gap)
kept.  A ``gap`` status's ``previous_epoch`` and ``last_seq`` follow the same mapping.
Journal records are never rewritten: the mapping applies as records are rendered, stays
the same across broker outages (a record published again keeps its id), and starts
afresh at the next win of the lock.  Only the lock holder mints, and lock turns never
overlap, so the pair never publishes one id twice for different messages.

Sans-I/O; the pipeline calls :meth:`PublishedNumbering.published` on the event loop.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from bridge.publish.records import Record, RecordKind, decode, encode_status
from bridge.publish.routing import BridgeStatus

__all__ = ["Clock", "PublishedNumbering"]


class Clock(Protocol):
    """Where fresh epochs come from (:class:`~bridge.ami.session.EpochClock`)."""

    def __call__(self) -> int: ...

    def observe(self, epoch: int) -> None: ...


@dataclasses.dataclass(slots=True)
class _Renumbered:
    epoch: int
    #: Subtracted from the journal's seq: the first record published becomes seq 1.
    offset: int


class PublishedNumbering:
    """Maps journal (epoch, seq) to the (epoch, seq) published in this lock turn."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._turn: dict[int, _Renumbered] = {}
        #: The newest epoch minted, announced in checkpoints; None before the first.
        self.latest: int | None = None

    def restart(self) -> None:
        """This member won the lock: what it publishes from now on gets new epochs."""
        self._turn = {}

    def observe(self, peer_epoch: int) -> None:
        """The other member publishes under ``peer_epoch``: mint only above it."""
        self._clock.observe(peer_epoch)

    def published(self, record: Record) -> Record:
        """``record`` with the epoch and seq it is published under in this turn."""
        mapped = self._mapped(record.epoch, record.seq)
        seq = record.seq - mapped.offset
        if record.kind is RecordKind.STATUS:
            status, fields = record.status()
            if status == BridgeStatus.GAP.value:
                return self._gap(record, mapped.epoch, seq, fields)
        return dataclasses.replace(record, epoch=mapped.epoch, seq=seq)

    def _mapped(self, epoch: int, seq: int) -> _Renumbered:
        mapped = self._turn.get(epoch)
        if mapped is None:
            minted = self._clock()
            self.latest = minted
            # Records of one epoch come in seq order; a lower one later (a record the
            # broker refused and published again) was already seen, so stays >= 1.
            mapped = self._turn[epoch] = _Renumbered(minted, seq - 1)
        return mapped

    def _gap(self, record: Record, epoch: int, seq: int, fields: dict[str, object]) -> Record:
        previous, last_seq = fields.get("previous_epoch"), fields.get("last_seq")
        if isinstance(previous, int) and isinstance(last_seq, int):
            before = self._turn.get(previous)
            if before is not None:
                fields = fields | {
                    "previous_epoch": before.epoch,
                    "last_seq": last_seq - before.offset,
                }
            else:
                # Nothing of that connection was published in this turn (the other member
                # had): its numbers were never seen under this member's name.
                fields = fields | {"previous_epoch": 0, "last_seq": 0}
        rebuilt = encode_status(epoch, seq, record.received_at, BridgeStatus.GAP.value, fields)
        return decode(rebuilt)
