"""Reading first: a reader behind its socket makes the loop's heavy work step aside."""

from __future__ import annotations

import asyncio
import socket
import time

from bridge.ami.protocol import serialize
from bridge.ami.read_priority import ReadPriority, read_priority
from tests.support.polling import eventually

from .test_reader import BANNER, Collector, RawPeer, connect


async def test_step_aside_waits_while_a_reader_is_behind_and_no_longer() -> None:
    priority = ReadPriority()
    assert await priority.step_aside() == 0.0  # nobody behind: no pause at all
    priority.set_behind(True)
    waiting = asyncio.ensure_future(priority.step_aside(longest=5))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    priority.set_behind(False)
    waited = await asyncio.wait_for(waiting, 1)
    assert 0.09 < waited < 1
    assert priority.yielded == waited


async def test_step_aside_is_bounded_when_the_reader_never_catches_up() -> None:
    priority = ReadPriority()
    priority.set_behind(True)
    began = time.monotonic()
    await priority.step_aside(longest=0.05)
    assert 0.04 < time.monotonic() - began < 0.5
    assert priority.readers_behind == 1


async def test_step_aside_waits_while_a_probe_is_answered() -> None:
    priority = ReadPriority()
    with priority.answering():
        waiting = asyncio.ensure_future(priority.step_aside(longest=5))
        await asyncio.sleep(0.1)
        assert not waiting.done()
    waited = await asyncio.wait_for(waiting, 1)
    assert 0.09 < waited < 1
    assert await priority.step_aside() == 0.0  # answered: no pause any more


async def test_a_reader_is_behind_while_more_waits_than_one_peek_and_not_after() -> None:
    event = serialize([("Event", "VarSet"), ("Channel", "PJSIP/1-1"), ("Value", "v" * 200)])
    seen: list[int] = []
    collected = Collector()

    def on_items(items: list) -> None:  # type: ignore[type-arg]
        seen.append(read_priority.readers_behind)
        collected(items)

    peer = RawPeer()
    try:
        opening = connect(peer, on_items, peek_size=4096)  # type: ignore[arg-type]
        sock = await asyncio.to_thread(peer.connected)
        sock.sendall(BANNER + event * 400)  # about 100 kB: many peeks' worth
        conn = await opening
        await eventually(lambda: len(collected.items) == 400)
        assert max(seen) >= 1, "the full peeks marked the reader behind"
        assert seen[-1] == 0, "the last, partial peek cleared it"
        assert read_priority.readers_behind == 0
        sock.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(conn.closed(), 5)
    finally:
        peer.close()
