"""The AMI simulator over real loopback TCP, read with the project's own codec."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import logging
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import cast

import pytest

from bridge.ami.protocol import (
    AmiParser,
    Banner,
    Event,
    Header,
    Item,
    Response,
    serialize,
    serialize_action,
)
from bridge.ami.simulator import AmiSimulator
from bridge.cli.main import build_parser
from bridge.cli.simulate import SECRET_ENV, resolve_secret
from tests.support.polling import eventually

REPO = Path(__file__).parent.parent.parent
TIMESTAMP = re.compile(r"^\d+\.\d{6}$")


class Client:
    """A bare AMI client: asyncio streams plus AmiParser and serialize_action."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = AmiParser()
        self.items: list[Item] = []

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(
        self, action: str, headers: Iterable[Header] = (), action_id: str | None = None
    ) -> None:
        self.writer.write(serialize_action(action, list(headers), action_id=action_id))

    async def next_item(self, within: float = 3.0) -> Item:
        async with asyncio.timeout(within):
            while not self.items:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError
                self.items += self.parser.feed(data)
        return self.items.pop(0)

    async def response(self, within: float = 3.0) -> Response:
        """The next Response, skipping events."""
        while not isinstance(item := await self.next_item(within), Response):
            pass
        return item

    async def event(self, within: float = 3.0) -> Event:
        while not isinstance(item := await self.next_item(within), Event):
            pass
        return item

    async def events_for(self, seconds: float) -> list[Event]:
        """Every event that arrives within ``seconds``."""
        found: list[Event] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = await self.next_item(left)
            except TimeoutError:
                break
            if isinstance(item, Event):
                found.append(item)
        return found

    async def login(
        self, user: str = "bridge", secret: str = "bridge-secret", **extra: str
    ) -> Response:
        self.send("Login", [("Username", user), ("Secret", secret), *extra.items()], "login-1")
        return await self.response()

    async def closed(self, within: float = 3.0) -> bool:
        """True once the server has closed the connection (nothing but EOF left)."""
        try:
            while True:
                await self.next_item(within)
        except EOFError:
            return True

    def pause_reading(self) -> None:
        """Stop reading the socket, as a stalled reader would."""
        cast(asyncio.Transport, self.writer.transport).pause_reading()

    def resume_reading(self) -> None:
        cast(asyncio.Transport, self.writer.transport).resume_reading()

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def sim() -> AsyncIterator[AmiSimulator]:
    async with AmiSimulator(port=0, rate=0, auth_failure_delay=0.05) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: AmiSimulator) -> AsyncIterator[Client]:
    connection = await Client.connect(sim.port)
    yield connection
    connection.close()


def without_timestamps(events: list[Event]) -> list[tuple[Header, ...]]:
    return [tuple(h for h in e.headers if h[0] != "Timestamp") for e in events]


# -- login ---------------------------------------------------------------------------------


async def test_banner_then_plain_login(sim: AmiSimulator, client: Client) -> None:
    banner = await client.next_item()
    assert banner == Banner("Asterisk Call Manager/11.0.0")
    response = await client.login()
    assert response.headers == (
        ("Response", "Success"),
        ("ActionID", "login-1"),
        ("Message", "Authentication accepted"),
    )
    booted = await client.event()
    assert booted.name == "FullyBooted"
    assert booted.get("Privilege") == "system,all"
    assert booted.get("Status") == "Fully Booted"
    await sim.wait_for_sessions(1, timeout=2)
    assert sim.sessions == 1


async def test_md5_challenge_login(sim: AmiSimulator, client: Client) -> None:
    client.send("Challenge", [("AuthType", "MD5")], "ch-1")
    challenge = await client.response()
    assert challenge.is_success
    assert challenge.action_id == "ch-1"
    number = challenge.get("Challenge") or ""
    assert number.isdigit()
    key = hashlib.md5((number + "bridge-secret").encode()).hexdigest()
    client.send("Login", [("AuthType", "MD5"), ("Username", "bridge"), ("Key", key)], "md5")
    response = await client.response()
    assert response.is_success
    assert response.get("Message") == "Authentication accepted"


async def test_md5_login_with_a_wrong_key_fails(sim: AmiSimulator, client: Client) -> None:
    client.send("Challenge", [("AuthType", "MD5")])
    number = (await client.response()).get("Challenge") or ""
    key = hashlib.md5((number + "not-the-secret").encode()).hexdigest()
    client.send("Login", [("AuthType", "MD5"), ("Username", "bridge"), ("Key", key)])
    assert (await client.response()).get("Message") == "Authentication failed"
    assert await client.closed()


