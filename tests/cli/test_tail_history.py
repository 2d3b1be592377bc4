"""``ami-bridge tail`` reading the history stream: ``--since``, ``--from-start``, ``--offset``."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from bridge.ami.simulator import AmiSimulator
from bridge.cli.tail import parse_since
from bridge.consumer import ConsumerError, StreamReplay
from tests.cli.test_tail import Tail, child_env, tail
from tests.integration.harness import SECRET, bridge_settings, running_bridge, wait_for
from tests.support import AmqpNames

SERVER = "pbx8"


def received(body: dict[str, object]) -> float:
    text = str(body["received_at"])
    return datetime.fromisoformat(text).timestamp()


def tail_history(*args: str) -> AbstractAsyncContextManager[Tail]:
    """``python -m bridge tail ARGS`` reading the stream; killed if still running after."""
    return tail(*args, ready_line=b"tail: reading stream ")


@asynccontextmanager
async def bridge_with_stream(
    amqp_url: str, exchange: str, journal: Path, rate: float = 200
) -> AsyncIterator[None]:
    async with AmiSimulator(port=0, secret=SECRET, rate=rate, seed=5) as simulator:
        settings = bridge_settings(
            {SERVER: simulator.port},
            amqp=amqp_url,
            exchange=exchange,
            journal_dir=journal,
            stream=True,
        )
        async with running_bridge(settings):
            yield


async def stream_length(url: str, exchange: str) -> int:
    async with StreamReplay(url, exchange=exchange, until_now=True) as replay:
        return len([item async for item in replay])


def test_since_takes_durations_and_rfc3339_times() -> None:
    now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    assert parse_since("10m", now) == datetime(2026, 11, 26, 7, 50, tzinfo=UTC)
    assert parse_since("2h", now) == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    assert parse_since("90s", now).timestamp() == now.timestamp() - 90
    assert parse_since("1d", now) == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    assert parse_since("2026-11-26T09:30:00+01:00") == datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
    assert parse_since("2026-11-26T08:30:00Z") == datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
    for bad in ("10 minutes", "2026-11-26T08:30:00", "-5m", ""):
        with pytest.raises(ValueError, match="neither a duration"):
            parse_since(bad)


async def test_since_shows_the_past_in_order_then_live_events(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    exchange = amqp_names.exchange
    async with bridge_with_stream(amqp_url, exchange, tmp_path):
        await wait_for(lambda: _at_least(amqp_url, exchange, 100), 20, "100 messages in the stream")
        started = time.time()
        args = ("--since", "5m", "--json", "--exchange", exchange, "--amqp", amqp_url)
        async with tail_history(f"{SERVER}.#", *args) as t:
            # Read until messages the bridge read after tail started have come through.
            await t.read_until(
                lambda lines: bool(lines) and received(orjson.loads(lines[-1])) > started + 1.0,
                within=30,
            )
            code = await t.interrupt()

    assert code == 0
    bodies = [orjson.loads(line) for line in t.lines]
    assert received(bodies[0]) < started  # history: read before tail started
    assert received(bodies[-1]) > started  # and live ones after it
    # One login, so one epoch: every message of the server, in order, none twice, none
    # missing between the history and the live part.
    assert {body["epoch"] for body in bodies} == {bodies[0]["epoch"]}
    seqs = [body["seq"] for body in bodies]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert seqs[0] == 1  # the stream kept the bridge's first message (connected)
    assert bodies[0]["kind"] == "status"


async def test_from_start_until_now_with_patterns_then_resume_at_an_offset(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    exchange = amqp_names.exchange
    async with bridge_with_stream(amqp_url, exchange, tmp_path, rate=400):
        await wait_for(lambda: _at_least(amqp_url, exchange, 300), 20, "300 messages")
    total = await stream_length(amqp_url, exchange)  # the bridge has stopped: fixed now

    base = ("--json", "--offsets", "--until-now", "--exchange", exchange, "--amqp", amqp_url)
    patterns = ("*.call.hangup", f"{SERVER}.bridge.*")
    code, lines, banner = await run_tail(*patterns, "--from-start", *base)

    assert code == 0, banner
    assert banner.startswith(f"tail: reading stream '{exchange}.stream' from the start")
    rows = [(int(offset), orjson.loads(body)) for offset, body in (x.split(" ", 1) for x in lines)]
    events = {(body["kind"], body["event"]) for _, body in rows}
    assert ("event", "Hangup") in events
    assert ("status", "connected") in events
    assert events <= {("event", "Hangup"), ("status", "connected"), ("status", "disconnected")}
    offsets = [offset for offset, _ in rows]
    assert offsets == sorted(set(offsets))
    assert offsets[-1] < total

    # --offset N starts at N: the same lines from there on, nothing before.
    half = len(offsets) // 2
    code, again, _ = await run_tail(*patterns, "--offset", str(offsets[half]), *base)
    assert code == 0
    assert again == lines[half:]


async def run_tail(*args: str) -> tuple[int, list[str], str]:
    """``tail ARGS`` to its end: exit code, stdout lines, the first stderr line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "tail", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=child_env(),
    )  # fmt: skip
    async with asyncio.timeout(40):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode().splitlines(), stderr.decode().partition("\n")[0]


async def test_history_flags_need_a_stream_and_until_now_needs_a_start(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    code, lines, error = await run_tail("--until-now", "--amqp", amqp_url)
    assert (code, lines) == (2, [])
    assert error == "ami-bridge tail: --until-now needs --since, --from-start or --offset"

    # An exchange whose bridge runs without the stream.
    async with AmiSimulator(port=0, secret=SECRET, rate=10) as simulator:
        settings = bridge_settings(
            {SERVER: simulator.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
        )
        async with running_bridge(settings):
            code, lines, error = await run_tail(
                "--from-start", "--amqp", amqp_url, "--exchange", amqp_names.exchange
            )
    assert (code, lines) == (1, [])
    assert error.startswith("ami-bridge tail: ")
    assert f"stream '{amqp_names.stream}' does not exist" in error


async def _at_least(url: str, exchange: str, count: int) -> bool:
    try:
        return await stream_length(url, exchange) >= count
    except ConsumerError:  # not declared yet
        return False
