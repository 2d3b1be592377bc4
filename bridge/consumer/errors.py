"""The one exception a consumer raises for broker trouble, with a message fit for operators."""

from __future__ import annotations

__all__ = ["ConsumerError"]


class ConsumerError(Exception):
    """The broker cannot be used: unreachable, refused us, or its topology does not fit.

    The message names the broker with its password masked.
    """
