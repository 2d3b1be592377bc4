"""Waiting in a test for state that no single event announces."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["eventually"]


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``predicate()`` holds; fail the test after ``within`` seconds."""
    async with asyncio.timeout(within):
        # Polling: the predicates look at counters and attributes other threads change.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
