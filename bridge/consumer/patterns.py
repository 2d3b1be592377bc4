"""AMQP topic patterns matched on the client side, exactly as a topic exchange matches them.

A stream is read whole (RabbitMQ's AMQP 0-9-1 interface filters nothing), so a replay
filters by routing key itself.  The rules are the topic exchange's: a pattern and a key
are words separated by ``.``; ``*`` matches exactly one word, ``#`` zero or more; any
other word matches itself only (case-sensitive, and the bridge's keys are lower case).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

__all__ = ["TopicFilter", "topic_matches"]


def topic_matches(pattern: str, key: str) -> bool:
    """True when the topic ``pattern`` matches the routing ``key``."""
    return _matches(tuple(pattern.split(".")), tuple(key.split(".")))


@lru_cache(maxsize=4096)
def _matches(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        # ``#`` takes no word, or one word and stays for the next.
        return _matches(rest, words) or (bool(words) and _matches(pattern, words[1:]))
    if not words:
        return False
    return (head in ("*", words[0])) and _matches(rest, words[1:])


class TopicFilter:
    """Matches routing keys against several patterns (any one suffices); results are cached.

    The bridge's keys repeat (``{server}.{class}.{event}``), so after the first message of
    each kind a match is one dictionary look-up.
    """

    __slots__ = ("_cache", "_everything", "patterns")

    _MAX_CACHED = 8192

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        if not self.patterns:
            raise ValueError("at least one routing pattern is needed")
        self._everything = "#" in self.patterns
        self._cache: dict[str, bool] = {}

    def __call__(self, key: str) -> bool:
        if self._everything:
            return True
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= self._MAX_CACHED:
                self._cache.clear()
            hit = self._cache[key] = any(topic_matches(p, key) for p in self.patterns)
        return hit

    def __repr__(self) -> str:
        return f"TopicFilter({list(self.patterns)!r})"
