"""The cost of reading with MSG_PEEK (peek, frame, consume, take off) against one recv.

Approach
--------
A child process writes the same AMI stream (``--events`` events of a realistic size) over
loopback TCP as fast as the reader takes it, twice per round: once to
:class:`~bridge.ami.reader.SocketReader` (the product's reader thread: poll, peek, parse,
hand on, take the bytes off with ``MSG_TRUNC``), once to a plain loop that ``recv``\\ s
into the same parser and hands on the same items (what a reader without the peek does).
Both hand items to a callback that only counts them, so the figures are the read path's
own: events/s and microseconds per read.  Rounds alternate the two, so the host's load
falls on both alike; the best round of each is printed.

    python bench/reader.py [--events 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import select
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.ami.protocol import AmiParser, Item, serialize
from bridge.ami.reader import DEFAULT_PEEK_SIZE, SocketReader

_BANNER = b"Asterisk Call Manager/5.0.1\r\n"


def _stream(events: int) -> bytes:
    one = [
        ("Event", "Newexten"),
        ("Privilege", "dialplan,all"),
        ("Channel", "PJSIP/2001-0000001a"),
        ("ChannelState", "6"),
        ("ChannelStateDesc", "Up"),
        ("CallerIDNum", "2001"),
        ("CallerIDName", "Front desk"),
        ("ConnectedLineNum", "<unknown>"),
        ("Language", "en"),
        ("AccountCode", ""),
        ("Context", "from-internal"),
        ("Exten", "6001"),
        ("Priority", "3"),
        ("Uniqueid", "1700000000.101"),
        ("Linkedid", "1700000000.100"),
        ("Extension", "6001"),
        ("Application", "Dial"),
        ("AppData", "PJSIP/6001,30,tT"),
    ]
    return _BANNER + b"".join(serialize([*one, ("Seq", str(n))]) for n in range(events))


def _serve(port_out: multiprocessing.connection.Connection, data: bytes, rounds: int) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port_out.send(listener.getsockname()[1])
        for _ in range(rounds):
            conn, _ = listener.accept()
            with conn:
                conn.sendall(data)


def _plain(sock: socket.socket, count: list[int], reads: list[int]) -> None:
    """What a reader without the peek does: recv into the parser, hand on."""
    parser = AmiParser()
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    while True:
        poller.poll()
        try:
            data = sock.recv(DEFAULT_PEEK_SIZE)
        except BlockingIOError:
            continue
        reads[0] += 1
        if not data:
            count[0] += len(parser.feed_eof())
            return
        count[0] += len(parser.feed(data))


def _run_peek(sock: socket.socket) -> tuple[int, int]:
    count = [0]
    reads = [0]
    done = threading.Event()

    def consume(items: list[Item]) -> None:
        count[0] += len(items)
        reads[0] += 1

    reader = SocketReader(
        sock, AmiParser(), consume=consume, ended=lambda *_: done.set(), peer="bench"
    )
    reader.start()
    done.wait()
    return count[0], reads[0]


def _run_plain(sock: socket.socket) -> tuple[int, int]:
    count, reads = [0], [0]
    thread = threading.Thread(target=_plain, args=(sock, count, reads))
    thread.start()
    thread.join()
    return count[0], reads[0]


async def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = _stream(args.events)
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(theirs, data, 2 * args.rounds))
    server.start()
    port = ours.recv()
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.rounds):
        for name, run in (("peek + consume", _run_peek), ("single recv", _run_plain)):
            sock = asyncio.run(_connect(port))
            started = time.perf_counter()
            items, reads = run(sock)
            elapsed = time.perf_counter() - started
            sock.close()
            assert items == args.events + 1, (name, items)  # the banner too
            rate, per_read = args.events / elapsed, 1e6 * elapsed / max(1, reads)
            if name not in best or rate > best[name][0]:
                best[name] = (rate, per_read)
    server.join()
    print(f"{args.events:,} events of {len(data) // args.events} bytes, best of {args.rounds}:")
    for name, (rate, per_read) in best.items():
        print(f"  {name:15} {rate:10,.0f} events/s  {per_read:8.1f} us per read")
    ratio = best["peek + consume"][0] / best["single recv"][0]
    print(f"  peek + consume runs at {ratio:.2f}x the rate of a single recv")


if __name__ == "__main__":
    main()
