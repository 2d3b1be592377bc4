"""One AMI connection over asyncio: a reader that never waits, actions, and a keepalive.

Approach
--------
* **The reader never waits on anyone.**  Asterisk disconnects a manager session whose
  socket stays unwritable for ``writetimeout`` (100 ms by default) and throws its queued
  events away, so a single reader task reads the socket continuously, feeds the sans-I/O
  :class:`~bridge.ami.protocol.AmiParser`, and hands what each read completed to a
  *synchronous* ``on_items`` callback.  The consumer must only record the items.
* **Responses go to futures.**  Each action gets a fresh ``ActionID``, and
  :class:`~bridge.ami.actions.PendingActions` matches responses and list events to the
  actions waiting for them.  Everything else (events, malformed messages) goes to
  ``on_items`` in wire order.
* **Liveness is checked, not assumed.**  A keepalive task sends ``Ping`` every
  ``ping_interval`` seconds and closes the connection when the answer misses its
  deadline; an optional read-idle timeout, EOF and socket errors close it too.  The
  reason is kept as an :class:`~bridge.ami.errors.AmiConnectionError`.
* **Everything is owned.**  The reader and keepalive tasks and the banner timer belong to
  the connection and are cancelled when it closes; pending actions fail with the close
  reason.  Login, reconnects and backoff are the session's job, not this module's.

TLS (``amis://``) is set up and explained in :mod:`bridge.tls`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
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
from bridge.ami.target import AmiTarget
from bridge.tls import maybe_tls_failure, tls_client_context

__all__ = [
    "AmiConnection",
    "ConnectionOptions",
    "ItemsCallback",
    "StreamItem",
    "as_stream_item",
]

log = logging.getLogger(__name__)

#: What reaches the event stream: unsolicited events and messages the parser could not
#: deliver whole.
StreamItem = Event | Malformed
#: Called once per socket read with the stream items that read completed, in wire order.
ItemsCallback = Callable[[list[StreamItem]], None]

_READ_SIZE = 65536
_CLOSE_GRACE = 1.0


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
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        on_items: ItemsCallback,
        options: ConnectionOptions,
    ) -> None:
        """Wrap an open stream; :meth:`open` is the way in."""
        self.target = target
        self.options = options
        self._reader = reader
        self._writer = writer
        self._on_items = on_items
        self._parser = AmiParser(
            max_message_size=options.max_message_size, max_headers=options.max_headers
        )
        #: Stream items of the read being dispatched, not handed to ``on_items`` yet.
        self._stream: list[StreamItem] = []
        self._actions = PendingActions(flush=self._flush_stream)
        loop = asyncio.get_running_loop()
        # Holds the banner, None for a server that sends none, or the close reason.
        self._banner: asyncio.Future[Banner | AmiConnectionError | None] = loop.create_future()
        self._banner_timer = loop.call_later(options.banner_timeout, self._banner_overdue)
        self._close_reason: AmiConnectionError | None = None
        self._closed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._spawn(self._read_loop(), "reader")
        if options.ping_interval is not None:
            self._spawn(self._keepalive(options.ping_interval), "keepalive")

    # -- opening and closing ----------------------------------------------------------

    @classmethod
    async def open(
        cls,
        target: AmiTarget,
        *,
        on_items: ItemsCallback,
        ssl_context: ssl.SSLContext | None = None,
        options: ConnectionOptions | None = None,
        wait_for_banner: bool = True,
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
        context = None
        if target.tls:
            context = ssl_context if ssl_context is not None else tls_client_context()
        try:
            async with asyncio.timeout(options.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    target.host,
                    target.port,
                    ssl=context,
                    server_hostname=target.host if context is not None else None,
                )
        except TimeoutError:
            raise AmiConnectionError(
                f"connecting to {target} timed out after {options.connect_timeout:g} s"
            ) from None
        except ssl.SSLError as exc:
            why = maybe_tls_failure(exc)
            raise AmiConnectionError(f"TLS handshake with {target} failed: {why}") from exc
        except OSError as exc:
            raise AmiConnectionError(f"cannot connect to {target}: {exc.strerror or exc}") from exc
        connection = cls(target, reader, writer, on_items=on_items, options=options)
        if wait_for_banner:
            try:
                await connection.wait_banner()
            except BaseException:
                await connection.close("banner not received")
                raise
        return connection

    async def close(self, reason: str = "closed by the client") -> None:
        """Close the connection, fail pending actions and wait for the owned tasks.

        Idempotent; an earlier close reason is kept.
        """
        self._close(AmiConnectionError(f"{reason} ({self.target})"))
        await self.closed()

    async def closed(self) -> AmiConnectionError:
        """Wait until the connection is closed and cleaned up; return why it closed."""
        await self._closed.wait()
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        if tasks:
            await asyncio.wait(tasks)
        try:
            async with asyncio.timeout(_CLOSE_GRACE):
                await self._writer.wait_closed()
        except (TimeoutError, OSError):
            self._writer.transport.abort()
        assert self._close_reason is not None
        return self._close_reason

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
        not raised: check :attr:`ActionResult.ok`.  ``on_answer`` gets the answer from
        the reader, synchronously, at its place in the event stream: after ``on_items``
        had every event read before it, before any event read after it.  ``action_tag``
        goes into the ActionID (see :meth:`PendingActions.new_id`).

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
                self._writer.write(data)
                await self._writer.drain()
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

    # -- internals --------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], role: str) -> None:
        task = asyncio.create_task(coro, name=f"ami-{role} {self.target}")
        self._tasks.add(task)

    def _close(self, reason: AmiConnectionError, *, abort: bool = False) -> None:
        """Record why the connection ends and tear it down (synchronous, idempotent)."""
        if self._close_reason is not None:
            return
        self._close_reason = reason
        self._banner_timer.cancel()
        if not self._banner.done():
            self._banner.set_result(reason)
        self._actions.fail_all(reason)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if abort:
            # A peer that stopped answering will not take part in a clean shutdown.
            self._writer.transport.abort()
        else:
            self._writer.close()
        self._closed.set()

    def _banner_overdue(self) -> None:
        limit = self.options.banner_timeout
        self._close(
            AmiConnectionError(f"{self.target} sent no AMI banner within {limit:g} s"),
            abort=True,
        )

    async def _read_loop(self) -> None:
        while (data := await self._read_chunk()) is not None:
            items = self._parser.feed(data) if data else self._parser.feed_eof()
            try:
                self._dispatch(items)
            except Exception as exc:
                # Dropping what follows would be silent loss: stop reading instead.
                log.exception("AMI event consumer failed; closing %s", self.target)
                reason = f"event consumer failed: {type(exc).__name__}"
                self._close(AmiConnectionError(reason), abort=True)
                return
            if not data:
                self._close(AmiConnectionError(f"{self.target} closed the connection"))
                return

    async def _read_chunk(self) -> bytes | None:
        """The next chunk, ``b""`` at EOF, or ``None`` after closing on a failed read."""
        idle = self.options.idle_timeout
        try:
            async with asyncio.timeout(idle):
                return await self._reader.read(_READ_SIZE)
        except TimeoutError:
            reason = f"nothing read from {self.target} for {idle:g} s"
            self._close(AmiConnectionError(reason), abort=True)
        except OSError as exc:
            detail = exc.strerror or str(exc) or type(exc).__name__
            self._close(AmiConnectionError(f"reading from {self.target} failed: {detail}"))
        return None

    def _dispatch(self, items: list[Item]) -> None:
        # self._stream, not a local alias: an answer hook flushes it mid-loop.
        for item in items:
            if isinstance(item, Response):
                if not self._actions.route_response(item):
                    log.debug("AMI response for no waiting action (ActionID %r)", item.action_id)
            elif isinstance(item, Event):
                if not self._actions.route_event(item):
                    self._stream.append(item)
            elif isinstance(item, Banner):
                self._set_banner(item)
            else:
                self._stream.append(as_stream_item(item))
            if not self._banner.done():
                self._set_banner(None)  # talking without a banner: a proxy, say
        self._flush_stream()

    def _flush_stream(self) -> None:
        if self._stream:
            stream, self._stream = self._stream, []
            self._on_items(stream)

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
