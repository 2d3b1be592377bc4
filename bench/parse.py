"""Parser throughput: the project's AmiParser against a readuntil-and-split baseline.

Generates a stream of realistic AMI events (8 to 20 headers each, Asterisk 22 shapes),
feeds it in 64 KiB chunks and prints events/s for:

* ``AmiParser.feed``: framing, typing, limits; headers are split on first access;
* the same with every message's headers materialised (what a consumer of every field pays);
* the baseline: ``StreamReader.readuntil(b"\\r\\n\\r\\n")`` and a split into a dict.

It then feeds a 2.8 MB ``Response: Follows`` reply (Asterisk 13 and older; CLI text with
a blank line every few lines) in 256-byte reads, against the same reply fed whole: a
parser whose searches resume where they stopped costs a constant per read, not a rescan.

Run: ``python bench/parse.py [--events N] [--repeat R]``.  The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable

from bridge.ami.protocol import AmiParser, Message

CHUNK = 64 * 1024
SNAPSHOT = [
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
]
EVENTS = {
    "Newchannel": ("call", []),
    "Newstate": ("call", []),
    "Newexten": ("dialplan", ["Extension", "Application", "AppData"]),
    "VarSet": ("dialplan", ["Variable", "Value"]),
    "Hangup": ("call", ["Cause", "Cause-txt"]),
    "PeerStatus": ("system", None),
}


def _value(rng: random.Random, key: str, call: int) -> str:
    values = {
        "Channel": f"PJSIP/{100 + call % 50}-{call:08x}",
        "ChannelState": "6",
        "ChannelStateDesc": "Up",
        "CallerIDNum": str(100 + call % 50),
        "CallerIDName": rng.choice(["<unknown>", "Alice", "Bob Müller"]),
        "Priority": str(rng.randint(1, 9)),
        "Uniqueid": f"1795675153.{call}",
        "Linkedid": f"1795675153.{call - call % 2}",
        "Cause": "16",
        "Cause-txt": "Normal Clearing",
        "AppData": "PJSIP/200,30,tT",
    }
    return values.get(key, rng.choice(["", "default", "en", "from-internal", "Dial", "200"]))


def generate_stream(count: int, seed: int = 7) -> bytes:
    """``count`` events of 8 to 20 headers, CRLF framed, behind a banner."""
    rng = random.Random(seed)
    out = ["Asterisk Call Manager/11.0.0\r\n"]
    names = list(EVENTS)
    for n in range(count):
        name = rng.choice(names)
        klass, extra = EVENTS[name]
        headers = [("Event", name), ("Privilege", f"{klass},all")]
        headers.append(("Timestamp", f"{1795675153 + n // 1000}.{n % 1000:06d}"))
        if extra is None:
            headers += [("ChannelType", "PJSIP"), ("Peer", f"PJSIP/{100 + n % 50}")]
            headers += [("PeerStatus", "Reachable"), ("Time", str(rng.randint(1, 90)))]
            headers += [("Address", "127.0.0.1:5060"), ("Port", "5060")]
        else:
            # 8..20 headers: a prefix of the snapshot plus the event's own fields.
            keep = rng.randint(max(3, 5 - len(extra)), min(len(SNAPSHOT), 17 - len(extra)))
            headers += [(k, _value(rng, k, n)) for k in SNAPSHOT[:keep]]
            headers += [(k, _value(rng, k, n)) for k in extra]
        out.append("".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n")
    return "".join(out).encode()


def run_parser(stream: bytes, materialise: bool) -> int:
    parser = AmiParser()
    count = 0
    for start in range(0, len(stream), CHUNK):
        for item in parser.feed(stream[start : start + CHUNK]):
            if isinstance(item, Message):
                count += 1
                if materialise:
                    item.headers  # noqa: B018 - forces the split being measured
    return count


async def _baseline(stream: bytes) -> int:
    reader = asyncio.StreamReader(limit=4 * 1024 * 1024)
    reader.feed_data(stream)
    reader.feed_eof()
    await reader.readuntil(b"\r\n")  # the banner
    count = 0
    while True:
        try:
            block = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return count
        message: dict[str, str] = {}
        for line in block[:-4].decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(": ")
            message[key] = value
        count += 1


def run_baseline(stream: bytes) -> int:
    return asyncio.run(_baseline(stream))


def legacy_reply(size: int) -> bytes:
    """A ``Response: Follows`` reply of about ``size`` bytes, blank lines in its text."""
    line = b"[ Context 'ctx%d' created by 'pbx_config' ]\n  's' => 1. Answer()\n\n"
    text = b"".join(line % i for i in range(size // len(line)))
    head = b"Response: Follows\r\nPrivilege: Command\r\nActionID: dialplan\r\n"
    return head + text + b"--END COMMAND--\r\n\r\n"


def run_reads(data: bytes, size: int) -> int:
    parser = AmiParser(expect_banner=False)
    return sum(len(parser.feed(data[pos : pos + size])) for pos in range(0, len(data), size))


def measure_seconds(fn: Callable[[], int], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        if fn() != 1:
            raise SystemExit("the legacy reply did not parse into one item")
        best = min(best, time.process_time() - start)
    return best


def measure(label: str, fn: Callable[[], int], repeat: int, expected: int) -> float:
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        count = fn()
        rates.append(count / (time.perf_counter() - start))
        if count != expected:
            raise SystemExit(f"{label}: parsed {count} events, expected {expected}")
    best = max(rates)
    print(f"{label:<42} {best:>12,.0f} events/s  (median {statistics.median(rates):,.0f})")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    stream = generate_stream(args.events)
    print(f"{args.events:,} events, {len(stream) / 2**20:.1f} MiB, {CHUNK // 1024} KiB chunks")
    n = args.events
    ours = measure(
        "AmiParser.feed (headers on access)", lambda: run_parser(stream, False), args.repeat, n
    )
    full = measure(
        "AmiParser.feed + every header split", lambda: run_parser(stream, True), args.repeat, n
    )
    base = measure(
        "baseline readuntil + split into dict", lambda: run_baseline(stream), args.repeat, n
    )
    print(f"speed-up over baseline: {ours / base:.2f}x (with headers split: {full / base:.2f}x)")
    reply = legacy_reply(2_800_000)
    whole = measure_seconds(lambda: run_reads(reply, len(reply)), args.repeat)
    reads = measure_seconds(lambda: run_reads(reply, 256), args.repeat)
    print(
        f"{len(reply) / 1e6:.1f} MB legacy reply: {reads * 1000:.1f} ms CPU in 256-byte reads, "
        f"{whole * 1000:.1f} ms fed whole"
    )
    print(
        json.dumps(
            {
                "events_per_s": round(ours),
                "baseline_events_per_s": round(base),
                "with_headers_events_per_s": round(full),
                "legacy_reply_256_byte_reads_ms": round(reads * 1000, 1),
                "legacy_reply_whole_ms": round(whole * 1000, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