async def test_wrong_secret_is_refused_after_the_delay_then_closed(
    sim: AmiSimulator, client: Client
) -> None:
    began = time.monotonic()
    response = await client.login(secret="wrong")
    assert time.monotonic() - began >= sim.auth_failure_delay
    assert response.headers == (
        ("Response", "Error"),
        ("ActionID", "login-1"),
        ("Message", "Authentication failed"),
    )
    assert await client.closed()
    assert sim.sessions == 0


async def test_actions_before_login_are_denied(sim: AmiSimulator, client: Client) -> None:
    client.send("Ping", action_id="early")
    denied = await client.response()
    assert denied.headers == (
        ("Response", "Error"),
        ("ActionID", "early"),
        ("Message", "Permission denied"),
    )
    assert (await client.login()).is_success  # the session stays usable


# -- actions -------------------------------------------------------------------------------


async def test_ping_pong_and_silence_when_pings_are_not_answered(
    sim: AmiSimulator, client: Client
) -> None:
    await client.login()
    client.send("Ping", action_id="p1")
    pong = await client.response()
    assert pong.headers[:3] == (("Response", "Success"), ("ActionID", "p1"), ("Ping", "Pong"))
    assert TIMESTAMP.match(pong.get("Timestamp") or "")
    sim.answer_pings = False
    client.send("Ping", action_id="p2")
    with pytest.raises(TimeoutError):
        await client.response(within=0.3)


async def test_unknown_action(sim: AmiSimulator, client: Client) -> None:
    await client.login()
    client.send("NoSuchAction", action_id="x")
    error = await client.response()
    assert error.headers[:2] == (("Response", "Error"), ("ActionID", "x"))
    assert (error.get("Message") or "").startswith("Invalid/unknown command: NoSuchAction.")


async def test_logoff_says_goodbye_and_closes(sim: AmiSimulator, client: Client) -> None:
    await client.login()
    client.send("Logoff", action_id="bye")
    goodbye = await client.response()
    assert goodbye.headers == (
        ("Response", "Goodbye"),
        ("ActionID", "bye"),
        ("Message", "Thanks for all the fish."),
    )
    assert await client.closed()


async def test_core_show_channels_lists_every_channel_that_is_up() -> None:
    async with AmiSimulator(port=0, rate=400, seed=3) as sim:
        client = await Client.connect(sim.port)
        await client.login()
        async with asyncio.timeout(5):
            while sim.channel_count < 3:
                await client.event()
        client.send("CoreShowChannels", action_id="csc")
        start = await client.response()
        assert start.get("EventList") == "start"
        assert start.get("Message") == "Channels will follow"
        items: list[Event] = []
        while (event := await client.event()).name != "CoreShowChannelsComplete":
            if event.action_id == "csc":
                items.append(event)
        assert event.headers[1:] == (
            ("ActionID", "csc"),
            ("EventList", "Complete"),
            ("ListItems", str(len(items))),
        )
        assert len(items) >= 3
        for item in items:
            assert item.name == "CoreShowChannel"
            assert item.headers[1] == ("ActionID", "csc")
            assert re.fullmatch(r"PJSIP/(1\d\d|trunk)-[0-9a-f]{8}", item.get("Channel") or "")
            assert re.fullmatch(r"\d\d:\d\d:\d\d", item.get("Duration") or "")
            assert [k for k, _ in item.headers[-4:]] == [
                "Application",
                "ApplicationData",
                "Duration",
                "BridgeId",
            ]
        client.close()


async def test_core_show_channels_when_idle(sim: AmiSimulator, client: Client) -> None:
    await client.login()
    client.send("CoreShowChannels")
    assert (await client.response()).get("EventList") == "start"
    complete = await client.event()
    assert complete.name == "CoreShowChannelsComplete"
    assert complete.get("ListItems") == "0"
    assert complete.action_id is None  # none sent, none echoed


# -- events --------------------------------------------------------------------------------


async def test_generated_events_arrive_at_the_configured_rate() -> None:
    async with AmiSimulator(port=0, rate=200, seed=1) as sim:
        client = await Client.connect(sim.port)
        await client.login()
        assert (await client.event()).name == "FullyBooted"
        events = await client.events_for(1.0)
        assert 150 <= len(events) <= 250, len(events)
        assert all(TIMESTAMP.match(e.get("Timestamp") or "") for e in events)
        assert sim.max_write_stall < sim.write_timeout
        client.close()


