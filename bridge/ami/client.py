"""One AMI connection: a reader thread that never waits, actions from asyncio, a keepalive.

Approach
--------
* **The reader never waits on anyone.**  Asterisk disconnects a manager session whose
  socket stays unwritable for ``writetimeout`` (100 ms by default) and throws its queued
  events away, so the socket is read by a thread of its own
  (:class:`~bridge.ami.reader.SocketReader`), which frames the bytes and hands what
  each read completed to a *synchronous* ``on_items`` callback **on that thread**,
  before the bytes leave the kernel's buffer.  The consumer must only record the items
  (the pipeline journals them), and must be thread-safe.  What the event loop needs
  (the banner, answers to actions) reaches it in one ``call_soon_threadsafe`` per read.
* **Actions are written from the event loop**, on the same non-blocking socket (through
  the shared :class:`~bridge.ami.reader.TlsChannel` for ``amis://``), one action at a
  time; once the connection is lost nothing more is written on it (a peer that gets
  data on a dead connection answers with a reset, and the kernel then throws away what
  it had received and not yet read).
* **Responses go to futures.**  Each action gets a fresh ``ActionID``, and
  :class:`~bridge.ami.actions.PendingActions` matches responses and list events to the
  actions waiting for them.  Everything else (events, malformed messages) goes to
  ``on_items`` in wire order.
* **Liveness is checked, not assumed.**  A keepalive task sends ``Ping`` every
  ``ping_interval`` seconds and closes the connection when the answer misses its
  deadline; an optional read-idle timeout, EOF and socket errors close it too.  The
  reason is kept as an :class:`~bridge.ami.errors.AmiConnectionError`.
* **The end is reported where it is seen.**  ``on_end(reason, at, last_read_at)`` is
  called on the reader thread after the last items, at the moment the reader sees EOF,
  an error or the close request, so the consumer can record the disconnection in stream
  order with the right time.
* **Everything is owned.**  The reader thread, the keepalive task and the banner timer
  belong to the connection and end when it closes; pending actions fail with the close
  reason.  Login, reconnects and backoff are the session's job, not this module's.

TLS (``amis://``) is set up and explained in :mod:`bridge.tls`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from bridge.ami.actions import ActionResult, AnswerHook, PendingActions
from bridge.ami.errors import ActionTimeout, AmiConnectionError
from bridge.ami.protocol import (
    DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_MESSAGE_SIZE,
    AmiParser,
    Banner,
    Event,
    HeaderInput,
    Item,
    Malformed,
    Message,
    Response,
    serialize_action,
)
from bridge.ami.reader import (
    DEFAULT_PEEK_SIZE,
    ReadObserver,
    SocketReader,
    TlsChannel,
    widen_receive_buffer,
)
from bridge.ami.target import AmiTarget
from bridge.tls import maybe_tls_failure, tls_client_context

__all__ = [
    "AmiConnection",
    "ConnectionOptions",
    "EndCallback",
    "ItemsCallback",
    "StreamItem",
    "as_stream_item",
]

log = logging.getLogger(__name__)

#: What reaches the event stream: unsolicited events and messages the parser could not
#: deliver whole.
StreamItem = Event | Malformed
#: Called once per socket read with the stream items that read completed, in wire order,
#: on the reader thread.
ItemsCallback = Callable[[list[StreamItem]], None]
#: Called once on the reader thread when the connection ends: the reason, the wall time
#: the reader saw the end, and the wall time of the last read that took bytes (or None).
EndCallback = Callable[[str, float, float | None], None]

_HANDSHAKE_READ = 65536


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """Timeouts, keepalive and parser limits of one connection (seconds and bytes)."""

    connect_timeout: float = 10.0
    #: Deadline for the banner, counted from the moment the socket is up.
    banner_timeout: float = 10.0
    #: Seconds between two Pings; ``None`` turns the keepalive off.
    ping_interval: float | None = 20.0
    #: How long a Ping may wait for its answer before the connection counts as dead.
    ping_timeout: float = 10.0
    #: Close when nothing at all was read for this long; ``None`` turns the check off.
    idle_timeout: float | None = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_headers: int = DEFAULT_MAX_HEADERS
    #: Bytes peeked per read: a message up to this size is framed in the kernel's buffer.
    peek_size: int = DEFAULT_PEEK_SIZE


def as_stream_item(item: Message | Malformed) -> StreamItem:
    """What the event stream carries for an item that is not a response to an action.

    An event or a malformed item as it is; any other message (neither ``Event`` nor
    ``Response`` first: not AMI as Asterisk writes it) as a malformed item, so it is
    never dropped.
    """
    if isinstance(item, Event | Malformed):
        return item
    return Malformed("message starts with neither Event nor Response", b"", item.headers)


class AmiConnection:
    """One AMI connection.  Create it with :meth:`open`; always :meth:`close` it.

    Not reusable: once closed, every action fails with the close reason and the owner
    opens a new connection.
    """

    def __init__(
        self,
        target: AmiTarget,
        sock: socket.socket,
        *,
        on_items: ItemsCallback,
        options: ConnectionOptions,
        on_end: EndCallback | None = None,
        tls: TlsChannel | None = None,
        observer: ReadObserver | None = None,
    ) -> None:
        """Wrap a connected non-blocking socket; :meth:`open` is the way in."""
        self.target = target
        self.options = options
        self._sock = sock
        self._tls = tls
        self._on_items = on_items
        self._on_end = on_end
        self._loop = loop = asyncio.get_running_loop()
        #: Stream items of the read being dispatched, not handed to ``on_items`` yet.
        self._stream: list[StreamItem] = []
        #: What the read being dispatched has for the event loop.
        self._for_loop: list[tuple[asyncio.Future[ActionResult], ActionResult]] = []
        self._actions = PendingActions(flush=self._flush_stream, resolve=self._resolve_later)
        self._banner_seen = False
        # Holds the banner, None for a server that sends none, or the close reason.
        self._banner: asyncio.Future[Banner | AmiConnectionError | None] = loop.create_future()
        self._banner_timer = loop.call_later(options.banner_timeout, self._banner_overdue)
        self._close_reason: AmiConnectionError | None = None
        self._end_text: str | None = None
        self._expected_end: str | None = None
        #: Set by the reader thread when it sees the end, before the loop hears of it.
        self._lost = False
        self._abort = False
        self._write_lock = asyncio.Lock()
        self._reader_done = asyncio.Event()
        self._closed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader = SocketReader(
            sock,
            AmiParser(max_message_size=options.max_message_size, max_headers=options.max_headers),
            consume=self._dispatch,
            ended=self._reader_ended,
            peer=str(target),
            tls=tls,
            send=self._send_from_reader,
            idle_timeout=options.idle_timeout,
            observer=observer,
            peek_size=options.peek_size,
        )
        self._reader.start()
        if options.ping_interval is not None:
            self._spawn(self._keepalive(options.ping_interval), "keepalive")

    # -- opening and closing ----------------------------------------------------------

    @classmethod
    async def open(
        cls,
        target: AmiTarget,
        *,
        on_items: ItemsCallback,
        on_end: EndCallback | None = None,
        ssl_context: ssl.SSLContext | None = None,
        options: ConnectionOptions | None = None,
        wait_for_banner: bool = True,
        observer: ReadObserver | None = None,
    ) -> AmiConnection:
        """Connect to ``target`` and start reading.

        TLS is used when ``target.tls`` is set: with ``ssl_context`` if given, otherwise
        with :func:`tls_client_context` (certificate and host name verified against the
        system's CAs).
        With ``wait_for_banner`` the call returns once the banner arrived; without it,
        the caller may send its first action at once and call :meth:`wait_banner` later
        (Asterisk reads what was sent early once its banner is out).

        Raises:
            AmiConnectionError: the connection, TLS handshake or banner failed or timed
                out; the text names the target and the cause.
        """
        options = options or ConnectionOptions()
        tls = None
        if target.tls:
            context = ssl_context if ssl_context is not None else tls_client_context()
            tls = TlsChannel(context, target.host)
        try:
            async with asyncio.timeout(options.connect_timeout):
                sock = await _connect(target, options.peek_size)
                try:
                    if tls is not None:
                        await _handshake(sock, tls)
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise AmiConnectionError(
                f"connecting to {target} timed out after {options.connect_timeout:g} s"
            ) from None
        except ssl.SSLError as exc:
            why = maybe_tls_failure(exc)
            raise AmiConnectionError(f"TLS handshake with {target} failed: {why}") from exc
        except OSError as exc:
            raise AmiConnectionError(f"cannot connect to {target}: {exc.strerror or exc}") from exc
        connection = cls(
            target,
            sock,
            on_items=on_items,
            on_end=on_end,
            options=options,
            tls=tls,
            observer=observer,
        )
        if wait_for_banner:
            try:
                await connection.wait_banner()
            except BaseException:
                await connection.close("banner not received")
                raise
        return connection

    async def close(self, reason: str = "closed by the client") -> None:
        """Close the connection, fail pending actions and wait for the reader to end.

        Idempotent; an earlier close reason is kept.
        """
        self._close(AmiConnectionError(f"{reason} ({self.target})"), end_text=reason)
        await self.closed()

    async def closed(self) -> AmiConnectionError:
        """Wait until the connection is closed and cleaned up; return why it closed."""
        await self._closed.wait()
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        if tasks:
            await asyncio.wait(tasks)
        await self._reader_done.wait()
        assert self._close_reason is not None
        return self._close_reason

    def ending(self, reason: str) -> None:
        """Announce that the connection is being ended on purpose (a Logoff follows).

        The end is then reported to ``on_end`` with ``reason``, even when the peer is
        the one to close the socket.
        """
        self._expected_end = reason

    @property
    def close_reason(self) -> AmiConnectionError | None:
        """Why the connection closed, or ``None`` while it is open."""
        return self._close_reason

    @property
    def is_closed(self) -> bool:
        return self._close_reason is not None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- banner and actions -----------------------------------------------------------

    async def wait_banner(self) -> Banner | None:
        """The server's banner, waiting for it if needed; ``None`` if it sent none.

        Raises:
            AmiConnectionError: the connection closed, or no banner came within
                ``banner_timeout``.
        """
        outcome = await asyncio.shield(self._banner)
        if isinstance(outcome, AmiConnectionError):
            raise AmiConnectionError(str(outcome))
        return outcome

    @property
    def banner(self) -> Banner | None:
        """The banner if it has arrived."""
        outcome = self._banner.result() if self._banner.done() else None
        return outcome if isinstance(outcome, Banner) else None

    async def send_action(
        self,
        action: str,
        headers: HeaderInput = (),
        *,
        timeout: float,  # noqa: ASYNC109 - the deadline is part of the result (ActionTimeout)
        on_answer: AnswerHook | None = None,
        action_tag: str | None = None,
    ) -> ActionResult:
        """Send ``action`` with a fresh ActionID and wait for its response.

        A list action (the response has ``EventList: start``) also waits for its item
        events up to the ``EventList: Complete`` event.  ``Response: Error`` is returned,
        not raised: check :attr:`ActionResult.ok`.  ``on_answer`` gets the answer on the
        reader thread, synchronously, at its place in the event stream: after
        ``on_items`` had every event read before it, before any event read after it.
        ``action_tag`` goes into the ActionID (see :meth:`PendingActions.new_id`).

        Raises:
            ActionTimeout: the response (or the end of the list) did not arrive within
                ``timeout`` seconds.
            AmiConnectionError: the connection is closed or closed while waiting.
            LocalProtocolError: a header name or value cannot be sent (CR/LF).
        """
        if self._close_reason is not None:
            raise AmiConnectionError(str(self._close_reason))
        action_id = self._actions.new_id(action_tag)
        data = serialize_action(action, headers, action_id=action_id)
        answer = self._actions.expect(action_id, on_answer)
        try:
            async with asyncio.timeout(timeout):
                await self._write(data)
                return await answer
        except TimeoutError:
            raise ActionTimeout(
                f"no response to {action} from {self.target} within {timeout:g} s"
            ) from None
        except OSError as exc:
            self._close(AmiConnectionError(f"writing to {self.target} failed: {exc}"))
            raise AmiConnectionError(str(self._close_reason)) from exc
        finally:
            self._actions.forget(action_id)

    # -- internals: the event loop's side ---------------------------------------------

    async def _write(self, data: bytes) -> None:
        """Send ``data`` whole, after any earlier write; never on a lost connection."""
        async with self._write_lock:
            if self._close_reason is not None:
                raise AmiConnectionError(str(self._close_reason))
            if self._lost:
                # The reader saw the end: data sent now would only draw a reset, and a
                # reset throws away what the kernel received and the reader has not read.
                raise AmiConnectionError(f"the connection to {self.target} is lost")
            if self._tls is not None:
                data = self._tls.encrypt(data)
            await self._loop.sock_sendall(self._sock, data)

    def _spawn(self, coro: Coroutine[Any, Any, None], role: str) -> None:
        task = asyncio.create_task(coro, name=f"ami-{role} {self.target}")
        self._tasks.add(task)

    def _close(
        self, reason: AmiConnectionError, *, abort: bool = False, end_text: str | None = None
    ) -> None:
        """Record why the connection ends and tear it down (synchronous, idempotent)."""
        if self._close_reason is not None:
            return
        self._close_reason = reason
        self._end_text = end_text if end_text is not None else str(reason)
        self._abort = abort
        self._banner_timer.cancel()
        if not self._banner.done():
            self._banner.set_result(reason)
        self._actions.fail_all(reason)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        # The socket is closed once the reader thread has let go of it.
        self._reader.stop()
        self._closed.set()

    def _release_socket(self) -> None:
        if self._abort:
            # A peer that stopped answering will not take part in a clean shutdown.
            linger = struct.pack("ii", 1, 0)
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        self._sock.close()
        self._reader_done.set()

    def _banner_overdue(self) -> None:
        limit = self.options.banner_timeout
        self._close(
            AmiConnectionError(f"{self.target} sent no AMI banner within {limit:g} s"),
            abort=True,
        )

    def _on_read(
        self,
        banner: tuple[Banner | None] | None,
        answers: list[tuple[asyncio.Future[ActionResult], ActionResult]],
    ) -> None:
        if banner is not None:
            self._set_banner(banner[0])
        for future, result in answers:
            if not future.done():
                future.set_result(result)

    def _on_reader_end(self, reason: str | None) -> None:
        if reason is not None:
            # The reader saw the end (or gave up): nothing is left to say to the peer.
            self._close(AmiConnectionError(reason), abort=True)
        self._release_socket()

    def _set_banner(self, banner: Banner | None) -> None:
        if not self._banner.done():
            self._banner_timer.cancel()
            self._banner.set_result(banner)

    async def _keepalive(self, interval: float) -> None:
        timeout = self.options.ping_timeout
        while True:
            await asyncio.sleep(interval)
            try:
                # Any answer proves the peer alive, even "Permission denied" before login.
                await self.send_action("Ping", timeout=timeout)
            except ActionTimeout:
                reason = f"{self.target} did not answer Ping within {timeout:g} s"
                self._close(AmiConnectionError(reason), abort=True)
                return
            except AmiConnectionError:
                return

    # -- internals: the reader thread's side ------------------------------------------

    def _dispatch(self, items: list[Item]) -> None:
        """Route one read's items: the stream to ``on_items``, the rest to the loop."""
        # self._stream, not a local alias: an answer hook flushes it mid-loop.
        banner: tuple[Banner | None] | None = None
        for item in items:
            if isinstance(item, Response):
                if not self._actions.route_response(item):
                    log.debug("AMI response for no waiting action (ActionID %r)", item.action_id)
            elif isinstance(item, Event):
                if not self._actions.route_event(item):
                    self._stream.append(item)
            elif isinstance(item, Banner):
                if not self._banner_seen:
                    banner = (item,)
            else:
                self._stream.append(as_stream_item(item))
            if not self._banner_seen:
                self._banner_seen = True
                if banner is None:
                    banner = (None,)  # talking without a banner: a proxy, say
        try:
            self._flush_stream()
        finally:
            # Answers already complete are delivered even when the consumer failed.
            answers, self._for_loop = self._for_loop, []
            if banner is not None or answers:
                self._loop.call_soon_threadsafe(self._on_read, banner, answers)

    def _flush_stream(self) -> None:
        if self._stream:
            stream, self._stream = self._stream, []
            self._on_items(stream)

    def _resolve_later(self, future: asyncio.Future[ActionResult], result: ActionResult) -> None:
        self._for_loop.append((future, result))

    def _send_from_reader(self, data: bytes) -> None:
        """Ciphertext the TLS session must send (a key update): the loop writes it."""

        def send() -> None:
            if self._close_reason is None:
                self._spawn(self._write_raw(data), "tls-reply")

        self._loop.call_soon_threadsafe(send)

    async def _write_raw(self, data: bytes) -> None:
        async with self._write_lock:
            if self._close_reason is None and not self._lost:
                with contextlib.suppress(OSError):
                    await self._loop.sock_sendall(self._sock, data)

    def _reader_ended(self, reason: str | None, at: float, last_read_at: float | None) -> None:
        self._lost = True  # before anything else: the loop writes nothing more on it
        text = self._expected_end or reason or self._end_text or "closed by the client"
        try:
            if self._on_end is not None:
                self._on_end(text, at, last_read_at)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to tell
                self._loop.call_soon_threadsafe(self._on_reader_end, reason)


async def _connect(target: AmiTarget, peek_size: int) -> socket.socket:
    """A connected non-blocking TCP socket to ``target`` (each address tried in turn),
    its receive buffer sized for a reader of ``peek_size`` per read.

    Raises:
        OSError: no address could be reached.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    failure: OSError = OSError(f"no address for {target.host}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            widen_receive_buffer(sock, peek_size)  # before connecting: sets the window scale
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise failure


async def _handshake(sock: socket.socket, tls: TlsChannel) -> None:
    """Run the TLS handshake on the event loop, before the reader thread takes over.

    Raises:
        ssl.SSLError: the handshake failed.
        OSError: the connection failed or closed during the handshake.
    """
    loop = asyncio.get_running_loop()
    done, out = tls.handshake_step(b"")
    while True:
        if out:
            await loop.sock_sendall(sock, out)
        if done:
            return
        data = await loop.sock_recv(sock, _HANDSHAKE_READ)
        if not data:
            raise ConnectionResetError("the server closed the connection during the handshake")
        done, out = tls.handshake_step(data)
