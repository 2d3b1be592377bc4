"""AmiSession over real loopback TCP: login, epochs, reconnects, backoff, stop, TLS."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import SecretStr

from bridge.ami.client import ConnectionOptions, StreamItem
from bridge.ami.errors import AmiConnectionError, LoginFailed
from bridge.ami.listener import Connected, Disconnected
from bridge.ami.protocol import Event
from bridge.ami.session import AmiSession, next_unix_ms_epoch
from bridge.ami.target import AmiTarget
from tests.support.polling import eventually

from .fake_server import FakeAmiServer

SECRET = "s3cret"
WRONG_SECRET = "Wr0ng-Pa55phrase"


class Recorder:
    """A SessionListener that records every call in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.connected: list[Connected] = []
        self.disconnected: list[Disconnected] = []
        self.items: list[tuple[int, StreamItem]] = []

    def on_connected(self, info: Connected) -> None:
        self.calls.append(("connected", info.epoch))
        self.connected.append(info)

    def on_items(self, epoch: int, items: list[StreamItem]) -> None:
        self.calls.append(("items", epoch))
        self.items.extend((epoch, item) for item in items)

    def on_disconnected(self, info: Disconnected) -> None:
        self.calls.append(("disconnected", info.epoch))
        self.disconnected.append(info)

    def event_names(self, epoch: int | None = None) -> list[str]:
        return [
            item.name
            for e, item in self.items
            if isinstance(item, Event) and (epoch is None or e == epoch)
        ]


def make_session(
    target: AmiTarget, listener: Recorder, secret: str = SECRET, **overrides: Any
) -> AmiSession:
    settings: dict[str, Any] = {
        "backoff_base": 0.05,
        "backoff_cap": 0.2,
        "action_timeout": 2.0,
        "connection": ConnectionOptions(ping_interval=None, connect_timeout=2, banner_timeout=2),
    }
    settings.update(overrides)
    return AmiSession(target, SecretStr(secret), listener, **settings)


@asynccontextmanager
async def running(session: AmiSession) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(session.run())
    try:
        yield task
    finally:
        await session.stop(timeout=2)
        async with asyncio.timeout(3):
            await asyncio.wait({task})


# -- login ----------------------------------------------------------------------------


async def test_plain_login_sends_username_secret_and_the_event_mask() -> None:
    listener = Recorder()
    async with FakeAmiServer() as server:
        session = make_session(server.target(), listener, auth="plain")
        async with running(session):
            await eventually(lambda: bool(listener.connected) and bool(listener.items))
            (login,) = server.latest.actions_named("Login")
            assert login.get("Username") == "bridge"
            assert login.get("Secret") == SECRET
            assert login.get("Events") == "on"
            assert login.get("AuthType") is None
            assert session.connected
            info = listener.connected[0]
            assert info.ami_version == "11.0.0"
            assert info.banner == "Asterisk Call Manager/11.0.0"
            assert info.target == server.target()
            assert session.epoch == info.epoch


async def test_md5_login_sends_md5_of_challenge_and_secret_in_lower_hex() -> None:
    listener = Recorder()
    async with FakeAmiServer(challenge="515494335") as server:
        session = make_session(server.target(), listener, events="system,call")
        async with running(session):
            await eventually(lambda: bool(listener.connected))
            (challenge,) = server.latest.actions_named("Challenge")
            assert challenge.get("AuthType") == "MD5"
            (login,) = server.latest.actions_named("Login")
            expected = hashlib.md5(f"515494335{SECRET}".encode()).hexdigest()
            assert login.get("Key") == expected
            assert expected == expected.lower()
            assert login.get("AuthType") == "MD5"
            assert login.get("Secret") is None
            assert login.get("Events") == "system,call"


async def test_md5_only_server_accepts_md5_and_refuses_plain() -> None:
    async with FakeAmiServer(md5_only=True) as server:
        listener = Recorder()
        async with running(make_session(server.target(), listener, auth="md5")):
            await eventually(lambda: bool(listener.connected))

        plain = make_session(
            server.target(), Recorder(), auth="plain", retry_on_login_failure=False
        )
        with pytest.raises(LoginFailed):
            async with asyncio.timeout(3):
                await plain.run()


async def test_wrong_password_raises_login_failed_without_leaking_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    listener = Recorder()
    async with FakeAmiServer(failed_login_delay=0.1) as server:
        for auth in ("md5", "plain"):
            session = make_session(
                server.target(), listener, WRONG_SECRET, auth=auth, retry_on_login_failure=False
            )
            with pytest.raises(LoginFailed) as caught:
                async with asyncio.timeout(3):
                    await session.run()
            failure = caught.value
            assert failure.user == "bridge"
            assert failure.host == f"127.0.0.1:{server.port}"
            assert "'bridge'" in str(failure)
            assert "127.0.0.1" in str(failure)
            assert "Authentication failed" in str(failure)
            assert WRONG_SECRET not in f"{failure!s} {failure!r} {failure.args}"
            assert WRONG_SECRET not in repr(session)
    assert listener.calls == []
    assert WRONG_SECRET not in caplog.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2, "one clear error per refused login"
    assert all("'bridge'" in r.getMessage() and "127.0.0.1" in r.getMessage() for r in errors)


