"""AmiConnection over real loopback TCP against the fake AMI server."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from bridge.ami.client import AmiConnection, ConnectionOptions, ItemsCallback, StreamItem
from bridge.ami.errors import ActionTimeout, AmiConnectionError
from bridge.ami.protocol import Event, Malformed, Message
from bridge.ami.target import AmiTarget
from tests.support.polling import eventually

from .fake_server import FakeAmiServer, ServerConnection, reply

QUIET = ConnectionOptions(ping_interval=None, connect_timeout=2.0, banner_timeout=2.0)


class Stream:
    """Collects what the connection delivers to ``on_items``, one list per read."""

    def __init__(self) -> None:
        self.batches: list[list[StreamItem]] = []

    def __call__(self, items: list[StreamItem]) -> None:
        self.batches.append(items)

    @property
    def items(self) -> list[StreamItem]:
        return [item for batch in self.batches for item in batch]

    def events(self) -> Iterator[Event]:
        return (item for item in self.items if isinstance(item, Event))


async def connect(
    server: FakeAmiServer, on_items: ItemsCallback | None = None, options: ConnectionOptions = QUIET
) -> AmiConnection:
    return await AmiConnection.open(server.target(), on_items=on_items or Stream(), options=options)


async def login(conn: AmiConnection) -> None:
    result = await conn.send_action(
        "Login", [("Username", "bridge"), ("Secret", "s3cret")], timeout=2
    )
    assert result.ok


async def test_banner_split_across_writes_is_read_whole() -> None:
    async with FakeAmiServer(banner_chunks=4) as server, await connect(server) as conn:
        assert conn.banner is not None
        assert conn.banner.line == "Asterisk Call Manager/11.0.0"
        assert conn.banner.version == "11.0.0"


async def test_banner_and_login_response_in_one_write() -> None:
    stream = Stream()
    async with FakeAmiServer(banner_with_first_response=True) as server:
        conn = await AmiConnection.open(
            server.target(), on_items=stream, options=QUIET, wait_for_banner=False
        )
        async with conn:
            assert conn.banner is None
            await login(conn)
            banner = await conn.wait_banner()
            assert banner is not None
            assert banner.version == "11.0.0"
            # Banner, response and FullyBooted came in one write and one read.
            assert len(stream.batches) == 1
            assert [e.name for e in stream.events()] == ["FullyBooted"]


async def test_no_banner_within_the_deadline_fails_clearly() -> None:
    async with FakeAmiServer(banner=None) as server:
        options = ConnectionOptions(ping_interval=None, banner_timeout=0.2)
        started = time.monotonic()
        with pytest.raises(AmiConnectionError, match=r"no AMI banner within 0\.2 s"):
            await AmiConnection.open(server.target(), on_items=Stream(), options=options)
        assert time.monotonic() - started < 1.5


async def test_connection_refused_names_the_target() -> None:
    async with FakeAmiServer() as server:
        target = server.target()
    with pytest.raises(AmiConnectionError, match=r"cannot connect to ami://bridge@127\.0\.0\.1"):
        await AmiConnection.open(target, on_items=Stream(), options=QUIET)


async def test_error_response_is_returned_not_raised() -> None:
    async with FakeAmiServer() as server, await connect(server) as conn:
        result = await conn.send_action("Status", timeout=2)
        assert not result.ok
        assert result.response.get("Message") == "Permission denied"
        action = server.latest.actions[-1]
        assert action.get("Action") == "Status"
        assert action.action_id is not None
        assert action.action_id == result.response.action_id


async def test_responses_are_matched_by_action_id_not_by_order() -> None:
    held: list[Message] = []

    async def echo(connection: ServerConnection, action: Message) -> None:
        held.append(action)
        if len(held) == 2:  # answer the second action first
            await connection.send(
                *(reply(a, "Success", ("Tag", a.get("Tag") or "")) for a in reversed(held))
            )

    async with FakeAmiServer(handlers={"echo": echo}) as server, await connect(server) as conn:
        first, second = await asyncio.gather(
            conn.send_action("Echo", [("Tag", "first")], timeout=2),
            conn.send_action("Echo", [("Tag", "second")], timeout=2),
        )
        assert first.response.get("Tag") == "first"
        assert second.response.get("Tag") == "second"
        ids = [a.action_id for a in server.latest.actions]
        assert len(set(ids)) == len(ids) == 2


async def test_unanswered_action_times_out() -> None:
    async def ignore(connection: ServerConnection, action: Message) -> None:
        return None

    async with (
        FakeAmiServer(handlers={"blackhole": ignore}) as server,
        await connect(server) as conn,
    ):
        with pytest.raises(ActionTimeout, match="no response to Blackhole"):
            await conn.send_action("Blackhole", timeout=0.1)
        assert not conn.is_closed


async def test_burst_of_events_while_an_action_is_pending() -> None:
    count = 5000

    async def burst(connection: ServerConnection, action: Message) -> None:
        events = [
            [("Event", "UserEvent"), ("Privilege", "user,all"), ("Seq", str(n))]
            for n in range(count)
        ]
        await connection.send(*events[: count // 2])
        await connection.send(*events[count // 2 :], reply(action, "Success"))

    stream = Stream()
    async with (
        FakeAmiServer(handlers={"burst": burst}) as server,
        await connect(server, stream) as conn,
    ):
        await login(conn)
        result = await conn.send_action("Burst", timeout=5)
        assert result.ok
        await eventually(lambda: sum(1 for _ in stream.events()) >= count + 1)
        seqs = [e.get("Seq") for e in stream.events() if e.name == "UserEvent"]
        assert seqs == [str(n) for n in range(count)]
        assert len(stream.batches) > 1, "delivered per read, not all at once"


async def test_list_action_collects_its_items_and_leaves_other_events_in_the_stream() -> None:
    async def queue_status(connection: ServerConnection, action: Message) -> None:
        aid = action.action_id or ""
        unrelated = [("Event", "Newchannel"), ("Privilege", "call,all"), ("Channel", "PJSIP/1")]
        complete = [("Event", "QueueStatusComplete"), ("ActionID", aid), ("EventList", "Complete")]
        complete.append(("ListItems", "2"))
        await connection.send(
            reply(action, "Success", ("EventList", "start"), ("Message", "Queue status follows"))
        )
        await connection.send(
            [("Event", "QueueParams"), ("ActionID", aid), ("Queue", "support")],
            unrelated,
        )
        await asyncio.sleep(0.02)
        await connection.send(
            [("Event", "QueueMember"), ("Queue", "support"), ("ActionID", aid)],
            [("Event", "Hangup"), ("Privilege", "call,all"), ("ActionID", "someone-else")],
            complete,
            [("Event", "Newstate"), ("Privilege", "call,all")],
        )

    stream = Stream()
    async with (
        FakeAmiServer(handlers={"queuestatus": queue_status}) as server,
        await connect(server, stream) as conn,
    ):
        await login(conn)
        result = await conn.send_action("QueueStatus", timeout=2)
        assert result.ok
        assert [e.name for e in result.events] == ["QueueParams", "QueueMember"]
        assert result.complete is not None
        assert result.complete.get("ListItems") == "2"
        await eventually(lambda: any(e.name == "Newstate" for e in stream.events()))
        names = [e.name for e in stream.events()]
        assert names == ["FullyBooted", "Newchannel", "Hangup", "Newstate"]


async def test_message_neither_event_nor_response_reaches_the_stream_as_malformed() -> None:
    async def odd(connection: ServerConnection, action: Message) -> None:
        await connection.send([("Weird", "1")], reply(action, "Success"))

    stream = Stream()
    async with (
        FakeAmiServer(handlers={"odd": odd}) as server,
        await connect(server, stream) as conn,
    ):
        await login(conn)
        await conn.send_action("Odd", timeout=2)
        malformed = [i for i in stream.items if isinstance(i, Malformed)]
        assert len(malformed) == 1
        assert malformed[0].headers == (("Weird", "1"),)


async def test_server_that_stops_answering_ping_is_closed_in_time() -> None:
    interval, timeout = 0.2, 0.2
    options = ConnectionOptions(ping_interval=interval, ping_timeout=timeout)
    async with FakeAmiServer() as server, await connect(server, Stream(), options) as conn:
        await login(conn)
        await asyncio.sleep(interval * 2.5)
        assert not conn.is_closed, "answered Pings keep the connection up"
        assert len(server.latest.actions_named("Ping")) >= 2
        server.answer_ping = False
        silenced = time.monotonic()
        async with asyncio.timeout(3):
            reason = await conn.closed()
        elapsed = time.monotonic() - silenced
        assert "did not answer Ping within 0.2 s" in str(reason)
        assert elapsed <= interval + timeout + 0.3


async def test_read_idle_timeout_closes_a_silent_connection() -> None:
    async with FakeAmiServer() as server:
        conn = await connect(
            server, options=ConnectionOptions(ping_interval=None, idle_timeout=0.2)
        )
        started = time.monotonic()
        async with asyncio.timeout(3):
            reason = await conn.closed()
        assert "nothing read from" in str(reason)
        assert 0.15 <= time.monotonic() - started <= 1.0


async def test_eof_closes_and_fails_pending_actions() -> None:
    async def hang_up(connection: ServerConnection, action: Message) -> None:
        connection.abort()

    async with FakeAmiServer(handlers={"hangup": hang_up}) as server:
        conn = await connect(server)
        with pytest.raises(AmiConnectionError, match="closed the connection"):
            await conn.send_action("Hangup", timeout=2)
        assert conn.is_closed
        assert conn.close_reason is not None
        with pytest.raises(AmiConnectionError):
            await conn.send_action("Ping", timeout=2)
        await conn.close()


async def test_close_fails_pending_actions_and_leaves_no_tasks() -> None:
    async def ignore(connection: ServerConnection, action: Message) -> None:
        return None

    async with FakeAmiServer(handlers={"blackhole": ignore}) as server:
        conn = await connect(server, options=ConnectionOptions(ping_interval=0.05))
        pending = asyncio.create_task(conn.send_action("Blackhole", timeout=5))
        await eventually(lambda: bool(server.connections and server.latest.actions))
        assert any(t.get_name().startswith("ami-") for t in server.foreign_tasks())
        await conn.close("test over")
        with pytest.raises(AmiConnectionError, match="test over"):
            await pending
        assert str(conn.close_reason).startswith("test over")
        assert not server.foreign_tasks()


async def test_consumer_failure_closes_the_connection() -> None:
    def broken(items: list[StreamItem]) -> None:
        raise RuntimeError("disk full")

    async with FakeAmiServer() as server:
        conn = await connect(server, broken)
        await login(conn)  # FullyBooted follows the login response
        async with asyncio.timeout(2):
            reason = await conn.closed()
        assert "event consumer failed: RuntimeError" in str(reason)


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def test_tls_with_the_right_ca_connects(
    ca: trustme.CA, tls_server_context: ssl.SSLContext, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with FakeAmiServer(ssl_context=tls_server_context) as server:
        client_context = ssl.create_default_context(cafile=str(ca_file))
        target = server.target(tls=True)
        async with await AmiConnection.open(
            target, on_items=Stream(), ssl_context=client_context, options=QUIET
        ) as conn:
            await login(conn)
            banner = await conn.wait_banner()
            assert banner is not None


async def test_tls_without_the_ca_is_refused_by_default(tls_server_context: ssl.SSLContext) -> None:
    async with FakeAmiServer(ssl_context=tls_server_context) as server:
        target = server.target(tls=True)
        with pytest.raises(
            AmiConnectionError, match=r"TLS handshake with amis://.*certificate verification failed"
        ):
            await AmiConnection.open(target, on_items=Stream(), options=QUIET)


async def test_plain_target_never_uses_tls() -> None:
    async with FakeAmiServer() as server:
        target = AmiTarget("bridge", "127.0.0.1", server.port, tls=False)
        async with await AmiConnection.open(target, on_items=Stream(), options=QUIET) as conn:
            assert conn.banner is not None
