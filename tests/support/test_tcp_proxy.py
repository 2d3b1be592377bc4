"""The test proxy forwards, stalls, cuts and heals, against a loopback echo server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.tcp_proxy import TcpProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def proxy(echo_port: int) -> AsyncIterator[TcpProxy]:
    async with TcpProxy("127.0.0.1", echo_port) as proxy:
        yield proxy


async def _connect(proxy: TcpProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> bytes:
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(2):
        return await reader.readexactly(len(data))


async def test_forwards_both_ways(proxy: TcpProxy) -> None:
    reader, writer = await _connect(proxy)
    payload = bytes(range(256)) * 1000  # larger than one read chunk
    assert await _round_trip(reader, writer, payload) == payload
    assert proxy.active == 1
    writer.close()
    await writer.wait_closed()


async def test_cut_aborts_connections_and_refuses_new_ones(proxy: TcpProxy) -> None:
    reader, writer = await _connect(proxy)
    assert await _round_trip(reader, writer, b"before") == b"before"

    await proxy.cut()
    async with asyncio.timeout(2):
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await reader.readexactly(1)  # EOF or reset, never data
    assert proxy.active == 0

    reader2, writer2 = await _connect(proxy)  # accepted, then closed at once
    async with asyncio.timeout(2):
        assert await reader2.read(10) == b""
    writer.close()
    writer2.close()


async def test_heal_after_cut_forwards_new_connections(proxy: TcpProxy) -> None:
    await proxy.cut()
    proxy.heal()
    reader, writer = await _connect(proxy)
    assert await _round_trip(reader, writer, b"again") == b"again"
    writer.close()
    await writer.wait_closed()


async def test_stall_holds_bytes_until_heal(proxy: TcpProxy) -> None:
    reader, writer = await _connect(proxy)
    assert await _round_trip(reader, writer, b"x") == b"x"

    proxy.stall()
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await reader.readexactly(4)
    assert proxy.active == 1  # still connected

    proxy.heal()
    async with asyncio.timeout(2):
        assert await reader.readexactly(4) == b"held"
    writer.close()
    await writer.wait_closed()


async def test_upstream_down_closes_the_client() -> None:
    probe = await asyncio.start_server(_echo, "127.0.0.1", 0)
    dead_port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    async with TcpProxy("127.0.0.1", dead_port) as proxy:
        reader, writer = await _connect(proxy)
        async with asyncio.timeout(2):
            assert await reader.read(10) == b""
        assert proxy.accepted == 1
        writer.close()