async def test_wrong_password_with_retry_backs_off_instead_of_looping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    window = 0.8
    async with FakeAmiServer() as server:
        session = make_session(
            server.target(),
            Recorder(),
            WRONG_SECRET,
            backoff_base=0.1,
            backoff_cap=0.2,
            rng=lambda: 1.0,
        )
        async with running(session):
            await asyncio.sleep(window)
            attempts = [c.opened_at for c in server.connections]
    # Delays 0.1, 0.2, 0.2, ...: about five attempts; a tight loop would make hundreds.
    assert 3 <= len(attempts) <= 6
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert min(gaps) >= 0.09
    assert WRONG_SECRET not in caplog.text
    assert "retrying in" in caplog.text


# -- events, epochs, reconnects -------------------------------------------------------


async def test_events_read_with_the_login_response_follow_on_connected() -> None:
    listener = Recorder()
    # Banner, login response and FullyBooted arrive in one write.
    async with FakeAmiServer(banner_with_first_response=True) as server:
        async with running(make_session(server.target(), listener, auth="plain")):
            await eventually(lambda: bool(listener.items))
        epoch = listener.connected[0].epoch
        assert listener.connected[0].ami_version == "11.0.0"
        assert listener.calls[:2] == [("connected", epoch), ("items", epoch)]
        assert listener.event_names(epoch) == ["FullyBooted"]


async def test_banner_split_across_writes() -> None:
    listener = Recorder()
    async with FakeAmiServer(banner_chunks=5) as server:
        async with running(make_session(server.target(), listener)):
            await eventually(lambda: bool(listener.connected))
        assert listener.connected[0].banner == "Asterisk Call Manager/11.0.0"


async def test_dropped_connection_reconnects_with_a_larger_epoch() -> None:
    listener = Recorder()
    async with FakeAmiServer() as server:
        session = make_session(server.target(), listener)
        async with running(session):
            await eventually(lambda: len(listener.connected) == 1)
            first = listener.connected[0].epoch
            server.latest.abort()
            await eventually(lambda: len(listener.connected) == 2)
            second = listener.connected[1].epoch
            assert second > first
            assert session.epoch == second
            assert session.reconnects == 1
            assert listener.disconnected[0].epoch == first
            assert "closed the connection" in listener.disconnected[0].reason

            await server.latest.send([("Event", "Newchannel"), ("Privilege", "call,all")])
            await eventually(lambda: "Newchannel" in listener.event_names(second))
        assert listener.calls == [
            ("connected", first),
            ("items", first),
            ("disconnected", first),
            ("connected", second),
            ("items", second),
            ("items", second),
            ("disconnected", second),
        ]


async def test_a_connection_that_stayed_up_resets_the_backoff() -> None:
    listener = Recorder()
    async with FakeAmiServer(users={"bridge": "not-yet"}) as server:
        session = make_session(
            server.target(), listener, backoff_base=0.04, backoff_cap=5.0, rng=lambda: 1.0
        )
        async with running(session):
            # Refused logins widen the window: 0.04, 0.08, 0.16, 0.32 s.
            await eventually(lambda: len(server.connections) >= 4)
            server.users["bridge"] = SECRET
            await eventually(lambda: bool(listener.connected))
            dropped_at = time.monotonic()
            server.latest.abort()
            await eventually(lambda: len(listener.connected) == 2)
            reconnect = server.latest.opened_at - dropped_at
    assert reconnect < 0.2, "after a good login the first delay is the base again"


async def test_server_that_stops_answering_ping_is_dropped_and_reconnected() -> None:
    interval, timeout = 0.2, 0.2
    listener = Recorder()
    options = ConnectionOptions(ping_interval=interval, ping_timeout=timeout)
    async with (
        FakeAmiServer() as server,
        running(make_session(server.target(), listener, connection=options)),
    ):
        await eventually(lambda: bool(listener.connected))
        server.answer_ping = False
        silenced = time.monotonic()
        await eventually(lambda: bool(listener.disconnected), within=3)
        elapsed = time.monotonic() - silenced
        server.answer_ping = True
        await eventually(lambda: len(listener.connected) == 2, within=3)
    assert elapsed <= interval + timeout + 0.3
    assert "did not answer Ping" in listener.disconnected[0].reason


async def test_connection_failures_are_retried_and_logged_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FakeAmiServer() as server:
        target = server.target()  # closed on exit: nothing listens there any more
    listener = Recorder()
    session = make_session(target, listener, backoff_base=0.1, backoff_cap=0.1, rng=lambda: 1.0)
    async with running(session):
        await asyncio.sleep(0.45)
        assert not session.connected
    failures = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert 3 <= len(failures) <= 6
    assert all(r.levelno == logging.WARNING for r in failures)
    assert all("cannot connect to ami://bridge@127.0.0.1" in r.getMessage() for r in failures)
    assert listener.calls == []


