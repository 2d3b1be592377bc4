"""``ami-bridge tail`` as a child process, watching what a running bridge publishes."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aio_pika
import orjson
import pytest

from bridge.ami.simulator import AmiSimulator
from bridge.cli.tail import wants_colour
from bridge.settings import ENV_PREFIX
from tests.integration.harness import SECRET, bridge_settings, free_port, running_bridge
from tests.support import AmqpNames, amqp_connection

SERVER = "pbx7"
TIME = r"\d{2}:\d{2}:\d{2}\.\d{3}"


class Tail:
    """A running ``python -m bridge tail``: its stdout lines, read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def read_until(self, done: Callable[[list[str]], bool], within: float) -> None:
        """Read stdout lines until ``done(lines)`` holds.

        Raises:
            TimeoutError: it did not within ``within`` seconds; the message shows the end
                of what was read.
        """
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(within):
                while not done(self.lines):
                    line = await self.process.stdout.readline()
                    if not line:
                        raise AssertionError(f"tail ended early: {await self._stderr()}")
                    self.lines.append(line.decode().rstrip("\n"))
        except TimeoutError:
            raise TimeoutError(
                f"{len(self.lines)} lines in {within} s: {self.lines[-5:]}"
            ) from None

    async def interrupt(self, sig: signal.Signals = signal.SIGINT) -> int:
        """Ctrl+C (or ``sig``), and the exit code."""
        self.process.send_signal(sig)
        async with asyncio.timeout(10):
            return await self.process.wait()

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode()


def child_env() -> dict[str, str]:
    """The test's environment without bridge settings, and with colour forbidden."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["NO_COLOR"] = "1"
    return env


@asynccontextmanager
async def tail(*args: str, ready_line: bytes = b"tail: bound ") -> AsyncIterator[Tail]:
    """``python -m bridge tail ARGS``, ready (its first stderr line begins ``ready_line``) on
    entry, killed if still running after."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "tail",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(),
    )
    try:
        assert process.stderr is not None
        async with asyncio.timeout(15):
            ready = await process.stderr.readline()
        assert ready.startswith(ready_line), ready
        yield Tail(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@asynccontextmanager
async def bridge(amqp_url: str, exchange: str, journal: Path) -> AsyncIterator[None]:
    """The simulator and an in-process bridge publishing its events to ``exchange``."""
    async with AmiSimulator(port=0, secret=SECRET, rate=300, seed=3) as simulator:
        settings = bridge_settings(
            {SERVER: simulator.port}, amqp=amqp_url, exchange=exchange, journal_dir=journal
        )
        async with running_bridge(settings):
            yield


def has_events(*events: str) -> Callable[[list[str]], bool]:
    def done(lines: list[str]) -> bool:
        return all(any(f" {event} " in line for line in lines) for event in events)

    return done


async def test_tail_prints_a_line_per_event_the_bridge_publishes(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    args = (f"{SERVER}.#", "--exchange", amqp_names.exchange, "--amqp", amqp_url)
    async with bridge(amqp_url, amqp_names.exchange, tmp_path), tail(*args) as t:
        await t.read_until(has_events("Newchannel", "Hangup"), within=15)
        code = await t.interrupt()

    assert code == 0
    newchannel = next(line for line in t.lines if " Newchannel " in line)
    assert re.fullmatch(
        rf"{TIME} {SERVER} call +Newchannel +Channel=PJSIP/\S+ Uniqueid=\S+ CallerIDNum=\S+ "
        r"Exten=\S+ Context=from-\S+ Linkedid=\S+",
        newchannel,
    ), newchannel
    hangup = next(line for line in t.lines if " Hangup " in line)
    assert re.fullmatch(
        rf"{TIME} {SERVER} call +Hangup +Channel=PJSIP/\S+ Uniqueid=\S+ "
        r'Cause=(16|17|19|21) Cause-txt="[^"]+" Linkedid=\S+',
        hangup,
    ), hangup
    assert all(line.startswith(f"{line[:12]} {SERVER} ") for line in t.lines)
    assert not any("\x1b" in line for line in t.lines)  # NO_COLOR, and not a terminal


async def test_tail_json_prints_each_body_as_one_json_line(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with bridge(amqp_url, amqp_names.exchange, tmp_path):
        args = (f"{SERVER}.call.*", "--json", "--exchange", amqp_names.exchange)
        async with tail(*args, "--amqp", amqp_url) as t:
            await t.read_until(lambda lines: any('"Hangup"' in line for line in lines), 15)
            code = await t.interrupt()

    assert code == 0
    bodies = [orjson.loads(line) for line in t.lines]
    assert all(body["id"] == f"{SERVER}:{body['epoch']}:{body['seq']}" for body in bodies)
    assert len({body["id"] for body in bodies}) == len(bodies)
    assert {body["kind"] for body in bodies} == {"event"}
    assert all("call" in body["privilege"] for body in bodies)
    hangup = next(body for body in bodies if body["event"] == "Hangup")
    assert isinstance(hangup["fields"]["Cause"], int)


async def test_tail_exits_1_with_one_line_when_the_broker_is_unreachable() -> None:
    url = f"amqp://guest:s3cret@127.0.0.1:{free_port()}/"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "tail", "--amqp", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=child_env(),
    )  # fmt: skip
    async with asyncio.timeout(20):
        stdout, stderr = await process.communicate()

    assert process.returncode == 1
    assert stdout == b""
    lines = stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("ami-bridge tail: cannot connect to the broker at amqp://guest:***@")
    assert "s3cret" not in stderr.decode()


async def test_tail_exits_1_when_the_exchange_does_not_exist(
    amqp_url: str, amqp_names: AmqpNames
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "tail", "--amqp", amqp_url,
        "--exchange", amqp_names.exchange,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=child_env(),
    )  # fmt: skip
    async with asyncio.timeout(20):
        _, stderr = await process.communicate()

    assert process.returncode == 1
    assert f"exchange '{amqp_names.exchange}' does not exist" in stderr.decode()


async def test_tail_exits_0_quietly_on_sigterm(amqp_url: str, amqp_names: AmqpNames) -> None:
    async with amqp_connection(amqp_url) as connection:
        channel = await connection.channel()
        await channel.declare_exchange(amqp_names.exchange, aio_pika.ExchangeType.TOPIC)
    async with tail("--amqp", amqp_url, "--exchange", amqp_names.exchange) as t:
        code = await t.interrupt(signal.SIGTERM)
        stderr = await t._stderr()

    assert code == 0
    assert stderr == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "no_color", "expected"),
    [(_Terminal(), None, True), (_Terminal(), "1", False), (io.StringIO(), None, False)],
)
def test_colour_only_on_a_terminal_without_no_color(
    monkeypatch: pytest.MonkeyPatch, stream: io.StringIO, no_color: str | None, expected: bool
) -> None:
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)

    assert wants_colour(stream) is expected
