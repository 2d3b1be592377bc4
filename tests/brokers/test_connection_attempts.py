"""A failed attempt to reach a broker leaves nothing behind for the garbage collector."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import warnings

import pytest

from bridge.publish.broker import BrokerUnavailable
from bridge.publish.connection import open_connection


async def _closing_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()  # accepted and reset at once, as a proxy before a down broker


async def _silent_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accepted, never answered: the AMQP handshake times out
    writer.close()


@pytest.mark.parametrize("peer", ["refused", "closing", "silent"])
async def test_a_failed_attempt_is_closed_by_the_bridge_not_the_collector(peer: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as spare:
        port = spare.getsockname()[1]
    listener = None
    if peer != "refused":
        handler = _closing_peer if peer == "closing" else _silent_peer
        listener = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(BrokerUnavailable):
                await open_connection(
                    f"amqp://guest:guest@127.0.0.1:{port}/", name="t", timeout=0.5
                )
            # The bridge's reader threads allocate the most, so the collector often runs
            # there, where no event loop could run a close() left to it.
            collector = threading.Thread(target=gc.collect)
            collector.start()
            collector.join()
            await asyncio.sleep(0.01)
    finally:
        if listener is not None:
            listener.close()
            await listener.wait_closed()
    assert not [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
