"""What an AMI session reports, and in which order: the listener contract.

Approach
--------
Ordering is the contract with the listener: ``on_connected(info)`` comes first, then
every item read on that connection through ``on_items(epoch, items)`` in wire order
(including ``FullyBooted`` and anything else read while logging in, which is held until
the epoch exists), then ``on_disconnected(info)``.  :class:`ItemRouter` is the
per-connection ``on_items`` and ``on_end`` callback that does the holding.

``on_connected`` runs on the event loop; ``on_items`` and ``on_disconnected`` run on the
connection's reader thread (``on_disconnected`` at the moment the reader saw the end),
except that items held during login and a connection that ended before the epoch
existed are passed on from the loop.  The router's lock keeps the three in order.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from bridge.ami.client import StreamItem
from bridge.ami.target import AmiTarget

__all__ = ["Connected", "Disconnected", "ItemRouter", "SessionListener"]


@dataclass(frozen=True, slots=True)
class Connected:
    """A login succeeded: a new epoch starts."""

    epoch: int
    target: AmiTarget
    #: The banner line (``Asterisk Call Manager/11.0.0``), ``None`` if the server sent none.
    banner: str | None
    #: The AMI version from the banner (``11.0.0``).
    ami_version: str | None
    #: Unix time of the login.
    at: float


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection of ``epoch`` ended."""

    epoch: int
    target: AmiTarget
    reason: str
    #: Unix time the reader saw the connection end.
    at: float
    #: Unix time of the last read that took bytes off the connection (``at`` if none).
    last_read_at: float


class SessionListener(Protocol):
    """Told of every connect, every batch of items and every disconnect, in that order.

    All three are called synchronously, ``on_items`` and ``on_disconnected`` on the
    reader thread, and must return quickly: the socket is not read while they run.
    """

    def on_connected(self, info: Connected) -> None: ...

    def on_items(self, epoch: int, items: list[StreamItem]) -> None: ...

    def on_disconnected(self, info: Disconnected) -> None: ...


class ItemRouter:
    """Per-connection ``on_items`` and ``on_end`` callback: holds until the epoch is known."""

    def __init__(self, listener: SessionListener, target: AmiTarget) -> None:
        self._listener = listener
        self._target = target
        self._lock = threading.Lock()
        self._epoch: int | None = None
        self._held: list[StreamItem] = []
        self._ended: tuple[str, float, float | None] | None = None
        self._reported = False

    def __call__(self, items: list[StreamItem]) -> None:
        with self._lock:
            if self._epoch is None:
                self._held.extend(items)
            else:
                self._listener.on_items(self._epoch, items)

    def end(self, reason: str, at: float, last_read_at: float | None) -> None:
        """The connection ended: tell the listener now, or once the epoch exists."""
        with self._lock:
            self._ended = (reason, at, last_read_at)
            if self._epoch is not None:
                self._report_end(self._epoch)

    def start(self, epoch: int) -> None:
        """Pass on the held items, then every later batch, as items of ``epoch``."""
        with self._lock:
            self._epoch = epoch
            held, self._held = self._held, []
            if held:
                self._listener.on_items(epoch, held)
            if self._ended is not None:
                self._report_end(epoch)

    def _report_end(self, epoch: int) -> None:
        assert self._ended is not None
        if not self._reported:
            self._reported = True
            reason, at, last_read_at = self._ended
            read_at = at if last_read_at is None else last_read_at
            self._listener.on_disconnected(Disconnected(epoch, self._target, reason, at, read_at))

    @property
    def held(self) -> int:
        """How many items wait for the epoch."""
        return len(self._held)