async def test_every_session_gets_every_event() -> None:
    async with AmiSimulator(port=0, rate=300, seed=9) as sim:
        first, second = await Client.connect(sim.port), await Client.connect(sim.port)
        await first.login()
        await second.login()
        one = without_timestamps(await first.events_for(0.8))
        two = without_timestamps(await second.events_for(0.8))
        two = [e for e in two if e[0] != ("Event", "FullyBooted")]
        # The second session logged in a little later: from its first event on, both
        # sessions saw exactly the same sequence.
        start = one.index(two[0])
        common = min(len(one) - start, len(two))
        assert common >= 100
        assert one[start : start + common] == two[:common]
        first.close()
        second.close()


async def test_injected_events_reach_every_session_and_are_counted(sim: AmiSimulator) -> None:
    clients = [await Client.connect(sim.port) for _ in range(3)]
    for c in clients:
        await c.login()
        await c.event()  # FullyBooted
    await sim.wait_for_sessions(3, timeout=2)
    sim.inject([("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", "Probe")])
    for c in clients:
        received = await c.event()
        assert received.headers[2] == ("UserEvent", "Probe")
        c.close()
    assert sim.events_sent == 1


async def test_event_mask_filters_by_every_class(sim: AmiSimulator, client: Client) -> None:
    await client.login(Events="off")
    client.send("Ping")
    assert (await client.response()).get("Ping") == "Pong"  # no FullyBooted before it
    client.send("Events", [("EventMask", "system")], "mask")
    assert (await client.response()).headers == (
        ("Response", "Success"),
        ("ActionID", "mask"),
        ("Events", "On"),
    )
    sim.inject([("Event", "Newchannel"), ("Privilege", "call,all")])
    sim.inject([("Event", "VoicemailPasswordChange"), ("Privilege", "system,user,all")])
    sim.inject([("Event", "Reload"), ("Privilege", "system,all")])
    assert (await client.event()).name == "Reload"
    client.send("Events", [("EventMask", "off")])
    assert (await client.response()).get("Events") == "Off"
    sim.inject([("Event", "Reload"), ("Privilege", "system,all")])
    assert await client.events_for(0.2) == []


async def test_an_unmatched_event_is_not_counted_as_sent(sim: AmiSimulator, client: Client) -> None:
    await client.login(Events="call")
    sim.inject([("Event", "Reload"), ("Privilege", "system,all")])
    sim.inject([("Event", "Newchannel"), ("Privilege", "call,all")])
    assert (await client.event()).name == "Newchannel"
    assert sim.events_sent == 1


async def test_same_seed_same_events_and_traffic_waits_for_a_login() -> None:
    async def first_events(seed: int) -> list[tuple[Header, ...]]:
        async with AmiSimulator(port=0, rate=1000, seed=seed, clock=lambda: 1795675153.5) as sim:
            client = await Client.connect(sim.port)
            await asyncio.sleep(0.1)  # nothing is generated before the first login
            await client.login()
            events: list[Event] = []
            while len(events) < 150:
                events.append(await client.event())
            client.close()
            return without_timestamps(events[1:])  # after FullyBooted

    first = await first_events(42)
    assert first == await first_events(42)
    assert first != await first_events(43)


async def test_duration_stops_the_traffic_but_not_the_session() -> None:
    async with AmiSimulator(port=0, rate=500, duration=0.3) as sim:
        client = await Client.connect(sim.port)
        await client.login()
        await client.events_for(0.5)
        assert await client.events_for(0.3) == []
        client.send("Ping")
        assert (await client.response()).get("Ping") == "Pong"
        client.close()


async def test_legacy_banner_and_1_4_event_shapes() -> None:
    async with AmiSimulator(port=0, rate=2000, seed=2, legacy=True) as sim:
        client = await Client.connect(sim.port)
        assert await client.next_item() == Banner("Asterisk Call Manager/1.0")
        await client.login()
        events = await client.events_for(1.0)
        names = {e.name for e in events}
        assert {"Newchannel", "Newcallerid", "Dial", "Link", "Hangup"} <= names
        assert all(e.get("Timestamp") is None for e in events)
        dial = next(e for e in events if e.name == "Dial")
        assert [k for k, _ in dial.headers] == [
            "Event",
            "Privilege",
            "Source",
            "Destination",
            "CallerID",
            "CallerIDName",
            "SrcUniqueID",
            "DestUniqueID",
        ]
        client.close()


# -- replay --------------------------------------------------------------------------------


