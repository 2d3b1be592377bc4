"""Reading first: the event loop steps aside while a reader thread is behind its socket.

Why
---
Every reader thread shares the interpreter's lock with the event loop.  When both want
to run, CPython hands the lock back and forth every switch interval, so a reader gets
about half of what the process is given; on a host whose CPUs other work keeps busy that
half can be less than a burst needs (30,000 events/s), and a reader that falls behind
fills the PBX's socket buffers until Asterisk's ``writetimeout`` drops the session.
Reading is the one thing that cannot be done later: publishing can, from the journal.

So a reader that finds more waiting in the kernel than one read takes (a full peek) says
it is *behind*, and the loop's heavy work (rendering and publishing, in
:meth:`ReadPriority.step_aside`) pauses while any reader is: the loop thread sleeps in
its selector, which leaves the lock to the readers, and everything else on the loop
(confirms, probes, heartbeats) goes on.  The pause is bounded per call, so publishing
still makes progress on a host that can never quite keep up.

Probes come next: while the probes' thread (:mod:`bridge.service.http`) answers a request
it has read, the heavy work steps aside too, so a ``/metrics`` page is written in one go
instead of in turns with rendering; an answer takes a few milliseconds.

The lock is process-wide, so is this: readers of every PBX report to
:data:`read_priority`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

__all__ = ["ReadPriority", "read_priority"]

#: How often the loop looks again while a reader is behind.
_POLL = 0.002


class ReadPriority:
    """How many readers are behind; the loop side waits for them to catch up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._behind = 0
        self._answering = 0
        #: Seconds the loop has stepped aside, in all (for metrics and benchmarks).
        self.yielded = 0.0

    def set_behind(self, behind: bool) -> None:
        """A reader's state changed (call on changes only, from the reader thread)."""
        with self._lock:
            self._behind += 1 if behind else -1

    @property
    def readers_behind(self) -> int:
        return self._behind

    @property
    def probes_answering(self) -> int:
        return self._answering

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Around answering a probe (any thread): the heavy work waits meanwhile."""
        with self._lock:
            self._answering += 1
        try:
            yield
        finally:
            with self._lock:
                self._answering -= 1

    async def step_aside(self, longest: float = 0.05) -> float:
        """Sleep while a reader is behind, up to ``longest`` s; the seconds slept."""
        if not (self._behind or self._answering):
            return 0.0
        began = time.monotonic()
        deadline = began + longest
        # Set by other threads: polled, as no event of this loop can say so.
        while (self._behind or self._answering) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_POLL)
        waited = time.monotonic() - began
        self.yielded += waited
        return waited


#: The process's one instance: readers report to it, pipelines step aside for it.
read_priority = ReadPriority()
