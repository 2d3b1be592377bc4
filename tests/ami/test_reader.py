"""The reader thread over real loopback TCP: peek framing, the kernel-held tail, TLS, and
reading that goes on while the event loop is blocked."""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import random
import socket
import ssl
import struct
import termios
import threading
import time
from pathlib import Path

import pytest
import trustme

from bridge.ami.client import AmiConnection, ConnectionOptions, StreamItem, as_stream_item
from bridge.ami.protocol import AmiParser, Banner, Event, Response, serialize
from bridge.ami.reader import DEFAULT_PEEK_SIZE, fixed_receive_buffer
from bridge.ami.target import parse_ami_url
from tests.support.polling import eventually

from .fake_server import FakeAmiServer
from .framing import Described, describe

QUIET = ConnectionOptions(ping_interval=None, connect_timeout=2.0, banner_timeout=2.0)
FIXTURES = Path(__file__).parent.parent / "fixtures"
BANNER = b"Asterisk Call Manager/5.0.1\r\n"


class Collector:
    """``on_items`` that records every batch and when it came, on the reader thread."""

    def __init__(self) -> None:
        self.items: list[StreamItem] = []
        self.times: list[float] = []
        self.threads: set[int] = set()

    def __call__(self, items: list[StreamItem]) -> None:
        self.items.extend(items)
        self.times.append(time.monotonic())
        self.threads.add(threading.get_ident())


class RawPeer:
    """A TCP server on 127.0.0.1 that writes what a test gives it, from a thread."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.sock: socket.socket | None = None
        self._accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock, _ = self._listener.accept()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._accepted.set()

    def connected(self) -> socket.socket:
        assert self._accepted.wait(5)
        assert self.sock is not None
        return self.sock

    def write_in_pieces(self, data: bytes, seed: int) -> None:
        """``data`` in random pieces, a few with a pause, so reads cut it anywhere."""
        rng = random.Random(seed)
        sock, pos = self.connected(), 0
        while pos < len(data):
            end = min(len(data), pos + rng.choice([1, 3, 17, 200, 1500, 9000, 70000]))
            sock.sendall(data[pos:end])
            pos = end
            if rng.random() < 0.05:
                time.sleep(0.002)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self._listener.close()


def connect(peer: RawPeer, on_items: Collector, **options: int) -> asyncio.Future[AmiConnection]:
    target_options = ConnectionOptions(
        ping_interval=None, connect_timeout=2.0, banner_timeout=2.0, **options
    )
    target = parse_ami_url(f"ami://bridge@127.0.0.1:{peer.port}")
    return asyncio.ensure_future(
        AmiConnection.open(target, on_items=on_items, options=target_options)
    )


def stream_part(data: bytes, **options: int) -> list[Described]:
    """What reaches ``on_items`` for ``data`` with no action waiting: no banner, no
    responses (a response for no waiting action is dropped), the rest as stream items."""
    parser = AmiParser(**options)  # type: ignore[arg-type]
    items = parser.feed(data) + parser.feed_eof()
    kept = [as_stream_item(i) for i in items if not isinstance(i, Banner | Response)]
    return describe(list(kept))


def receive_queue(conn: AmiConnection) -> int:
    """Bytes in the connection's kernel receive queue (SIOCINQ)."""
    fd = conn._sock.fileno()  # the test looks at the kernel's side of the reader's socket
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_peek_framing_over_random_splits_gives_the_parser_s_items(seed: int) -> None:
    # A legacy capture (Response: Follows replies with blank lines in their text), live
    # traffic and messages larger than one peek, cut into random writes.
    data = (
        BANNER
        + (FIXTURES / "legacy" / "asterisk-13.ami").read_bytes()
        + (FIXTURES / "captures" / "calls-basic.ami").read_bytes()
        + serialize([("Event", "UserEvent"), ("Big", "x" * 5000)])
        + (FIXTURES / "legacy" / "asterisk-1.4.ami").read_bytes()
    )
    peer, collected = RawPeer(), Collector()
    try:
        opening = connect(peer, collected, peek_size=1024)
        writer = threading.Thread(target=peer.write_in_pieces, args=(data, seed))
        writer.start()
        conn = await opening
        writer.join()
        peer.connected().shutdown(socket.SHUT_WR)
        await asyncio.wait_for(conn.closed(), 5)
        assert describe(list(collected.items)) == stream_part(data)
        assert collected.threads
        assert threading.get_ident() not in collected.threads
    finally:
        peer.close()