def write_capture(path: Path, stamps: list[float]) -> None:
    """A gzip capture as a client reads it: banner, login answer, then one event per stamp."""
    parts = [b"Asterisk Call Manager/11.0.0\r\n"]
    parts.append(serialize([("Response", "Success"), ("Message", "Authentication accepted")]))
    parts.append(serialize([("Event", "FullyBooted"), ("Privilege", "system,all")]))
    for n, stamp in enumerate(stamps):
        event = [("Event", "UserEvent"), ("Privilege", "user,all"), ("Timestamp", f"{stamp:.6f}")]
        parts.append(serialize([*event, ("UserEvent", f"E{n}")]))
    with gzip.open(path, "wb") as f:
        f.write(b"".join(parts))


async def test_replay_plays_a_capture_at_its_pace_and_faster(tmp_path: Path) -> None:
    capture = tmp_path / "burst.ami.gz"
    write_capture(capture, [1796188640.0 + n / 10 for n in range(10)])  # 0.9 s of events
    async with AmiSimulator(port=0, replay=capture, speed=3, sequence_numbers=True) as sim:
        client = await Client.connect(sim.port)
        await client.login()
        arrivals: list[tuple[float, Event]] = []
        async with asyncio.timeout(5):
            while len(arrivals) < 12:  # ours, then the capture's FullyBooted and 10 events
                event = await client.event()
                arrivals.append((time.monotonic(), event))
        played = [e for _, e in arrivals[1:]]
        assert [e.get("UserEvent") for e in played[1:]] == [f"E{n}" for n in range(10)]
        assert [e.get("SequenceNumber") for e in played] == [str(n) for n in range(11)]
        # 0.9 s recorded, played 3 times faster: about 0.3 s from the first to the last.
        spread = arrivals[-1][0] - arrivals[2][0]
        assert 0.25 <= spread <= 0.6, spread
        await eventually(lambda: sim.traffic_done)
        assert sim.events_sent == 11
        client.close()


# -- faults --------------------------------------------------------------------------------


async def test_drop_connections_closes_every_session(sim: AmiSimulator) -> None:
    clients = [await Client.connect(sim.port) for _ in range(2)]
    for c in clients:
        await c.login()
    await sim.wait_for_sessions(2, timeout=2)
    sim.drop_connections()
    for c in clients:
        # An abort is a TCP reset: the client sees a reset or a bare end of stream.
        with contextlib.suppress(ConnectionResetError):
            assert await c.closed()
        c.close()
    await eventually(lambda: sim.sessions == 0)
    with pytest.raises(TimeoutError):
        await sim.wait_for_sessions(1, timeout=0.1)


async def test_a_reader_that_stops_reading_is_dropped_and_the_others_keep_their_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with AmiSimulator(port=0, rate=0, write_timeout=0.1, sequence_numbers=True) as sim:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", sim.port))
        stalled = Client(*await asyncio.open_connection(sock=raw))
        reader = await Client.connect(sim.port)
        await stalled.login()
        stalled.pause_reading()
        await reader.login(Events="call")  # the small events only, not the filler
        await sim.wait_for_sessions(2, timeout=2)
        filler = [("Event", "UserEvent"), ("Privilege", "user,all"), ("Filler", "x" * 60000)]
        small = [("Event", "Newchannel"), ("Privilege", "call,all")]
        with caplog.at_level(logging.WARNING, logger="bridge.ami.simulator"):
            # Big events fill the kernel's buffers at once: the stalled client's writes
            # block and Asterisk's rule drops it.
            for _ in range(300):
                sim.inject(filler)
                sim.inject(small)
            events = []
            began = time.monotonic()
            while sim.dropped_sessions == 0:
                events += await reader.events_for(0.05)
                assert time.monotonic() - began < 10, "the stalled session was never dropped"
            for _ in range(100):
                sim.inject(small)
            while len(events) < 400:
                events += await reader.events_for(0.05)
                assert time.monotonic() - began < 10, "the reading session missed events"
        await eventually(lambda: sim.sessions == 1)
        assert sim.dropped_sessions == 1
        # The deadline is per blocked write: the drop comes soon after it passes (how soon
        # depends on the host's load).
        assert 0.1 <= sim.max_write_stall < 1.0
        dropped = [r for r in caplog.records if "session dropped" in r.getMessage()]
        assert [r.levelno for r in dropped] == [logging.WARNING]
        # The reading session got every one of its events, in order; the sequence counts
        # every event, the fillers too, as Asterisk's does.
        numbers = [int(e.get("SequenceNumber") or "-1") for e in events]
        assert numbers == [*range(1, 600, 2), *range(600, 700)]
        # The dropped session's socket is closed: what it had not read is all it gets.
        stalled.resume_reading()
        with contextlib.suppress(ConnectionResetError):
            assert await stalled.closed(within=5)
        stalled.close()
        reader.close()


