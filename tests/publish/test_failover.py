"""The failover policy: the next node at once, a backoff only after a whole round."""

from __future__ import annotations

import asyncio
import random

import pytest

from bridge.ami.backoff import Backoff
from bridge.publish.broker import BrokerRefused, BrokerUnavailable
from bridge.publish.failover import BrokerEndpoints, FailoverPolicy, probe, reconnect

URLS = ["amqp://a:5672/", "amqp://b:5672/", "amqp://c:5672/"]


def policy(urls: list[str] = URLS) -> FailoverPolicy:
    # rng returning 0.999... makes every delay the top of its window.
    return FailoverPolicy(urls, backoff=Backoff(base=1.0, cap=5.0, rng=lambda: 0.999))


def test_a_failed_node_is_followed_by_the_next_at_once_and_a_round_by_a_backoff() -> None:
    p = policy()
    tried = []
    for _ in range(7):
        url, delay = p.next_attempt()
        tried.append((url[7], round(delay, 2)))
        p.failed(BrokerUnavailable("down"))
    assert tried == [
        ("a", 0.0),
        ("b", 0.0),
        ("c", 0.0),
        ("a", 1.0),  # a whole round failed: back off, doubling up to the cap
        ("b", 0.0),
        ("c", 0.0),
        ("a", 2.0),
    ]


def test_a_lost_healthy_connection_tries_the_next_node_at_once() -> None:
    p = policy()
    assert p.next_attempt() == (URLS[0], 0.0)
    p.connected()
    p.healthy()
    p.lost()
    assert p.next_attempt() == (URLS[1], 0.0)


def test_a_connection_lost_before_it_proved_healthy_counts_as_a_failure() -> None:
    p = policy(URLS[:1])
    for expected in (0.0, 1.0, 2.0, 4.0, 5.0, 5.0):
        _, delay = p.next_attempt()
        assert round(delay, 2) == expected
        p.connected()
        p.lost()  # accepted, then refused to publish: no tight loop
    p.healthy()
    assert p.next_attempt()[1] == 0.0


def test_refused_nodes_are_not_probed_and_unreachable_ones_are() -> None:
    p = policy(URLS[:2])
    p.next_attempt()
    p.failed(BrokerRefused("ACCESS_REFUSED"))
    p.next_attempt()
    p.failed(BrokerUnavailable("connection refused"))
    assert p.unreachable == {URLS[1]}


def test_shuffled_endpoints_keep_every_node() -> None:
    endpoints = BrokerEndpoints(tuple(URLS), shuffle=True)
    orders = {tuple(endpoints.policy(random.Random(seed)).urls) for seed in range(20)}
    assert len(orders) > 1
    assert all(sorted(order) == URLS for order in orders)


def test_an_empty_endpoint_list_is_refused() -> None:
    with pytest.raises(ValueError):
        BrokerEndpoints(())


async def test_probe_tells_a_broker_from_a_closed_port_and_a_silent_one() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        await asyncio.sleep(2)
        writer.close()

    async def amqp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readexactly(8) == b"AMQP\x00\x00\x09\x01"
        writer.write(b"\x01\x00\x00\x00\x00\x01\x00")  # the start of Connection.Start
        await writer.drain()
        writer.close()

    servers = [await asyncio.start_server(handler, "127.0.0.1", 0) for handler in (silent, amqp)]
    try:
        silent_port, amqp_port = (s.sockets[0].getsockname()[1] for s in servers)
        assert await probe(f"amqp://127.0.0.1:{amqp_port}/")
        assert not await probe(f"amqp://127.0.0.1:{silent_port}/")
    finally:
        for server in servers:
            server.close()
    assert not await probe(f"amqp://127.0.0.1:{amqp_port}/")  # closed now


async def test_reconnect_gives_up_only_when_told_and_stops_on_request() -> None:
    attempts: list[str] = []

    async def refuse(url: str) -> bool:
        attempts.append(url)
        raise BrokerRefused("ACCESS_REFUSED")

    with pytest.raises(BrokerRefused):
        await reconnect(policy(), refuse, what="test", stop=asyncio.Event(), give_up=lambda e: True)
    assert attempts == [URLS[0]]

    stop = asyncio.Event()
    stop.set()
    assert await reconnect(policy(), refuse, what="test", stop=stop) is None
