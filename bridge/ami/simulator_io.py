"""One simulated manager session's socket, served by a thread of its own, as Asterisk does.

Approach
--------
Asterisk gives each manager session a thread that writes that session's events and
responses one message at a time (``send_string`` in ``main/manager.c``).  Each message
is one ``ast_iostream_write`` (``main/iostream.c``) on a non-blocking socket: ``write``,
and on ``EAGAIN`` a ``poll`` for output with what is left of ``writetimeout`` (100 ms by
default), counted from the moment that message's write began.  When the deadline
passes the write returns short, the session is destroyed, its socket closed and every
event still queued for it thrown away.

:class:`SessionIO` does the same.  Whoever has something for the session (the traffic
producer, the action handlers on the simulator's event loop) calls :meth:`SessionIO.put`
with whole, already encoded messages; nothing waits for the socket.  The thread takes
what is queued in one go and sends it with as few system calls as the kernel allows,
but it keeps Asterisk's rule per message: the clock restarts each time a message is
completely written, so a message is late when its own write has blocked for longer
than ``write_timeout``.  Responses go through the same queue as events, so the two stay
in order and never interleave mid-message.

The thread also reads the client's actions and hands the bytes to ``on_data`` (the
simulator's loop parses and answers them).  Over TLS the thread owns the ``SSLSocket``
alone, which OpenSSL needs: reads and writes never run concurrently on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from enum import Enum

__all__ = ["Ending", "SessionIO"]

log = logging.getLogger(__name__)

_READ_SIZE = 65536
_HANDSHAKE_TIMEOUT = 10.0
_TLS_RECORD = 16384
_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)
_POLL_IN = select.POLLIN | select.POLLPRI
_POLL_ERR = select.POLLERR | select.POLLHUP | select.POLLNVAL


class Ending(Enum):
    """Why a session's socket was closed."""

    #: The client closed the connection, or the socket failed.
    CLIENT = "client"
    #: Closed on purpose after what was queued was written (Goodbye, a failed login).
    CLOSED = "closed"
    #: Reset without flushing (:meth:`SessionIO.abort`).
    ABORTED = "aborted"
    #: A write blocked longer than the deadline: closed, the queue thrown away.
    DROPPED = "dropped"
    #: The TLS handshake failed; no session existed.
    HANDSHAKE = "handshake"