# -- actions and stop -----------------------------------------------------------------


async def test_send_action_uses_the_current_connection() -> None:
    listener = Recorder()
    async with FakeAmiServer() as server:
        session = make_session(server.target(), listener)
        with pytest.raises(AmiConnectionError, match="not connected"):
            await session.send_action("Ping")
        async with running(session):
            await eventually(lambda: session.connected)
            result = await session.send_action("Ping")
            assert result.ok
            assert result.response.get("Ping") == "Pong"


async def test_stop_logs_off_and_ends_run_cleanly() -> None:
    listener = Recorder()
    async with FakeAmiServer() as server:
        session = make_session(server.target(), listener)
        run = asyncio.create_task(session.run())
        await eventually(lambda: session.connected)
        await session.stop(timeout=2)
        assert run.done()
        assert run.exception() is None
        assert server.latest.actions_named("Logoff")
        assert not session.connected
        assert listener.disconnected[-1].reason == "session stopped"
        assert listener.calls[-1] == ("disconnected", listener.connected[-1].epoch)
        assert not server.foreign_tasks(), "every task of the session is gone"


async def test_stop_during_backoff_returns_promptly() -> None:
    async with FakeAmiServer() as server:
        target = server.target()
    session = make_session(target, Recorder(), backoff_base=30.0, backoff_cap=30.0)
    run = asyncio.create_task(session.run())
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await session.stop(timeout=2)
    assert run.done()
    assert time.monotonic() - started < 0.5


# -- secrets, epochs, TLS ---------------------------------------------------------------


async def test_secret_may_come_from_a_callable_and_never_shows_in_repr() -> None:
    listener = Recorder()
    asked: list[int] = []

    def secret() -> str:
        asked.append(1)
        return SECRET

    async with FakeAmiServer() as server:
        session = AmiSession(server.target(), secret, listener, auth="plain")
        assert SECRET not in repr(session)
        async with running(session):
            await eventually(lambda: bool(listener.connected))
    assert asked == [1]


async def test_epochs_come_from_next_epoch() -> None:
    listener = Recorder()
    epochs = itertools.count(100)
    async with FakeAmiServer() as server:
        session = make_session(server.target(), listener, next_epoch=lambda: next(epochs))
        async with running(session):
            await eventually(lambda: bool(listener.connected))
            server.latest.abort()
            await eventually(lambda: len(listener.connected) == 2)
    assert [c.epoch for c in listener.connected] == [100, 101]


def test_default_epochs_are_unix_millis_and_strictly_increasing() -> None:
    now_ms = time.time() * 1000
    epochs = [next_unix_ms_epoch() for _ in range(2000)]
    assert all(later > earlier for earlier, later in itertools.pairwise(epochs))
    assert abs(epochs[0] - now_ms) < 5000


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_session_with_the_ca_file_connects(ca: trustme.CA, tmp_path: Path) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    listener = Recorder()
    async with FakeAmiServer(ssl_context=server_context) as server:
        target = server.target(tls=True)
        async with running(make_session(target, listener, ca_file=ca_file)):
            await eventually(lambda: bool(listener.connected))
        assert str(listener.connected[0].target).startswith("amis://")


async def test_tls_session_without_the_ca_never_connects(
    ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    listener = Recorder()
    async with (
        FakeAmiServer(ssl_context=server_context) as server,
        running(make_session(server.target(tls=True), listener)),
    ):
        await eventually(lambda: "certificate verification failed" in caplog.text)
    assert listener.calls == []


def test_a_ca_file_for_a_plain_target_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="amis://"):
        AmiSession(AmiTarget("bridge", "pbx", 5038), SecretStr(SECRET), Recorder(), ca_file="x")


async def test_the_end_is_stamped_when_the_reader_sees_it_even_with_the_loop_blocked() -> None:
    listener = Recorder()
    async with FakeAmiServer() as server:
        session = make_session(server.target(), listener, backoff_base=1.0, backoff_cap=1.0)
        async with running(session):
            await eventually(lambda: session.connected)
            last_write = time.time()
            await server.latest.send([("Event", "UserEvent"), ("UserEvent", "last")])
            await eventually(lambda: "UserEvent" in listener.event_names())
            await asyncio.sleep(0.3)  # quiet: the last byte read stays at last_write
            server_side = server.latest.writer.get_extra_info("socket")
            dropped = time.time()
            server_side.shutdown(socket.SHUT_RDWR)  # the peer's FIN leaves now
            time.sleep(0.5)  # the event loop is busy elsewhere  # noqa: ASYNC251
            await eventually(lambda: listener.disconnected != [])
            ended = listener.disconnected[0]
            assert "closed the connection" in ended.reason
            assert dropped <= ended.at < dropped + 0.2  # not when the loop got round to it
            assert last_write <= ended.last_read_at < last_write + 0.2
            assert listener.calls[-1] == ("disconnected", listener.connected[0].epoch)
