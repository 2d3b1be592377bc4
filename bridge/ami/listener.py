"""What an AMI session reports, and in which order: the listener contract.

Approach
--------
Ordering is the contract with the listener: ``on_connected(info)`` comes first, then
every item read on that connection through ``on_items(epoch, items)`` in wire order
(including ``FullyBooted`` and anything else read while logging in, which is held until
the epoch exists), then ``on_disconnected(info)``.  :class:`ItemRouter` is the
per-connection ``on_items`` callback that does the holding.
"""

from __future__ import annotations

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
    at: float


class SessionListener(Protocol):
    """Told of every connect, every batch of items and every disconnect, in that order.

    All three are called synchronously on the event loop and must return quickly: the
    socket is not read while they run.
    """

    def on_connected(self, info: Connected) -> None: ...

    def on_items(self, epoch: int, items: list[StreamItem]) -> None: ...

    def on_disconnected(self, info: Disconnected) -> None: ...


class ItemRouter:
    """Per-connection ``on_items`` callback: holds items until the epoch is known."""

    def __init__(self, listener: SessionListener) -> None:
        self._listener = listener
        self._epoch: int | None = None
        self._held: list[StreamItem] = []

    def __call__(self, items: list[StreamItem]) -> None:
        if self._epoch is None:
            self._held.extend(items)
        else:
            self._listener.on_items(self._epoch, items)

    def start(self, epoch: int) -> None:
        """Pass on the held items, then every later batch, as items of ``epoch``."""
        self._epoch = epoch
        held, self._held = self._held, []
        if held:
            self._listener.on_items(epoch, held)

    @property
    def held(self) -> int:
        """How many items wait for the epoch."""
        return len(self._held)
