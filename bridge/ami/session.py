"""The robust AMI session: log in, stream events, and reconnect forever until stopped.

Approach
--------
One loop, one connection at a time: connect, log in (MD5 challenge by default), run
until the connection closes, back off with full jitter, reconnect.  Each successful
login opens a new *epoch* (by default unix milliseconds, strictly increasing), so the
consumer can tell which events belong to which connection: Asterisk keeps no per-client
state across reconnects, and events in the gap are simply gone.

What the listener is told, and in which order, is set out in :mod:`bridge.ami.listener`.

The first login action (see :mod:`bridge.ami.login`) is sent right after the socket
opens, without waiting for the banner (Asterisk reads it once its banner is out); the
banner is still required before the session counts as connected.  Wrong credentials
raise :class:`LoginFailed`, or are retried with the same backoff when
``retry_on_login_failure`` is set.  The secret is read from its source at each login and
never logged, stored in a repr, or put in an error.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from bridge.ami.actions import ActionResult, AnswerHook
from bridge.ami.backoff import Backoff
from bridge.ami.client import AmiConnection, ConnectionOptions
from bridge.ami.errors import RETRYABLE, ActionTimeout, AmiConnectionError, AmiError, LoginFailed
from bridge.ami.listener import Connected, ItemRouter, SessionListener
from bridge.ami.login import AuthMethod, SecretSource, log_in
from bridge.ami.protocol import HeaderInput
from bridge.ami.reader import ReadObserver
from bridge.ami.target import AmiTarget
from bridge.logs import server_log
from bridge.tls import PathLike, tls_client_context

__all__ = [
    "AmiSession",
    "EpochClock",
    "next_unix_ms_epoch",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Failures after which the session reconnects (login refusals are decided separately).
_RECONNECT_ON: tuple[type[BaseException], ...] = (*RETRYABLE, ActionTimeout)


class EpochClock:
    """Unix time in milliseconds, forced strictly increasing within the process.

    :meth:`observe` raises the floor: a hot-standby member is told the epochs its peer
    publishes under, and mints none at or below them (even with its clock behind).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def __call__(self) -> int:
        with self._lock:
            self._last = max(time.time_ns() // 1_000_000, self._last + 1)
            return self._last

    def observe(self, epoch: int) -> None:
        """Every epoch handed out from now on is greater than ``epoch``."""
        with self._lock:
            self._last = max(self._last, epoch)


#: The default epoch source: unix milliseconds, never repeating within the process.
next_unix_ms_epoch = EpochClock()


def _client_context(target: AmiTarget, ca_file: PathLike | None) -> ssl.SSLContext:
    """The TLS context for ``target``; an unreadable CA file is a configuration error."""
    try:
        return tls_client_context(ca_file)
    except OSError as exc:  # ssl.SSLError included
        raise ValueError(f"the CA file for {target} is unusable: {exc}") from None


class _StopRequestedError(Exception):
    """Internal: :meth:`AmiSession.stop` interrupted the current step."""


class AmiSession:
    """A self-healing AMI session that reports to a :class:`SessionListener`.

    ``await run()`` until ``await stop()``; use :meth:`send_action` for actions on the
    current connection.
    """

    def __init__(
        self,
        target: AmiTarget,
        secret: SecretSource,
        listener: SessionListener,
        *,
        auth: AuthMethod = "md5",
        events: str = "on",
        retry_on_login_failure: bool = True,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        rng: Callable[[], float] = random.random,
        ca_file: PathLike | None = None,
        connection: ConnectionOptions | None = None,
        action_timeout: float = 10.0,
        logoff_timeout: float = 1.0,
        next_epoch: Callable[[], int] = next_unix_ms_epoch,
        name: str | None = None,
        read_observer: ReadObserver | None = None,
    ) -> None:
        """Configure the session; nothing connects before :meth:`run`.

        ``events`` is the login event mask (``on``, ``off``, class names or a number).
        ``ca_file`` adds a CA bundle for ``amis://`` targets; verification is always on.
        ``name`` (the server id) starts each log line of the session.

        Raises:
            ValueError: ``auth`` is unknown, ``ca_file`` is given for a plain target, or
                ``ca_file`` cannot be read or holds no certificate (the text names it).
        """
        if auth not in ("md5", "plain"):
            raise ValueError(f"auth must be 'md5' or 'plain', got {auth!r}")
        if ca_file is not None and not target.tls:
            raise ValueError(f"a CA file is only used with amis:// targets, not {target}")
        self.target = target
        self._log = server_log(log, name)
        self._secret = secret
        self._listener = listener
        self._auth = auth
        self._events = events
        self._retry_on_login_failure = retry_on_login_failure
        self._backoff = Backoff(base=backoff_base, cap=backoff_cap, rng=rng)
        self._ssl_context = _client_context(target, ca_file) if target.tls else None
        self._options = connection or ConnectionOptions()
        self._action_timeout = action_timeout
        self._logoff_timeout = logoff_timeout
        self._next_epoch = next_epoch
        self._read_observer = read_observer
        self._conn: AmiConnection | None = None
        self._epoch: int | None = None
        self._logins = 0
        self._running = False
        self._stop_began = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._finished = asyncio.Event()

    def __repr__(self) -> str:
        return f"AmiSession({self.target}, connected={self.connected}, epoch={self._epoch})"

    # -- state for health checks and metrics ------------------------------------------

    @property
    def connected(self) -> bool:
        """True while logged in on a live connection."""
        return self._conn is not None and not self._conn.is_closed

    @property
    def epoch(self) -> int | None:
        """The epoch of the current (or last) connection; ``None`` before the first."""
        return self._epoch

    @property
    def reconnects(self) -> int:
        """Successful logins after the first one."""
        return max(0, self._logins - 1)

    # -- public API -------------------------------------------------------------------

    async def send_action(
        self,
        action: str,
        headers: HeaderInput = (),
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the deadline is part of the result
        on_answer: AnswerHook | None = None,
        action_tag: str | None = None,
    ) -> ActionResult:
        """Send an action on the current connection (see :meth:`AmiConnection.send_action`).

        Raises:
            AmiConnectionError: not connected, or the connection closed while waiting.
            ActionTimeout: no response within ``timeout`` (default: ``action_timeout``).
            LocalProtocolError: a header cannot be sent.
        """
        conn = self._conn
        if conn is None or conn.is_closed:
            raise AmiConnectionError(f"not connected to {self.target}")
        deadline = self._action_timeout if timeout is None else timeout
        return await conn.send_action(
            action, headers, timeout=deadline, on_answer=on_answer, action_tag=action_tag
        )

    async def run(self) -> None:
        """Connect and keep reconnecting until :meth:`stop`; returns after the stop.

        Raises:
            LoginFailed: the credentials were refused and ``retry_on_login_failure`` is
                off.
            RuntimeError: ``run()`` is already running.
        """
        if self._running:
            raise RuntimeError("AmiSession.run() is already running")
        self._running = True
        self._finished.clear()
        try:
            while not self._stop_began.is_set():
                delay = await self._unless_stopped(self._attempt())
                if self._stop_began.is_set():
                    break
                await self._unless_stopped(asyncio.sleep(delay))
        except _StopRequestedError:
            pass
        finally:
            self._running = False
            self._finished.set()
        self._log.info("AMI session to %s stopped", self.target)

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - bounds the shutdown
        """Log off (waiting briefly for ``Goodbye``), close, and let :meth:`run` return.

        Waits at most ``timeout`` seconds for ``run()`` to finish.
        """
        self._stop_began.set()
        conn = self._conn
        if conn is not None and not conn.is_closed:
            conn.ending("session stopped")
            try:
                await conn.send_action("Logoff", timeout=min(self._logoff_timeout, timeout))
            except AmiError as exc:
                self._log.debug("AMI Logoff on %s got no answer: %s", self.target, exc)
            await conn.close("session stopped")
        self._stop_requested.set()
        if not self._running:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._finished.wait()
        except TimeoutError:
            self._log.warning("AMI session to %s did not stop within %g s", self.target, timeout)

    # -- the reconnect loop -----------------------------------------------------------

    async def _unless_stopped(self, step: Coroutine[Any, Any, _T]) -> _T:
        """Run ``step``; cancel it and raise :class:`_StopRequestedError` if a stop is requested."""
        work = asyncio.create_task(step)
        stop = asyncio.create_task(self._stop_requested.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            work.cancel()
            # Let both finish their own cleanup (closing a half-open connection, say).
            await asyncio.wait({work, stop})
        if work.cancelled():
            raise _StopRequestedError
        return work.result()

    async def _attempt(self) -> float:
        """One connection's life; returns the delay before the next attempt."""
        try:
            reason = await self._connect_and_serve()
        except LoginFailed as exc:
            if not self._retry_on_login_failure:
                self._log.error("%s; not retrying", exc)
                raise
            delay = self._backoff.next_delay()
            self._log.error("%s; retrying in %.2f s", exc, delay)
            return delay
        except _RECONNECT_ON as exc:
            delay = self._backoff.next_delay()
            self._log.warning("AMI connection failed: %s; retrying in %.2f s", exc, delay)
            return delay
        if self._stop_began.is_set():
            return 0.0
        delay = self._backoff.next_delay()
        self._log.warning(
            "AMI connection to %s lost (epoch %s): %s; reconnecting in %.2f s",
            self.target,
            self._epoch,
            reason,
            delay,
        )
        return delay

    async def _connect_and_serve(self) -> str:
        """Connect, log in, and serve until the connection closes; returns why it closed.

        Raises:
            LoginFailed, AmiConnectionError, ActionTimeout: the connection never got
                to the logged-in state.
        """
        router = ItemRouter(self._listener, self.target)
        conn = await AmiConnection.open(
            self.target,
            on_items=router,
            on_end=router.end,
            ssl_context=self._ssl_context,
            options=self._options,
            wait_for_banner=False,
            observer=self._read_observer,
        )
        try:
            await log_in(
                conn,
                self._secret,
                auth=self._auth,
                events=self._events,
                timeout=self._action_timeout,
            )
            banner = await conn.wait_banner()
            epoch = self._next_epoch()
            self._epoch = epoch
            self._conn = conn
            self._logins += 1
            self._backoff.reset()
            version = banner.version if banner else None
            self._log.info("AMI logged in to %s (AMI %s), epoch %d", self.target, version, epoch)
            self._listener.on_connected(
                Connected(epoch, self.target, banner.line if banner else None, version, time.time())
            )
            reason = "session stopped"
            try:
                router.start(epoch)
                closed = await conn.closed()
                if not self._stop_began.is_set():
                    reason = str(closed)
            finally:
                self._conn = None
                # The reader reports the end (on_disconnected) itself, when it sees it.
                await conn.close(reason)
            return reason
        finally:
            if router.held:
                self._log.debug("discarding %d AMI items read before a failed login", router.held)
            await conn.close("session ended")
