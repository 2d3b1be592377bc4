"""An AMI peer on loopback that knows, byte for byte, what it wrote and what was read.

:class:`CountingPeer` accepts any login, answers every action with ``Success``, and
writes numbered ``UserEvent``\\ s (``Tick: <n>``, one counter over all connections) at a
steady rate to the logged-in connection, from threads of its own, so its pace never
depends on the bridge (as Asterisk's does not).  For each connection it keeps where
each event ends in the byte stream.  :meth:`CountingPeer.read_by_bridge`, called while
the bridge is stopped (SIGSTOP) and the peer paused, takes what the kernel still holds
(the bridge socket's receive queue from ``/proc/net/tcp``, the peer socket's send queue
from ``SIOCOUTQ``) from what was written: the rest the bridge has taken off its socket,
measured from outside the process.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass, field

from bridge.ami.protocol import AmiParser, Message, serialize

_BANNER = b"Asterisk Call Manager/5.0.1\r\n"


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    logged_in: bool = False
    alive: bool = True
    written: int = 0
    #: (tick, offset just after the event) for every event written.
    ends: list[tuple[int, int]] = field(default_factory=list)

    def write(self, data: bytes, tick: int | None = None) -> None:
        with self.lock:
            if not self.alive:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.alive = False
                return
            self.written += len(data)
            if tick is not None:
                self.ends.append((tick, self.written))


class CountingPeer:
    """``with CountingPeer(rate) as peer:`` an AMI server on ``peer.port``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.connections: list[_Connection] = []
        self._ticks = 0
        self._running = True
        self._producing = threading.Event()
        self._producing.set()
        self._idle = threading.Event()
        self._threads = [
            threading.Thread(target=self._accept, daemon=True),
            threading.Thread(target=self._produce, daemon=True),
        ]

    def __enter__(self) -> CountingPeer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._running = False
        self._producing.set()
        self._listener.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.sock.close()

    @property
    def current(self) -> _Connection | None:
        live = [c for c in self.connections if c.alive and c.logged_in]
        return live[-1] if live else None

    def pause(self) -> None:
        """Stop writing events; returns once no write is under way."""
        self._idle.clear()
        self._producing.clear()
        assert self._idle.wait(2), "the producer did not pause"

    def resume(self) -> None:
        self._producing.set()

    def read_by_bridge(self, conn: _Connection) -> int:
        """Bytes of ``conn`` the bridge has taken off its socket (peer paused, bridge
        stopped)."""
        peer_port = conn.sock.getsockname()[1]
        bridge_port = conn.sock.getpeername()[1]
        unsent = struct.unpack("i", fcntl.ioctl(conn.sock, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        return conn.written - unsent - _receive_queue(bridge_port, peer_port)

    # -- threads --------------------------------------------------------------------

    def _accept(self) -> None:
        while self._running:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock)
            self.connections.append(conn)
            conn.write(_BANNER)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: _Connection) -> None:
        parser = AmiParser(expect_banner=False)
        while self._running:
            try:
                data = conn.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                conn.alive = False
                return
            for action in parser.feed(data):
                if isinstance(action, Message):
                    self._answer(conn, action)

    def _answer(self, conn: _Connection, action: Message) -> None:
        name = (action.get("Action") or "").lower()
        headers = [("Response", "Goodbye" if name == "logoff" else "Success")]
        if action.action_id:
            headers.append(("ActionID", action.action_id))
        if name == "ping":
            headers.append(("Ping", "Pong"))
        conn.write(serialize(headers))
        if name == "login":
            conn.logged_in = True

    def _produce(self) -> None:
        interval = 0.005
        due = 0.0
        last = time.monotonic()
        while self._running:
            if not self._producing.is_set():
                self._idle.set()
                self._producing.wait()
                last = time.monotonic()
                continue
            time.sleep(interval)
            now = time.monotonic()
            due += (now - last) * self.rate
            last = now
            conn = self.current
            while due >= 1:
                due -= 1
                if conn is None:
                    continue  # no session: Asterisk sends its events to no one
                self._ticks += 1
                tick = self._ticks
                event = serialize(
                    [
                        ("Event", "UserEvent"),
                        ("Privilege", "user,all"),
                        ("UserEvent", "Tick"),
                        ("Tick", str(tick)),
                    ]
                )
                conn.write(event, tick)


def _receive_queue(local_port: int, remote_port: int) -> int:
    """The receive queue of the 127.0.0.1 socket ``local_port`` -> ``remote_port``."""
    local, remote = f"0100007F:{local_port:04X}", f"0100007F:{remote_port:04X}"
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[4].split(":")[1], 16)
    return 0  # the socket is gone: nothing of it is waiting
