"""Benchmark: validate + encode throughput of one typical channel event, on one core.

Usage::

    python bench/validate.py [--event Newchannel] [--seconds 3]

The event is the first one of that name in the Asterisk 22 capture
``tests/fixtures/captures/calls-basic.ami`` (a ``Newchannel`` there has 17 headers).
Three figures are measured, each for ``--seconds`` (best of three rounds):

* ``events_per_s``: ``encode(validate(event), ...)``, the bridge's per-event work;
* ``floor_events_per_s``: ``orjson.dumps(dict(event.headers))``, the cheapest possible
  JSON of the same headers, the floor any typed pipeline is compared with;
* ``capture_events_per_s``: the same pipeline over every event of the capture (a mix
  with long CEL and VarSet events).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from bridge.ami.protocol import AmiParser, Event
from bridge.events import encode, validate

CAPTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/captures/calls-basic.ami"


def load_events(path: Path = CAPTURE) -> list[Event]:
    items = AmiParser().feed(path.read_bytes()) + AmiParser().feed_eof()
    return [item for item in items if isinstance(item, Event)]


def rate(work: Callable[[], int], seconds: float) -> float:
    """Items per second of ``work`` (which returns how many items it did), best of 3."""
    best = 0.0
    for _ in range(3):
        done, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while (now := time.perf_counter()) < deadline:
            done += work()
        best = max(best, done / (now - start))
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--event", default="Newchannel", help="event name to time")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per figure")
    args = parser.parse_args(argv)

    events = load_events()
    event = next(e for e in events if e.name == args.event)
    batch = 1000
    clock = time.time

    def pipeline() -> int:
        for seq in range(batch):
            encode(validate(event), server="pbx1", epoch=1, seq=seq, received_at=clock())
        return batch

    def floor() -> int:
        for _ in range(batch):
            orjson.dumps(dict(event.headers))
        return batch

    def capture() -> int:
        for seq, item in enumerate(events):
            encode(validate(item), server="pbx1", epoch=1, seq=seq, received_at=clock())
        return len(events)

    print(f"event: {args.event} with {len(event.headers)} headers")
    figures = {
        "events_per_s": round(rate(pipeline, args.seconds)),
        "floor_events_per_s": round(rate(floor, args.seconds)),
        "capture_events_per_s": round(rate(capture, args.seconds)),
    }
    for name, value in figures.items():
        print(f"{name:>22}: {value:>10,}")
    print(orjson.dumps(figures).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
