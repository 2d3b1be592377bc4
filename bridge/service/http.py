"""A tiny HTTP endpoint for probes and Prometheus: ``/healthz``, ``/readyz``, ``/metrics``.

Approach
--------
Three GET routes do not justify a web framework: asyncio streams serve them, on an event
loop of their own in a thread of their own rather than on the bridge's loop.  During a
burst the bridge's loop renders and publishes in turns of tens of milliseconds, and a
probe queued behind them can miss a kubelet's deadline; the probes' loop only waits for
the interpreter's lock.  One loop serves every client at once (a silent client holds
nothing but its own connection, for at most ``_CLIENT_TIMEOUT``), and wakes once per
request rather than once per thread hand-off as a thread-per-request server would.

While it answers a request, the bridge's rendering and publishing step aside
(:mod:`bridge.ami.read_priority`), so the answer is not written in turns with them.

``ready()`` and ``metrics()`` run on that thread: they read plain attributes of the live
state (each read is atomic in Python), and ``prometheus_client`` is thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future

from prometheus_client import CONTENT_TYPE_LATEST

from bridge.ami.read_priority import read_priority

__all__ = ["HealthServer"]

log = logging.getLogger(__name__)

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
#: A client that has not sent its request within this long is dropped.
_CLIENT_TIMEOUT = 5.0


class HealthServer:
    """Serves the probes.  ``ready()`` returns ``(is_ready, explanation)``.

    ``ready`` and ``metrics`` are called on the server's own thread.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ready: Callable[[], tuple[bool, str]],
        metrics: Callable[[], bytes],
    ) -> None:
        self._host, self._port = host, port
        self._ready, self._metrics = ready, metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen (once: a second call keeps the socket bound by the first).

        Raises:
            OSError: the address cannot be bound (a port in use, an address not on this host).
        """
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        bound: Future[asyncio.Server] = Future()
        thread = threading.Thread(
            target=self._run, args=(loop, bound), name="health-http", daemon=True
        )
        thread.start()
        try:
            self._server = await asyncio.wrap_future(bound)
        except OSError:
            thread.join()
            raise
        self._loop, self._thread = loop, thread
        log.info("health and metrics on http://%s:%d", self._host, self.port)

    async def stop(self) -> None:
        loop, thread, server = self._loop, self._thread, self._server
        if loop is None or thread is None or server is None:
            return
        self._loop = self._thread = self._server = None
        loop.call_soon_threadsafe(server.close)
        await asyncio.to_thread(thread.join)

    def _run(self, loop: asyncio.AbstractEventLoop, bound: Future[asyncio.Server]) -> None:
        """The thread: bind, report it to :meth:`start`, serve until the server closes."""
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve_until_closed(bound))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve_until_closed(self, bound: Future[asyncio.Server]) -> None:
        try:
            server = await asyncio.start_server(self._serve, self._host, self._port)
        except OSError as exc:
            bound.set_exception(exc)
            return
        bound.set_result(server)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_CLIENT_TIMEOUT):
                request = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = request.decode("latin-1").partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            # Once the request is in, the bridge's rendering and publishing wait for the
            # answer (never while a client is still sending: that could take seconds).
            with read_priority.answering():
                status, content_type, body = self._route(method, path)
                head = (
                    f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                writer.write(head.encode("latin-1") + (body if method != "HEAD" else b""))
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            ready, why = self._ready()
            return (200 if ready else 503), "text/plain", why.encode() + b"\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, self._metrics()
        return 404, "text/plain", b"not found\n"
