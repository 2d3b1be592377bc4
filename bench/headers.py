"""The CloudEvents headers' cost on the publish hot path: frames encoded with and without.

Approach
--------
30,000 simulated AMI events are rendered by the bridge's :class:`Renderer` (so every
message carries the ``cloudEvents_*`` headers); a copy of each message without those
headers is the baseline.  :class:`PublishEncoder` encodes both lists, alternately, three
rounds each (best round kept), in the same run: frames per second and bytes per message.
Rendering itself (validate, encode the body, build the headers) is timed too, as the
budget the header encoding is part of.  The last line printed is one JSON object.

    python bench/headers.py [--events 30000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from bridge.ami.protocol import AmiParser, Event, serialize
from bridge.ami.traffic import TrafficGenerator
from bridge.events.cloudevents import HEADER_PREFIX
from bridge.publish.amqp_frames import PublishEncoder
from bridge.publish.message import OutgoingMessage
from bridge.publish.records import decode, encode_event
from bridge.publish.routing import Router
from bridge.service.render import Renderer


def encode_rate(encoder: PublishEncoder, messages: list[OutgoingMessage]) -> tuple[float, float]:
    """(messages/s, bytes a message) of encoding ``messages`` once."""
    out: list[bytes] = []
    started = time.perf_counter()
    for message in messages:
        encoder.encode(message, out)
    elapsed = time.perf_counter() - started
    return len(messages) / elapsed, sum(map(len, out)) / len(messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    args = parser.parse_args()
    traffic = TrafficGenerator(3)
    wire = b"".join(serialize(traffic.next_event()) for _ in range(args.events))
    now = time.time()
    items = AmiParser(expect_banner=False).feed(wire)
    records = [
        encode_event(1, seq, now + seq / 1000, item)
        for seq, item in enumerate(items, 1)
        if isinstance(item, Event)
    ]
    renderer = Renderer(Router("pbx1"))
    started = time.perf_counter()
    with_ce = [renderer.render(decode(record)).message for record in records]
    render_rate = len(records) / (time.perf_counter() - started)
    without_ce = [
        dataclasses.replace(
            m, headers={k: v for k, v in m.headers.items() if not k.startswith(HEADER_PREFIX)}
        )
        for m in with_ce
    ]
    encoder = PublishEncoder(1, "ami.events", 131_072)
    best: dict[str, tuple[float, float]] = {}
    for _ in range(3):
        for name, messages in (("without", without_ce), ("with", with_ce)):
            rate, size = encode_rate(encoder, messages)
            if rate > best.get(name, (0.0, 0.0))[0]:
                best[name] = (rate, size)
    (plain, plain_size), (cloud, cloud_size) = best["without"], best["with"]
    extra_us = 1e6 / cloud - 1e6 / plain
    print(f"render (validate, body, headers): {render_rate:,.0f} msgs/s", flush=True)
    print(f"encode without CloudEvents headers: {plain:,.0f} msgs/s, {plain_size:.0f} bytes")
    print(
        f"encode with CloudEvents headers: {cloud:,.0f} msgs/s, {cloud_size:.0f} bytes "
        f"(+{extra_us:.1f} us and +{cloud_size - plain_size:.0f} bytes a message)"
    )
    figures = {
        "render_msgs_per_s": round(render_rate),
        "encode_msgs_per_s": round(plain),
        "encode_with_cloudevents_msgs_per_s": round(cloud),
        "extra_us_per_message": round(extra_us, 2),
        "extra_bytes_per_message": round(cloud_size - plain_size),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
