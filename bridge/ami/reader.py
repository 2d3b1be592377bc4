"""The reader thread of one AMI connection: socket, framing, consumer, and nothing else.

Approach
--------
* **A thread of its own.**  Asterisk drops a manager session whose socket stays
  unwritable for ``writetimeout`` (100 ms by default) and throws its queued events away.
  So the read path does not share the event loop with rendering, publishing, the HTTP
  endpoints or anything else: one thread per connection waits in ``poll`` (the GIL is
  released there), reads, frames with the sans-I/O :class:`~bridge.ami.protocol.AmiParser`
  and hands each read's items to a synchronous ``consume`` callback *in this thread*
  (the pipeline journals them there).  Writing actions is the event loop's job.
* **Nothing read waits in the process.**  A plain socket is read with ``MSG_PEEK``: the
  parser frames what was peeked, ``consume`` journals the complete messages, and only
  then are exactly their bytes taken off the socket (``MSG_TRUNC``: discarded by the
  kernel, not copied again).  The incomplete tail stays in the kernel, so a SIGKILL at
  any moment loses nothing the bridge has taken off the socket.  When a peek completes
  nothing, ``SO_RCVLOWAT`` is raised to one byte more than the tail, so ``poll`` sleeps
  until something new arrives instead of spinning; it drops back to 1 after the next
  read that completes a message.  A message larger than one peek (or a tail that can
  never grow: the peer closed) is taken into the parser as it is, the one case where
  bytes wait in the process.
* **TLS has the same path.**  Ciphertext cannot be framed, so an ``amis://`` connection
  takes what it reads off the socket into an :class:`ssl.SSLObject` (a :class:`TlsChannel`
  shared with the loop, which encrypts actions through it under the same lock), frames
  the plaintext and hands it on within the same step.
* **Reading comes first.**  The thread shares the interpreter's lock with the event
  loop; a peek that comes back full (more waits in the kernel than one read takes) marks
  the reader *behind* in :data:`~bridge.ami.read_priority.read_priority`, and the loop's
  rendering and publishing step aside until it has caught up (see that module).
* **Gaps are measured where they happen.**  Before waiting, the thread polls without a
  timeout: if bytes are already waiting, the time since the previous read returned is a
  *read gap* (the socket had data while the thread was elsewhere: journalling, or kept
  off the CPU); a poll that has to wait is idle time, not a gap.  The kernel's receive
  queue (``SIOCINQ``) is sampled at most every 100 ms.  Both go to a
  :class:`ReadObserver`.

The thread ends at EOF, on a read error, after ``idle_timeout`` without a byte, when
``consume`` raises, or when :meth:`SocketReader.stop` asks; its last act is ``ended``
with the reason and the moment it saw it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import socket
import ssl
import struct
import termios
import threading
import time
from collections.abc import Callable
from typing import Protocol

from bridge.ami.protocol import AmiParser, Item
from bridge.ami.read_priority import ReadPriority, read_priority

__all__ = [
    "DEFAULT_PEEK_SIZE",
    "ReadObserver",
    "SocketReader",
    "TlsChannel",
    "fixed_receive_buffer",
    "widen_receive_buffer",
]

log = logging.getLogger(__name__)

#: Bytes looked at per read.  A message up to this size is framed in the kernel's buffer.
DEFAULT_PEEK_SIZE = 256 * 1024
_TLS_READ_SIZE = 256 * 1024
_QUEUE_SAMPLE_INTERVAL = 0.1
#: Autotuning gave a peeking reader 3-5 peeks of receive buffer (see
#: :func:`widen_receive_buffer`); a fixed buffer smaller than 8 is not worth losing it for.
_AUTOTUNED_PEEKS = 8
_EOF_EVENTS = select.POLLHUP | select.POLLERR | select.POLLRDHUP


class ReadObserver(Protocol):
    """Told what the reader sees; called on the reader thread, so it must be cheap."""

    def read_gap(self, seconds: float) -> None:
        """Bytes were waiting for ``seconds`` since the previous read returned."""

    def receive_queue(self, nbytes: int) -> None:
        """The socket's kernel receive queue holds ``nbytes`` (sampled)."""


def fixed_receive_buffer(rmem_max: int, peek_size: int) -> int | None:
    """The ``SO_RCVBUF`` to set for a reader of ``peek_size`` a read, or ``None`` to
    leave the buffer to autotuning (see :func:`widen_receive_buffer`)."""
    # The kernel doubles the value given, for its bookkeeping.
    return rmem_max if 2 * rmem_max > _AUTOTUNED_PEEKS * peek_size else None


