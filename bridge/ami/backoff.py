"""Reconnect delays: capped exponential backoff with full jitter.

Approach: the delay before attempt ``n`` (counting from 0) is drawn uniformly from
``[0, min(cap, base * 2**n))``.  This is the "full jitter" scheme: a fleet of bridges
that lost the same Asterisk spreads its reconnects over the whole window instead of
arriving in waves, while the window itself still grows fast enough to stop a tight loop.

The arithmetic is a pure function so tests drive it with a fake random source; the small
:class:`Backoff` class only adds the attempt counter that a reconnect loop needs.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff", "full_jitter"]

# 2.0 ** 1024 overflows a float; long before that the cap has taken over anyway.
_MAX_EXPONENT = 1000


def full_jitter(
    attempt: int, *, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """The delay in seconds before retry number ``attempt`` (0 for the first retry).

    Returns ``rng() * min(cap, base * 2**attempt)``; ``rng`` must return a float in
    ``[0, 1)`` like :func:`random.random`.

    Raises:
        ValueError: ``attempt`` is negative, or ``base`` or ``cap`` is negative.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base < 0 or cap < 0:
        raise ValueError(f"base and cap must be >= 0, got base={base} cap={cap}")
    ceiling = min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT))
    return rng() * ceiling


class Backoff:
    """A retry counter that hands out :func:`full_jitter` delays.

    Call :meth:`next_delay` before each retry and :meth:`reset` once a connection has
    proved healthy, so the next outage starts again from short delays.

    Raises:
        ValueError: ``base`` or ``cap`` is negative.
    """

    def __init__(
        self, *, base: float, cap: float, rng: Callable[[], float] = random.random
    ) -> None:
        full_jitter(0, base=base, cap=cap, rng=lambda: 0.0)  # validates base and cap
        self.base = base
        self.cap = cap
        self._rng = rng
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """How many delays were handed out since the last :meth:`reset`."""
        return self._attempt

    def next_delay(self) -> float:
        """The delay before the next retry; each call widens the window until the cap."""
        delay = full_jitter(self._attempt, base=self.base, cap=self.cap, rng=self._rng)
        self._attempt += 1
        return delay

    def reset(self) -> None:
        """Start over from the shortest window."""
        self._attempt = 0

    def __repr__(self) -> str:
        return f"Backoff(base={self.base}, cap={self.cap}, attempt={self._attempt})"