async def test_a_slow_reader_within_the_deadline_is_kept() -> None:
    async with AmiSimulator(port=0, rate=2000, write_timeout=0.1, sequence_numbers=True) as sim:
        client = await Client.connect(sim.port)
        await client.login()
        events: list[Event] = []
        for _ in range(10):  # pauses of 50 ms, well under the deadline at this rate
            client.pause_reading()
            await asyncio.sleep(0.05)
            client.resume_reading()
            events += await client.events_for(0.05)
        assert sim.dropped_sessions == 0
        numbers = [int(e.get("SequenceNumber") or "-1") for e in events if e.name != "FullyBooted"]
        assert numbers == list(range(len(numbers)))
        client.close()


async def test_responses_keep_their_place_among_the_events() -> None:
    async with AmiSimulator(port=0, rate=5000, seed=4) as sim:
        client = await Client.connect(sim.port)
        await client.login()
        for n in range(50):
            client.send("Ping", action_id=f"p{n}")
        pongs: list[str | None] = []
        async with asyncio.timeout(5):
            while len(pongs) < 50:
                item = await client.next_item()
                if isinstance(item, Response):
                    pongs.append(item.action_id)
        assert pongs == [f"p{n}" for n in range(50)]  # every one whole, in order
        assert sim.dropped_sessions == 0
        client.close()


# -- the CLI -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connect_when_listening(port: int) -> socket.socket:
    """A connection to the simulator process on ``port``, once it listens."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=1)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "simulator did not start"
            time.sleep(0.05)


def test_cli_serves_events_to_a_raw_socket_client() -> None:
    port = free_port()
    command = [sys.executable, "-m", "bridge", "simulate", "--port", str(port), "--rate", "200"]
    command += ["--user", "u", "--secret", "s3cr3t-xyz", "--duration", "2"]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        with connect_when_listening(port) as conn:
            conn.sendall(b"Action: Login\r\nUsername: u\r\nSecret: s3cr3t-xyz\r\n\r\n")
            received = b""
            conn.settimeout(0.5)
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                with contextlib.suppress(TimeoutError):
                    received += conn.recv(65536)
        parser = AmiParser()
        items = parser.feed(received)
        assert items[0] == Banner("Asterisk Call Manager/11.0.0")
        assert isinstance(items[1], Response)
        assert items[1].get("Message") == "Authentication accepted"
        events = [i for i in items if isinstance(i, Event) and i.name != "FullyBooted"]
        assert 200 <= len(events) <= 400, len(events)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert f"127.0.0.1:{port}" in stderr
    assert "'u'" in stderr
    assert "s3cr3t-xyz" not in stderr


def test_cli_secret_comes_from_the_flag_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert resolve_secret(None) == "bridge-secret"
    monkeypatch.setenv(SECRET_ENV, "from-env")
    assert resolve_secret(None) == "from-env"
    assert resolve_secret("from-flag") == "from-flag"


def test_cli_help_documents_the_defaults(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "env-secret-value")
    with pytest.raises(SystemExit):
        build_parser(["simulate"]).parse_args(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("127.0.0.1", "5038", "50.0", "forever", "(default: bridge)", SECRET_ENV):
        assert default in text, default
    assert "env-secret-value" not in text


@pytest.mark.parametrize(
    ("flag", "value"), [("--rate", "-1"), ("--write-timeout", "0"), ("--speed", "0")]
)
def test_cli_rejects_a_value_out_of_range(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser(["simulate"]).parse_args(["simulate", flag, value])
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err


def test_cli_replays_a_capture_with_the_write_timeout(tmp_path: Path) -> None:
    capture = tmp_path / "short.ami.gz"
    write_capture(capture, [1796188640.0 + n / 100 for n in range(50)])
    port = free_port()
    command = [sys.executable, "-m", "bridge", "simulate", "--port", str(port)]
    command += ["--sequence-numbers"]
    command += ["--replay", str(capture), "--speed", "2", "--write-timeout", "0.5"]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        with connect_when_listening(port) as conn:
            conn.sendall(b"Action: Login\r\nUsername: bridge\r\nSecret: bridge-secret\r\n\r\n")
            received = b""
            conn.settimeout(0.5)
            while received.count(b"UserEvent: E") < 50:
                received += conn.recv(65536)
        events = [i for i in AmiParser().feed(received) if isinstance(i, Event)]
        assert [e.get("SequenceNumber") for e in events[1:]] == [str(n) for n in range(51)]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "replay of short.ami.gz at 2x" in stderr
    assert "write timeout 0.5 s" in stderr
    assert "51 events sent, 0 sessions dropped" in stderr
