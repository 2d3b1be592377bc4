"""The PBX-wide identity of an AMI event: the same on every session that read it.

Two bridges on one PBX each hold their own AMI session; Asterisk writes the same bytes
to both, in the same order.  An identity derived from those bytes alone lines their
journals up without any talk between them:

* ``sn:<n>`` when the event carries Asterisk's ``SequenceNumber`` header
  (``manager.conf`` ``debug = on``): one counter shared by every session;
* otherwise ``fp:<blake2b-128 of the raw message>:<k>``, ``k`` counting the earlier
  byte-identical events among the last :data:`WINDOW` events of the stream, so two
  identical events (no ``Timestamp``, say) still get distinct identities.

Pure and synchronous, so the reader (which may run in a thread of its own) computes it
as it journals.  The window is counted in events, not seconds, so two members that read
the same stream count alike; a member that joined later counts alike once it has read
:data:`WINDOW` events.
"""

from __future__ import annotations

from collections import deque
from hashlib import blake2b

__all__ = ["WINDOW", "EventIds"]

#: Events over which byte-identical ones are told apart by their occurrence count.
WINDOW = 4096
_SEQUENCE = b"\nSequenceNumber: "


class EventIds:
    """Hands out the identity of each event of one AMI stream, in stream order."""

    def __init__(self, window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._window = window
        self._recent: deque[bytes] = deque()
        self._counts: dict[bytes, int] = {}

    def next(self, raw: bytes) -> str:
        """The identity of the event whose raw header bytes are ``raw``."""
        at = raw.find(_SEQUENCE)
        if at >= 0:
            start = at + len(_SEQUENCE)
            end = raw.find(b"\n", start)
            number = raw[start:] if end < 0 else raw[start:end]
            if number.isdigit():
                return "sn:" + number.decode("ascii")
        digest = blake2b(raw, digest_size=16).digest()
        counts = self._counts
        seen = counts.get(digest, 0)
        counts[digest] = seen + 1
        recent = self._recent
        recent.append(digest)
        if len(recent) > self._window:
            old = recent.popleft()
            left = counts[old] - 1
            if left:
                counts[old] = left
            else:
                del counts[old]
        return f"fp:{digest.hex()}:{seen}"