async def test_an_incomplete_message_stays_in_the_kernel_until_it_is_complete() -> None:
    first = serialize([("Event", "Newchannel"), ("Channel", "PJSIP/1-1")])
    second = serialize([("Event", "Hangup"), ("Channel", "PJSIP/1-1"), ("Cause", "16")])
    half = len(second) // 2
    peer, collected = RawPeer(), Collector()
    try:
        opening = connect(peer, collected)
        sock = await asyncio.to_thread(peer.connected)
        sock.sendall(BANNER + first + second[:half])
        conn = await opening
        await eventually(lambda: len(collected.items) == 1)
        await asyncio.sleep(0.05)  # the reader is asleep on the tail, not spinning on it
        assert receive_queue(conn) == half  # not taken into the process
        assert conn._reader._parser.buffered == 0
        sock.sendall(second[half:])
        await eventually(lambda: len(collected.items) == 2)
        assert [item.name for item in collected.items if isinstance(item, Event)] == [
            "Newchannel",
            "Hangup",
        ]
        assert receive_queue(conn) == 0
        await conn.close()
    finally:
        peer.close()


@pytest.mark.parametrize(
    ("rmem_max", "peek_size", "expected"),
    [
        (4 * 1024 * 1024, DEFAULT_PEEK_SIZE, 4 * 1024 * 1024),  # 8 MiB against ~1.4 MB tuned
        (212_992, DEFAULT_PEEK_SIZE, None),  # the usual default: autotuning gives more
        (1024 * 1024, DEFAULT_PEEK_SIZE, None),  # 2 MiB: no more than 8 peeks
        (4 * 1024 * 1024, 1024 * 1024, None),  # a larger peek is autotuned larger
    ],
)
def test_the_receive_buffer_is_fixed_only_above_what_autotuning_gives(
    rmem_max: int, peek_size: int, expected: int | None
) -> None:
    assert fixed_receive_buffer(rmem_max, peek_size) == expected


def _sysctl(name: str) -> str:
    return Path("/proc/sys", name.replace(".", "/")).read_text()


async def test_the_connection_gets_the_receive_buffer_the_host_allows() -> None:
    allowed = int(_sysctl("net.core.rmem_max"))
    default = int(_sysctl("net.ipv4.tcp_rmem").split()[1])
    peer, collected = RawPeer(), Collector()
    try:
        opening = connect(peer, collected)
        sock = await asyncio.to_thread(peer.connected)
        sock.sendall(BANNER)
        conn = await opening
        size = conn._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        fixed = fixed_receive_buffer(allowed, DEFAULT_PEEK_SIZE)
        # Fixed: the kernel doubles the value; left alone: autotuning starts at tcp_rmem[1].
        assert size == (default if fixed is None else 2 * fixed)
        await conn.close()
    finally:
        peer.close()


async def test_reading_goes_on_while_the_event_loop_is_blocked() -> None:
    event = serialize([("Event", "VarSet"), ("Channel", "PJSIP/1-1"), ("Value", "v" * 200)])
    peer, collected = RawPeer(), Collector()
    stop = threading.Event()

    def produce() -> None:  # about 10,000 events/s until stopped
        sock = peer.connected()
        sock.sendall(BANNER)
        while not stop.is_set():
            sock.sendall(event * 20)
            time.sleep(0.002)

    try:
        opening = connect(peer, collected)
        producer = threading.Thread(target=produce)
        producer.start()
        conn = await opening
        await asyncio.sleep(0.2)
        blocked_from = time.monotonic()
        time.sleep(0.6)  # the event loop does nothing for 0.6 s  # noqa: ASYNC251
        blocked_until = time.monotonic()
        stop.set()
        producer.join()
        during = [t for t in collected.times if blocked_from < t < blocked_until]
        assert len(during) > 20, "the reader kept reading while the loop was blocked"
        gaps = [b - a for a, b in itertools.pairwise(during)]
        assert max(gaps) < 0.3
        await conn.close()
    finally:
        peer.close()


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_reads_events_and_writes_actions_through_one_session(
    ca: trustme.CA, tmp_path: Path
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    collected = Collector()
    async with (
        FakeAmiServer(ssl_context=server_context) as server,
        await AmiConnection.open(
            server.target(tls=True), on_items=collected, ssl_context=client_context, options=QUIET
        ) as conn,
    ):
        login = [("Username", "bridge"), ("Secret", "s3cret")]
        assert (await conn.send_action("Login", login, timeout=5)).ok
        collected.items.clear()  # FullyBooted

        async def events() -> None:
            for n in range(40):
                await server.latest.send(
                    *[[("Event", "UserEvent"), ("Seq", str(50 * n + i))] for i in range(50)]
                )

        pings = [conn.send_action("Ping", timeout=5) for _ in range(20)]
        _, *answers = await asyncio.gather(events(), *pings)
        assert all(answer is not None and answer.ok for answer in answers)
        await eventually(lambda: len(collected.items) == 2000)
        seqs = [item.get("Seq") for item in collected.items if isinstance(item, Event)]
        assert seqs == [str(n) for n in range(2000)]
        assert threading.get_ident() not in collected.threads