def widen_receive_buffer(sock: socket.socket, peek_size: int = DEFAULT_PEEK_SIZE) -> None:
    """Give ``sock`` the largest receive buffer ``net.core.rmem_max`` allows, when that is
    more than autotuning would give this reader.

    Autotuning sizes the buffer by what each read takes, and a reader that peeks takes at
    most ``peek_size`` a read: with 256 KiB peeks it was measured to stay at 0.85-1.39 MB
    through a 30,000 events/s burst, full, while Asterisk's writes waited.  So the buffer
    is fixed at ``rmem_max`` when that is more than :data:`_AUTOTUNED_PEEKS` peeks; on a
    host whose ``rmem_max`` is smaller, autotuning is left alone.  Set before connecting:
    the window scale depends on it.
    """
    try:
        allowed = int(open("/proc/sys/net/core/rmem_max").read())  # noqa: SIM115
    except (OSError, ValueError):
        return
    size = fixed_receive_buffer(allowed, peek_size)
    if size is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


class TlsChannel:
    """One TLS session over memory buffers: the reader decrypts, the loop encrypts."""

    def __init__(self, context: ssl.SSLContext, server_hostname: str) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._object = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )
        self._lock = threading.Lock()

    def handshake_step(self, ciphertext: bytes) -> tuple[bool, bytes]:
        """Feed ``ciphertext`` and advance the handshake: (finished, bytes to send).

        Raises:
            ssl.SSLError: the handshake failed (certificate, protocol).
        """
        with self._lock:
            if ciphertext:
                self._incoming.write(ciphertext)
            try:
                self._object.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            return done, self._outgoing.read()

    def decrypt(self, ciphertext: bytes) -> tuple[bytes, bytes, bool]:
        """Feed ``ciphertext``: (plaintext, bytes to send, the peer closed the session).

        Raises:
            ssl.SSLError: the record layer failed.
        """
        chunks: list[bytes] = []
        closed = False
        with self._lock:
            if ciphertext:
                self._incoming.write(ciphertext)
            while True:
                try:
                    chunk = self._object.read(_TLS_READ_SIZE)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                chunks.append(chunk)
            return b"".join(chunks), self._outgoing.read(), closed

    def encrypt(self, plaintext: bytes) -> bytes:
        """The ciphertext of ``plaintext``, to be sent in the order of the calls."""
        with self._lock:
            self._object.write(plaintext)
            return self._outgoing.read()


class _ReadFailedError(Exception):
    """Internal: the socket read failed; the text is the reason."""