class SessionIO:
    """The socket of one session, written with a deadline per message by its own thread.

    Args:
        sock: the accepted connection.
        write_timeout: seconds one message's write may block (Asterisk's ``writetimeout``).
        on_data: called in the thread with the bytes of every read (the client's actions).
        on_end: called once in the thread when the socket is closed, with the reason.
        on_stall: called in the thread with how long each blocked message waited.
        ssl_context: a server context: the session is AMI over TLS.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        write_timeout: float,
        on_data: Callable[[bytes], None],
        on_end: Callable[[Ending], None],
        on_stall: Callable[[float], None],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.write_timeout = write_timeout
        self._sock: socket.socket = sock
        self._on_data = on_data
        self._on_end = on_end
        self._on_stall = on_stall
        self._ssl_context = ssl_context
        self._queue: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        #: Set when no more may be queued (closing, closed, dropped).
        self._shut = False
        self._close_requested = False
        self._abort_requested = False
        self._pipe_open = True
        self._thread = threading.Thread(target=self._run, name="ami-simulator-session", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_open(self) -> bool:
        return not self._shut

    def put(self, messages: Iterable[bytes]) -> None:
        """Queue whole encoded messages, in order; ignored once the session is closing."""
        with self._lock:
            if self._shut:
                return
            was_empty = not self._queue
            self._queue.extend(messages)
            if was_empty:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._wake_w, b"\0")

    def close(self) -> None:
        """Close once what is queued has been written (``Goodbye``, a failed login)."""
        with self._lock:
            self._shut = True
            self._close_requested = True
        self._wake()

    def abort(self) -> None:
        """Reset the connection now, nothing flushed, as a crash would."""
        with self._lock:
            self._shut = True
            self._abort_requested = True
        self._wake()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # -- the thread -----------------------------------------------------------------------

    def _wake(self) -> None:
        # Under the lock: once the thread has closed the pipe its descriptor may be reused.
        with self._lock, contextlib.suppress(BlockingIOError, OSError):
            if self._pipe_open:
                os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        ending = Ending.CLIENT
        try:
            ending = self._handshake() or self._serve()
        except OSError as e:
            log.debug("AMI simulator: session socket failed: %s", e)
        finally:
            with self._lock:
                self._shut = True
                self._queue.clear()
                self._pipe_open = False
            if ending is Ending.ABORTED:
                # SO_LINGER 0: close() sends a reset, as a crashed server's kernel would.
                with contextlib.suppress(OSError):
                    self._sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
            self._sock.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._on_end(ending)

    def _handshake(self) -> Ending | None:
        if self._ssl_context is None:
            return None
        sock = self._ssl_context.wrap_socket(
            self._sock, server_side=True, do_handshake_on_connect=False
        )
        self._sock = sock
        deadline = time.monotonic() + _HANDSHAKE_TIMEOUT
        while True:
            try:
                sock.do_handshake()
                return None
            except ssl.SSLWantReadError:
                events = select.POLLIN
            except ssl.SSLWantWriteError:
                events = select.POLLOUT
            except (ssl.SSLError, OSError) as e:
                log.debug("AMI simulator: TLS handshake failed: %s", e)
                return Ending.HANDSHAKE
            left = deadline - time.monotonic()
            if left <= 0 or self._abort_requested:
                return Ending.HANDSHAKE
            poller = select.poll()
            poller.register(sock, events)
            poller.register(self._wake_r, select.POLLIN)
            poller.poll(min(left, 0.5) * 1000)

    def _serve(self) -> Ending:
        sock = self._sock
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        buffer = memoryview(b"")
        ends: deque[int] = deque()  # where each message of ``buffer`` ends
        offset = 0
        message_began = 0.0
        blocked = False
        while True:
            if self._abort_requested:
                return Ending.ABORTED
            if offset == len(buffer):
                buffer, ends, offset = self._take()
                message_began = time.monotonic()
                blocked = False
            if offset < len(buffer):
                with contextlib.suppress(*_WOULD_BLOCK):
                    offset += self._send(buffer[offset:])
                now = time.monotonic()
                if ends and ends[0] <= offset:
                    if blocked:
                        self._on_stall(now - message_began)
                    while ends and ends[0] <= offset:
                        ends.popleft()
                    # Asterisk's clock is per message: the next one starts now.
                    message_began, blocked = now, False
                if offset < len(buffer):
                    blocked = True
                    left = message_began + self.write_timeout - now
                    if left <= 0:
                        self._on_stall(now - message_began)
                        return Ending.DROPPED
                    poller.register(sock, _POLL_IN | select.POLLOUT)
                    timeout_ms: float | None = max(1.0, left * 1000)
                else:
                    continue  # look for more queued at once, before polling
            elif self._close_requested:
                return Ending.CLOSED
            else:
                poller.register(sock, _POLL_IN)
                timeout_ms = None
            for fd, event in poller.poll(timeout_ms):
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                elif event & (_POLL_IN | _POLL_ERR) and not self._read():
                    return Ending.CLIENT

    def _take(self) -> tuple[memoryview, deque[int], int]:
        with self._lock:
            messages = list(self._queue)
            self._queue.clear()
        ends: deque[int] = deque()
        total = 0
        for message in messages:
            total += len(message)
            ends.append(total)
        return memoryview(b"".join(messages)), ends, 0

    def _send(self, data: memoryview) -> int:
        if self._ssl_context is not None:
            # OpenSSL writes a whole buffer or nothing: a record at a time keeps the
            # deadline per message, as over plain TCP.
            data = data[:_TLS_RECORD]
        return self._sock.send(data)

    def _read(self) -> bool:
        """Read what the client sent; False once it closed the connection."""
        while True:
            try:
                data = self._sock.recv(_READ_SIZE)
            except _WOULD_BLOCK:
                return True
            except (ConnectionError, OSError):
                return False
            if not data:
                return False
            self._on_data(data)
            if self._ssl_context is None:
                return True  # plain TCP: poll says when there is more
