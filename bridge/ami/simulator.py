"""An AMI server on loopback that behaves like Asterisk: the default peer for the demo and tests.

Approach
--------
Every connection is a session with one read loop, which feeds the project's
:class:`~bridge.ami.protocol.AmiParser` and answers each action in order, the way
Asterisk's per-session thread does (a failed login's delay holds up that session only).
The answers live in :mod:`bridge.ami.simulator_session`; this module is the server
around them: listening, sessions, write pacing and broadcast.  Everything written goes
through :func:`~bridge.ami.protocol.serialize`.

Writes never wait: ``StreamWriter.write`` queues whole messages, so responses and events
can never interleave mid-message.  A per-session drain task waits for the socket and
measures how long it stalled, which is what Asterisk's ``writetimeout`` (100 ms) judges.
Asterisk disconnects a session whose write stalls longer than that; here the stall is
counted in :attr:`AmiSimulator.slow_disconnects` and only acted on with
``disconnect_slow=True``, so tests can assert that a reader keeps up.

Generated traffic comes from :class:`~bridge.ami.traffic.TrafficGenerator` and is paced
in ticks: each tick emits every event that is due, encoded once and written to every
logged-in session whose event mask accepts it.  Traffic runs only while at least one
session is logged in (and ``duration`` counts from the first login), so a seeded run
delivers the same sequence to its first client however long that client took to connect.

TLS: given a server ``ssl_context``, the simulator serves ``amis://`` (AMI over TLS, as
Asterisk's ``tlsenable``/``tlsbindaddr`` do) on the same port; everything above the
socket is unchanged.  A client that gives up during the handshake (an untrusted
certificate, say) costs the server nothing: asyncio drops that connection before a
session exists.

Test and fault hooks: :meth:`~AmiSimulator.inject`, :meth:`~AmiSimulator.drop_connections`,
:attr:`~AmiSimulator.answer_pings`, :attr:`~AmiSimulator.events_sent`,
:attr:`~AmiSimulator.sessions`, :meth:`~AmiSimulator.wait_for_sessions`,
:attr:`~AmiSimulator.max_write_stall` and :attr:`~AmiSimulator.slow_disconnects`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from types import TracebackType

from bridge.ami.event_mask import ALL_CLASSES, PERMS, class_mask, parse_event_mask
from bridge.ami.protocol import Header, Message, serialize
from bridge.ami.simulator_session import SessionActions, SimulatorSession
from bridge.ami.traffic import TrafficGenerator

__all__ = ["ALL_CLASSES", "PERMS", "AmiSimulator", "class_mask", "parse_event_mask"]

log = logging.getLogger(__name__)

_TICK = 0.01
#: At most this much traffic (in seconds of ``rate``) is generated in one go, so a rate
#: the machine cannot sustain never starves the sessions' reads.
_MAX_CATCH_UP = 0.1


class AmiSimulator(SessionActions):
    """A loopback AMI server with generated traffic.  Use as ``async with AmiSimulator(...)``.

    Args:
        host, port: where to listen; ``port=0`` picks a free port (see :attr:`port`).
        user, secret: the one manager account.  The secret never appears in logs or reprs.
        rate: generated events per second; 0 generates none (use :meth:`inject`).
        duration: seconds of generated traffic, counted from the first login; None = forever.
        seed: seeds the traffic generator, for a reproducible event sequence.
        legacy: Asterisk 1.4 event shapes and the ``Asterisk Call Manager/1.0`` banner.
        auth_failure_delay: seconds a failed login waits before its error (Asterisk: 1 s).
        write_timeout: a drain that waits longer counts as a slow write (Asterisk: 100 ms).
        disconnect_slow: disconnect a session on a slow write, as Asterisk does.
        clock: wall clock for timestamps and uniqueids.
        ssl_context: a server context (certificate and key loaded) to serve AMI over
            TLS; ``None`` serves plain TCP.
        sequence_numbers: number every event with a ``SequenceNumber`` header after
            ``Privilege`` and ``Timestamp``, one counter for all sessions, as Asterisk
            does with ``debug = on`` in ``manager.conf``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 5038,
        user: str = "bridge",
        secret: str = "bridge-secret",
        rate: float = 50.0,
        duration: float | None = None,
        seed: int | None = None,
        legacy: bool = False,
        auth_failure_delay: float = 1.0,
        write_timeout: float = 0.1,
        disconnect_slow: bool = False,
        clock: Callable[[], float] = time.time,
        ssl_context: ssl.SSLContext | None = None,
        sequence_numbers: bool = False,
    ) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.host = host
        self.user = user
        self._secret = secret
        self.rate = rate
        self.duration = duration
        self.legacy = legacy
        self.auth_failure_delay = auth_failure_delay
        self.write_timeout = write_timeout
        self.disconnect_slow = disconnect_slow
        self.banner = "Asterisk Call Manager/1.0" if legacy else "Asterisk Call Manager/11.0.0"
        #: False makes the server ignore Ping, as a hung Asterisk would.
        self.answer_pings = True
        #: Events broadcast to at least one logged-in session (each counted once).
        self.events_sent = 0
        #: The longest a session's ``drain()`` waited, in seconds.
        self.max_write_stall = 0.0
        #: Writes that stalled longer than ``write_timeout`` (each a disconnect in Asterisk).
        self.slow_disconnects = 0
        self.ssl_context = ssl_context
        self.sequence_numbers = sequence_numbers
        self._next_sequence = 0
        self._requested_port = port
        self._clock = clock
        self._traffic = TrafficGenerator(seed, legacy=legacy, clock=clock)
        self._masks: dict[str, int] = {}
        self._sessions: dict[SimulatorSession, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self._stopped = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._pump: asyncio.Task[None] | None = None
        self._started_at = time.monotonic()

    def __repr__(self) -> str:
        return (
            f"AmiSimulator(host={self.host!r}, port={self.port}, user={self.user!r}, "
            f"tls={self.tls})"
        )

    @property
    def tls(self) -> bool:
        """True when the simulator serves AMI over TLS (``amis://``)."""
        return self.ssl_context is not None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen and start generating traffic.

        Raises:
            OSError: the address cannot be bound.
        """
        self._stopped.clear()
        self._server = await asyncio.start_server(
            self._accept, self.host, self._requested_port, ssl=self.ssl_context
        )
        self._started_at = time.monotonic()
        if self.rate > 0:
            self._pump = asyncio.create_task(self._generate(), name="ami-simulator-traffic")

    @property
    def port(self) -> int:
        """The bound port (the requested one until :meth:`start`)."""
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening, close every session and stop traffic.  Safe to call twice."""
        self._stopped.set()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None
        if self._server is not None:
            self._server.close()
        tasks = list(self._sessions.values())
        for session, task in list(self._sessions.items()):
            session.abort()
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        """Start if needed, then serve until :meth:`stop` is called or this task is cancelled."""
        if self._server is None:
            await self.start()
        try:
            await self._stopped.wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> AmiSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- test and fault hooks -----------------------------------------------------------

    @property
    def sessions(self) -> int:
        """How many sessions are logged in and open."""
        return sum(1 for s in self._sessions if s.logged_in and s.is_open())

    # A plain ``timeout`` argument keeps test code short: ``await sim.wait_for_sessions(1, 5)``.
    async def wait_for_sessions(self, n: int, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until at least ``n`` sessions are logged in.

        Raises:
            TimeoutError: fewer than ``n`` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while self.sessions < n:
                await self._changed.wait()

    def inject(self, headers: Iterable[Header]) -> None:
        """Broadcast one event now, to every logged-in session whose mask accepts it."""
        self._broadcast([list(headers)])

    def drop_connections(self) -> None:
        """Close every session abruptly (TCP reset, nothing flushed), as a crash would."""
        for session in self._sessions:
            session.abort()

    @property
    def channel_count(self) -> int:
        """How many simulated channels are up."""
        return len(self._traffic.channels)

    # -- traffic ------------------------------------------------------------------------

    async def _generate(self) -> None:
        deadline: float | None = None
        while True:
            while self.sessions == 0:
                await self._changed.wait()
            now = time.monotonic()
            if deadline is None and self.duration is not None:
                deadline = now + self.duration
            # Pace from the moment traffic (re)starts, so a pause never causes a burst.
            begun, produced = now, 0
            while self.sessions and (deadline is None or now < deadline):
                due = int((now - begun) * self.rate) - produced
                due = min(due, max(1, int(self.rate * _MAX_CATCH_UP)))
                if due > 0:
                    self._broadcast([self._traffic.next_event() for _ in range(due)])
                    produced += due
                next_due = begun + (produced + 1) / self.rate
                await asyncio.sleep(max(_TICK, next_due - time.monotonic()))
                now = time.monotonic()
            if deadline is not None and now >= deadline:
                log.info("AMI simulator: %s s of traffic done", self.duration)
                return

    def _broadcast(self, events: list[list[Header]]) -> None:
        if self.sequence_numbers:
            events = [self._numbered(event) for event in events]
        targets = [s for s in self._sessions if s.logged_in and s.is_open()]
        encoded = [(self._mask_of(event), serialize(event)) for event in events]
        reached = {m: any(s.accepts(m) for s in targets) for m in {m for m, _ in encoded}}
        self.events_sent += sum(1 for m, _ in encoded if reached[m])
        by_session_mask: dict[int, bytes] = {}
        for session in targets:
            data = by_session_mask.get(session.mask)
            if data is None:
                data = b"".join(raw for m, raw in encoded if session.accepts(m))
                by_session_mask[session.mask] = data
            session.write(data)

    def _numbered(self, event: list[Header]) -> list[Header]:
        at = 1
        while at < len(event) and event[at][0] in ("Privilege", "Timestamp"):
            at += 1
        number = self._next_sequence
        self._next_sequence += 1
        return [*event[:at], ("SequenceNumber", str(number)), *event[at:]]

    def _mask_of(self, event: list[Header]) -> int:
        privilege = next((v for k, v in event if k.lower() == "privilege"), "")
        mask = self._masks.get(privilege)
        if mask is None:
            mask = self._masks[privilege] = class_mask(privilege)
        return mask

    def _notify(self) -> None:
        # Wake every waiter of the old event; later waiters get a fresh one.
        self._changed.set()
        self._changed = asyncio.Event()

    # -- sessions -----------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The session runs in a task of ours, not in the one asyncio.start_server makes for
        # this callback: we must be able to cancel it on stop(), and Python 3.11 reports a
        # cancelled callback task as an error.
        session = SimulatorSession(reader, writer)
        self._sessions[session] = asyncio.create_task(
            self._serve_session(session), name="ami-simulator-session"
        )

    async def _serve_session(self, session: SimulatorSession) -> None:
        reader = session.reader
        drainer = asyncio.create_task(self._drain(session), name="ami-simulator-drain")
        try:
            session.write(f"{self.banner}\r\n".encode())
            while session.is_open() and (data := await reader.read(65536)):
                for item in session.parser.feed(data):
                    if isinstance(item, Message):
                        await self._dispatch(session, item)
                    else:
                        session.send(
                            [("Response", "Error"), ("Message", "Failed to parse message")]
                        )
                    if not session.is_open():
                        break
        except (ConnectionError, OSError):
            pass
        finally:
            drainer.cancel()
            await asyncio.gather(drainer, return_exceptions=True)
            session.close()
            del self._sessions[session]
            self._notify()

    async def _drain(self, session: SimulatorSession) -> None:
        while True:
            await session.wrote.wait()
            session.wrote.clear()
            began = time.monotonic()
            try:
                if self.disconnect_slow:
                    async with asyncio.timeout(self.write_timeout):
                        await session.writer.drain()
                else:
                    await session.writer.drain()
            except TimeoutError:
                self.slow_disconnects += 1
                log.warning(
                    "AMI simulator: write stalled over %s s, disconnecting", self.write_timeout
                )
                session.abort()
                return
            except (ConnectionError, OSError):
                return
            stall = time.monotonic() - began
            self.max_write_stall = max(self.max_write_stall, stall)
            if stall > self.write_timeout:
                self.slow_disconnects += 1