class SocketReader:
    """Reads one connected, non-blocking socket on a thread of its own.

    ``consume(items)`` gets every read's items, in wire order, on the reader thread.
    ``ended(reason, at, last_read_at)`` is called once, last, on the reader thread:
    ``reason`` is ``None`` after :meth:`stop`, ``at`` the wall time the end was seen and
    ``last_read_at`` the wall time of the last read that took bytes (``None`` if none).
    ``send`` (TLS only) gets ciphertext the session must send (a key update).
    """

    def __init__(
        self,
        sock: socket.socket,
        parser: AmiParser,
        *,
        consume: Callable[[list[Item]], None],
        ended: Callable[[str | None, float, float | None], None],
        peer: str,
        tls: TlsChannel | None = None,
        send: Callable[[bytes], None] = lambda data: None,
        idle_timeout: float | None = None,
        observer: ReadObserver | None = None,
        peek_size: int = DEFAULT_PEEK_SIZE,
        priority: ReadPriority = read_priority,
    ) -> None:
        self._sock = sock
        self._parser = parser
        self._consume = consume
        self._ended = ended
        self._tls = tls
        self._send = send
        self._idle_timeout = idle_timeout
        self._observer = observer
        self._peek_size = peek_size
        self._priority = priority
        self._behind = False
        self._scratch = bytearray(peek_size)
        self._lowat = 1
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        self._last_read_at: float | None = None
        self._peer = peer
        self._thread = threading.Thread(target=self._run, name=f"ami-reader {peer}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (from any thread); it calls ``ended`` with ``None``."""
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    @property
    def last_read_at(self) -> float | None:
        return self._last_read_at

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        reason: str | None = None
        try:
            reason = self._read_until_end()
        except _ReadFailedError as exc:
            reason = str(exc)
        except Exception as exc:
            # Dropping what follows would be silent loss: stop reading instead.
            log.exception("AMI event consumer failed; closing %s", self._peer)
            reason = f"event consumer failed: {type(exc).__name__}"
        self._mark_behind(False)
        at = time.time()
        try:
            self._ended(None if self._stopping else reason, at, self._last_read_at)
        except Exception:
            log.exception("AMI reader could not report the end of its connection")
        finally:
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _read_until_end(self) -> str | None:
        fd = self._sock.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLRDHUP)
        poller.register(self._wake_r, select.POLLIN)
        idle = self._idle_timeout
        observer = self._observer
        monotonic = time.monotonic
        last_read = last_data = next_sample = monotonic()
        if self._tls is not None and self._read_tls(b"") is None:
            return f"{self._peer} closed the connection"
        while not self._stop_requested():
            ready = poller.poll(0)
            if ready:
                gap = monotonic() - last_read
            else:
                gap = None
                wait = -1 if idle is None else max(0, int((last_data + idle - monotonic()) * 1e3))
                ready = poller.poll(wait)
                if not ready:
                    return f"nothing read from {self._peer} for {idle:g} s"
            if self._stop_requested():
                return None
            revents = 0
            for ready_fd, flags in ready:
                if ready_fd == fd:
                    revents = flags
            if not revents:
                continue
            if gap is not None and observer is not None:
                observer.read_gap(gap)
            took = self._read_plain(revents) if self._tls is None else self._read_tls_socket()
            now = last_read = monotonic()
            if took is None:
                return f"{self._peer} closed the connection"
            if took:
                last_data = now
                self._last_read_at = time.time()
            if observer is not None and now >= next_sample:
                next_sample = now + _QUEUE_SAMPLE_INTERVAL
                observer.receive_queue(self._receive_queue(fd))
        return None

    def _stop_requested(self) -> bool:
        # A method, not the attribute: another thread sets it between two looks.
        return self._stopping

    def _read_plain(self, revents: int) -> int | None:
        """One peek, frame, consume, take off; bytes taken off, or ``None`` at EOF."""
        sock, parser = self._sock, self._parser
        try:
            data = sock.recv(self._peek_size, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise self._failed(exc) from None
        if not data:
            self._consume(parser.feed_eof())
            return None
        # A full peek: more is waiting than one read takes; the loop steps aside.
        self._mark_behind(len(data) >= self._peek_size)
        items = parser.feed(data)
        # The incomplete tail (as far as it is in this peek) goes back to the kernel.
        keep = min(parser.buffered, len(data))
        if keep == len(data) and (
            len(data) >= self._peek_size or revents & _EOF_EVENTS or len(data) < self._lowat
        ):
            # Nothing completes within a peek (a huge message), or the tail can never
            # grow (the peer closed): take it into the parser.
            keep = 0
        parser.unfeed(keep)
        # Journalled before it leaves the socket: a kill in between loses nothing.
        if items:
            self._consume(items)
        take = len(data) - keep
        if take:
            try:
                taken = sock.recv_into(self._scratch, take, socket.MSG_TRUNC)
            except OSError as exc:
                raise self._failed(exc) from None
            if taken != take:  # cannot happen: the peeked bytes are in the kernel's queue
                raise _ReadFailedError(f"took {taken} of {take} peeked bytes")
            self._set_lowat(1)
        else:
            # Only an incomplete message waits: sleep until one more byte arrives.
            self._set_lowat(keep + 1)
        return take

    def _read_tls_socket(self) -> int | None:
        try:
            data = self._sock.recv(_TLS_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise self._failed(exc) from None
        if not data:
            self._consume(self._parser.feed_eof())
            return None
        self._mark_behind(len(data) >= _TLS_READ_SIZE)
        return self._read_tls(data)

    def _read_tls(self, ciphertext: bytes) -> int | None:
        assert self._tls is not None
        try:
            plaintext, reply, closed = self._tls.decrypt(ciphertext)
        except ssl.SSLError as exc:
            raise _ReadFailedError(f"TLS with {self._peer} failed: {exc.reason or exc}") from None
        if reply:
            self._send(reply)
        items = self._parser.feed(plaintext) if plaintext else []
        if closed:
            items += self._parser.feed_eof()
        if items:
            self._consume(items)
        return None if closed else len(ciphertext)

    def _mark_behind(self, behind: bool) -> None:
        if behind != self._behind:
            self._behind = behind
            self._priority.set_behind(behind)

    def _failed(self, exc: OSError) -> _ReadFailedError:
        detail = exc.strerror or str(exc) or type(exc).__name__
        return _ReadFailedError(f"reading from {self._peer} failed: {detail}")

    def _set_lowat(self, value: int) -> None:
        if value != self._lowat:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, value)
            self._lowat = value

    @staticmethod
    def _receive_queue(fd: int) -> int:
        try:
            raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")  # SIOCINQ on sockets
        except OSError:
            return 0
        return int(struct.unpack("i", raw)[0])
