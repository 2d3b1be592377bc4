"""Reading a raw AMI capture (``.ami``, or gzip-compressed ``.ami.gz``) with its schedule.

A capture holds the bytes one AMI session read: the banner, responses and events.  The
``Timestamp:`` header Asterisk adds with ``timestampevents = yes`` (seconds, with
microseconds) says when each event was produced; an event without one (``FullyBooted``,
the items of an action's list) is taken to come right after the one before.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from bridge.ami.protocol import AmiParser, Event, Header

__all__ = ["CapturedEvent", "read_capture", "read_capture_bytes"]


@dataclass(frozen=True, slots=True)
class CapturedEvent:
    #: Seconds after the capture's first timestamped event.
    offset: float
    headers: tuple[Header, ...]


def read_capture_bytes(path: Path) -> bytes:
    """The raw bytes of ``path``, decompressed when its name ends in ``.gz``.

    Raises:
        OSError: the file cannot be read or is not valid gzip.
    """
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


def read_capture(path: Path) -> list[CapturedEvent]:
    """Every event of the capture at ``path``, in file order, with its offset.

    Raises:
        OSError: see :func:`read_capture_bytes`.
    """
    parser = AmiParser()
    data = read_capture_bytes(path)
    events = [i for i in parser.feed(data) + parser.feed_eof() if isinstance(i, Event)]
    first: float | None = None
    offset = 0.0
    captured = []
    for event in events:
        stamp = _timestamp(event)
        if stamp is not None:
            if first is None:
                first = stamp
            # Never backwards: Asterisk stamps before queueing, so two threads may swap.
            offset = max(offset, stamp - first)
        captured.append(CapturedEvent(offset, event.headers))
    return captured


def _timestamp(event: Event) -> float | None:
    try:
        return float(event.get("Timestamp") or "")
    except ValueError:
        return None
