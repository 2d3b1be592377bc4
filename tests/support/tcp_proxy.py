"""A loopback TCP proxy the tests control, to put outages between a client and a server.

Each accepted connection gets its own upstream connection and two pump tasks, one per
direction.  The proxy has three states:

* forwarding (the start, and after :meth:`TcpProxy.heal`);
* stalled (:meth:`TcpProxy.stall`): connections stay open but no byte moves either way,
  as with a hung peer or a black-holed route; bytes resume on :meth:`TcpProxy.heal`;
* cut (:meth:`TcpProxy.cut`): every current connection is aborted and new ones are
  accepted and closed at once, as with a peer that is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from types import TracebackType

__all__ = ["TcpProxy"]

_CHUNK = 64 * 1024


class TcpProxy:
    """``async with TcpProxy(host, port) as proxy:`` then connect to ``127.0.0.1:proxy.port``.

    With ``tls`` (a server context) the proxy terminates TLS in front of a plain upstream.
    With ``port`` it listens there instead of on a free port, so a client can be given
    its address before it listens (connections are refused until then, as by a peer
    that is down).
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        tls: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.tls = tls
        self.port = port
        #: Connections accepted so far, including the ones refused while cut.
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._cut = False
        self._handlers: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.WriteTransport] = set()

    def is_cut(self) -> bool:
        """True from :meth:`cut` until :meth:`heal`."""
        return self._cut

    @property
    def active(self) -> int:
        """Client connections currently being forwarded (or stalled)."""
        return len(self._handlers)

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, ssl=self.tls
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self.cut()
        await self._server.wait_closed()

    async def cut(self) -> None:
        """Abort every connection and refuse new ones until :meth:`heal`."""
        self._cut = True
        self._flowing.set()  # a stalled pump must wake up to see its transport is gone
        for transport in list(self._transports):
            transport.abort()
        # Handlers end on their own once their transports are gone; cancelling them
        # instead would make asyncio's server log the cancellation as an error.
        handlers = list(self._handlers)
        if handlers:
            _, stuck = await asyncio.wait(handlers, timeout=5)
            for handler in stuck:
                handler.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)

    def stall(self) -> None:
        """Keep connections open but stop moving bytes until :meth:`heal`."""
        self._flowing.clear()

    def heal(self) -> None:
        """Forward again: accept new connections and resume stalled ones."""
        self._cut = False
        self._flowing.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.is_cut():
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._transports.add(writer.transport)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
            if self.is_cut():  # cut while this connection was being set up
                return
            self._transports.add(upstream.transport)
            pumps = [
                asyncio.create_task(self._pump(reader, upstream)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            try:
                # When either side ends, the whole connection ends.
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except OSError:
            pass  # upstream refused, or a transport was aborted under us
        finally:
            for side in (writer, upstream):
                if side is not None:
                    side.transport.abort()
                    self._transports.discard(side.transport)
            self._handlers.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while True:
                await self._flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    return
                await self._flowing.wait()
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
