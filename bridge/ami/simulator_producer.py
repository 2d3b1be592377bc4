"""The simulator's event source: events produced on schedule by a thread of their own.

Approach
--------
In Asterisk, events happen when calls do: the channel threads queue them whatever the
manager sessions are doing.  :class:`Producer` plays that part for the simulator.  Its
thread waits for the first login, then hands every event to ``sink`` as soon as the
schedule says it is due, in batches of what became due since the last look (a tick of
1 ms).  Nothing it does waits for a reader: ``sink`` only queues.

A schedule says which events are due ``elapsed`` seconds after the start, each already
an :class:`Encoded` event (its mask, and its bytes split where ``SequenceNumber`` goes):
:class:`RateSchedule` paces :class:`~bridge.ami.traffic.TrafficGenerator` at a fixed
rate and encodes as it goes; :class:`ReplaySchedule` plays a capture (or any events
given with their offsets) at the pace of its ``Timestamp:`` headers, ``speed`` times
faster, encoded once up front.  Generating and encoding an event costs about 80 us in
CPython, so live generation tops out near 10,000 events/s on one core: a faster burst
is given as events to replay (:func:`pregenerate`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from bridge.ami.capture import CapturedEvent
from bridge.ami.event_mask import class_mask
from bridge.ami.protocol import Header, serialize
from bridge.ami.traffic import TrafficGenerator

__all__ = [
    "Encoded",
    "Producer",
    "RateSchedule",
    "ReplaySchedule",
    "Schedule",
    "encode",
    "pregenerate",
]

log = logging.getLogger(__name__)

_TICK = 0.001
#: At most this many events in one batch, so the sessions' writers start early.
_MAX_BATCH = 2000


#: An event ready to send: its class mask, the bytes up to where ``SequenceNumber``
#: goes (after ``Event``, ``Privilege`` and ``Timestamp``, as manager.c writes it) and
#: the rest.
Encoded = tuple[int, bytes, bytes]

_PREFIX = ("event", "privilege", "timestamp")


def encode(event: Sequence[Header]) -> Encoded:
    """``event`` encoded once, split where a ``SequenceNumber`` would go.

    Raises:
        LocalProtocolError: a header cannot be encoded (see ``serialize``).
    """
    at = 0
    while at < len(event) and at < len(_PREFIX) and event[at][0].lower() == _PREFIX[at]:
        at += 1
    privilege = next((v for k, v in event if k.lower() == "privilege"), "")
    head = serialize(event[:at])[:-2]  # without the blank line that ends a message
    return class_mask(privilege), head, serialize(event[at:])


def pregenerate(traffic: TrafficGenerator, rate: float, duration: float) -> list[CapturedEvent]:
    """``rate * duration`` generated events with their offsets, to replay at full rate."""
    count = int(rate * duration)
    return [CapturedEvent(n / rate, tuple(traffic.next_event())) for n in range(1, count + 1)]


class Schedule(Protocol):
    def next_at(self) -> float | None:
        """Seconds after the start at which the next event is due; None when done."""

    def due(self, elapsed: float, limit: int) -> list[Encoded]:
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

    def due(self, elapsed: float, limit: int) -> list[Encoded]:
        if self._duration is not None:
            elapsed = min(elapsed, self._duration)
        count = min(limit, int(elapsed * self._rate) - self._produced)
        if count <= 0:
            return []
        self._produced += count
        with self._lock:  # the action handlers read the same channel model
            events = [self._traffic.next_event() for _ in range(count)]
        return [encode(event) for event in events]


class ReplaySchedule:
    """The events of a capture at their recorded pace, ``speed`` times faster."""

    def __init__(self, events: Sequence[CapturedEvent], speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self._offsets = [e.offset / speed for e in events]
        self._encoded = [encode(e.headers) for e in events]
        self._next = 0

    def next_at(self) -> float | None:
        if self._next >= len(self._offsets):
            return None
        return self._offsets[self._next]

    def due(self, elapsed: float, limit: int) -> list[Encoded]:
        offsets, start = self._offsets, self._next
        end = start
        stop = min(len(offsets), start + limit)
        while end < stop and offsets[end] <= elapsed:
            end += 1
        self._next = end
        return self._encoded[start:end]


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
        sink: Callable[[list[Encoded]], None],
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
