"""Keeping a journal bounded: its limits, and reports of what they dropped.

Two limits hold: ``max_bytes`` on the bytes of unacked frames and ``max_age`` on the age of
the oldest unacked record.  Past either, the overflow policy decides who loses:

``drop_oldest``
    the oldest unacked records are dropped, as if acked;
``drop_newest``
    new records are refused: they get their ids, which are never reused, but are not
    written.

Every drop is reported exactly once, as a :class:`Dropped` range.  Reports wait, merged
per reason, until the owner collects them, so a long outage yields one report per reason,
not one per record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from bridge.publish._frames import HEADER_SIZE

__all__ = ["DropReason", "DropReports", "Dropped", "Limits", "OverflowPolicy"]

OverflowPolicy = Literal["drop_oldest", "drop_newest"]


class DropReason(StrEnum):
    MAX_BYTES = "max_bytes"
    MAX_AGE = "max_age"
    #: The disk could not be written and the memory buffer was full.
    MEMORY_FULL = "memory_full"
    #: A record found damaged on disk (its ids are 0 when they cannot be known).
    DAMAGED = "damaged"


@dataclass(frozen=True, slots=True)
class Dropped:
    """``count`` records with ids from ``first_id`` to ``last_id`` were dropped.

    The range can hold ids that were acked or dropped for the other reason, so ``count``
    is the exact number.
    """

    count: int
    first_id: int
    last_id: int
    reason: DropReason

    def merged(self, other: Dropped) -> Dropped:
        """One report covering both (ids of 0, unknown, are left out of the range)."""
        known = [d for d in (self, other) if d.first_id] or [self]
        first_id = min(d.first_id for d in known)
        last_id = max(d.last_id for d in known)
        return Dropped(self.count + other.count, first_id, last_id, self.reason)


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds on a journal's unacked records."""

    max_bytes: int
    max_age: float | None

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, not {self.max_bytes}")
        if self.max_age is not None and self.max_age <= 0:
            raise ValueError(f"max_age must be > 0 or None, not {self.max_age}")

    def over_size(self, pending_bytes: int) -> bool:
        return pending_bytes > self.max_bytes

    def too_old(self, oldest_appended_at: Callable[[], float | None], now: float) -> bool:
        """Whether the oldest record is past ``max_age`` (asked only when there is one)."""
        if self.max_age is None:
            return False
        appended_at = oldest_appended_at()
        return appended_at is not None and now - appended_at > self.max_age

    def room_for(self, payloads: Sequence[bytes], pending_bytes: int) -> int:
        """How many of ``payloads``, from the first, fit beside ``pending_bytes``."""
        room = self.max_bytes - pending_bytes
        for count, payload in enumerate(payloads):
            room -= HEADER_SIZE + len(payload)
            if room < 0:
                return count
        return len(payloads)


class DropReports:
    """Drops not collected yet, merged per reason."""

    def __init__(self) -> None:
        self._waiting: dict[DropReason, Dropped] = {}

    def add(self, dropped: Dropped) -> None:
        earlier = self._waiting.get(dropped.reason)
        self._waiting[dropped.reason] = dropped if earlier is None else earlier.merged(dropped)

    def collect(self) -> list[Dropped]:
        """Every waiting report, by first id; none wait afterwards."""
        reports = sorted(self._waiting.values(), key=lambda dropped: dropped.first_id)
        self._waiting.clear()
        return reports
