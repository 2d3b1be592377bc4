"""The simulator's event source: events produced on schedule by a thread of their own.

Approach
--------
In Asterisk, events happen when calls do: the channel threads queue them whatever the
manager sessions are doing.  :class:`Producer` plays that part for the simulator.  Its
thread waits for the first login, then hands every event to ``sink`` as soon as the
schedule says it is due, in batches of what became due since the last look (a tick of
1 ms).  Nothing it does waits for a reader: ``sink`` only queues.

A schedule says which events are due ``elapsed`` seconds after the start:
:class:`RateSchedule` paces :class:`~bridge.ami.traffic.TrafficGenerator` at a fixed
rate, :class:`ReplaySchedule` plays a capture at the pace of its ``Timestamp:`` headers,
``speed`` times faster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from bridge.ami.capture import CapturedEvent
from bridge.ami.protocol import Header
from bridge.ami.traffic import TrafficGenerator

__all__ = ["Producer", "RateSchedule", "ReplaySchedule", "Schedule"]

log = logging.getLogger(__name__)

_TICK = 0.001
#: At most this many events in one batch, so the sessions' writers start early.
_MAX_BATCH = 2000


class Schedule(Protocol):
    def next_at(self) -> float | None:
        """Seconds after the start at which the next event is due; None when done."""

    def due(self, elapsed: float, limit: int) -> list[list[Header]]:
        """Up to ``limit`` events due ``elapsed`` seconds after the start, in order."""


class RateSchedule:
    """``rate`` generated events per second, for ``duration`` seconds (None: forever)."""

    def __init__(
        self,
        traffic: TrafficGenerator,
        rate: float,
        duration: float | None,
        lock: threading.Lock,
    ) -> None:
        self._traffic = traffic
        self._rate = rate
        self._duration = duration
        self._lock = lock
        self._produced = 0

    def next_at(self) -> float | None:
        at = (self._produced + 1) / self._rate
        if self._duration is not None and at > self._duration:
            return None
        return at

    def due(self, elapsed: float, limit: int) -> list[list[Header]]:
        if self._duration is not None:
            elapsed = min(elapsed, self._duration)
        count = min(limit, int(elapsed * self._rate) - self._produced)
        if count <= 0:
            return []
        self._produced += count
        with self._lock:  # the action handlers read the same channel model
            return [self._traffic.next_event() for _ in range(count)]


class ReplaySchedule:
    """The events of a capture at their recorded pace, ``speed`` times faster."""

    def __init__(self, events: Sequence[CapturedEvent], speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self._events = events
        self._speed = speed
        self._next = 0

    def next_at(self) -> float | None:
        if self._next >= len(self._events):
            return None
        return self._events[self._next].offset / self._speed

    def due(self, elapsed: float, limit: int) -> list[list[Header]]:
        events, start = self._events, self._next
        end = start
        stop = min(len(events), start + limit)
        while end < stop and events[end].offset / self._speed <= elapsed:
            end += 1
        self._next = end
        return [list(e.headers) for e in events[start:end]]


class Producer:
    """Runs a schedule in a thread from the first :meth:`begin` until it is done or stopped.

    Args:
        schedule: what is due when.
        sink: called in the thread with each batch of due events.
        what: how the log line at the end names the traffic.
    """

    def __init__(
        self,
        schedule: Schedule,
        sink: Callable[[list[list[Header]]], None],
        what: str,
    ) -> None:
        self._schedule = schedule
        self._sink = sink
        self._what = what
        self._begun = threading.Event()
        self._stopped = threading.Event()
        #: The longest an event waited past its due time before it was queued, in seconds.
        self.max_lag = 0.0
        self.produced = 0
        self._thread = threading.Thread(target=self._run, name="ami-simulator-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def begin(self) -> None:
        """Start the clock (the first login); later calls change nothing."""
        self._begun.set()

    def stop(self) -> None:
        self._stopped.set()
        self._begun.set()
        self._thread.join(5)

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def _run(self) -> None:
        self._begun.wait()
        began = time.monotonic()
        schedule = self._schedule
        while not self._stopped.is_set():
            at = schedule.next_at()
            if at is None:
                log.info("AMI simulator: %s done, %d events", self._what, self.produced)
                return
            elapsed = time.monotonic() - began
            if at > elapsed:
                self._stopped.wait(max(_TICK, at - elapsed))
                continue
            self.max_lag = max(self.max_lag, elapsed - at)
            events = schedule.due(elapsed, _MAX_BATCH)
            self.produced += len(events)
            self._sink(events)
