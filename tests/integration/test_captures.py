"""Real Asterisk 22 captures, served live, publish exactly what ``ami-bridge replay`` prints.

A fake AMI server sends the banner, answers the bridge's challenge and login, and then
writes the capture's bytes from just after the capture's own successful login response:
everything Asterisk sent that session, events and responses to the recording client's
actions alike.  The bridge must publish every ``Event:`` message of the capture, in
order, as the same message (routing key, headers and body) that
``ami-bridge replay --stdout`` renders offline from the whole file.  Only the fields that
name the connection differ: ``epoch``, ``seq`` and ``id`` (the live bridge numbers its
``connected`` status first) and ``received_at``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bridge.ami.protocol import Message
from tests.ami.fake_server import FakeAmiServer, ServerConnection, reply
from tests.events.wire import CAPTURES, parse_events
from tests.integration.contract import Body
from tests.integration.harness import (
    SECRET,
    Consumer,
    bridge_settings,
    json_lines,
    replay,
    running_bridge,
)
from tests.support import AmqpNames

SERVER = "pbx1"
_LOGIN_ACCEPTED = b"Message: Authentication accepted\r\n"
#: What tells a live connection from the offline replay of the same bytes.
_CONNECTION_KEYS = ("received_at", "id", "epoch", "seq")


def after_login(capture: bytes) -> bytes:
    """The capture's bytes after its successful login response (none if the login failed)."""
    accepted = capture.find(_LOGIN_ACCEPTED)
    if accepted < 0:
        return b""
    return capture[capture.index(b"\r\n\r\n", accepted) + 4 :]


def _without(mapping: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k not in keys}


def comparable(routing_key: str, headers: dict[str, Any], body: Body) -> tuple[Any, ...]:
    return (
        routing_key,
        # The CloudEvents id and time carry the connection's epoch and read time too.
        _without(headers, ("epoch", "seq", "cloudEvents_id", "cloudEvents_time")),
        _without(body, _CONNECTION_KEYS),
    )


async def replay_stdout(path: Path) -> list[Body]:
    """The JSON lines ``ami-bridge replay FILE --stdout`` prints for ``path``."""
    code, out, err = await replay(path, SERVER)
    assert code == 0, err.decode()
    return json_lines(out)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
async def test_a_served_capture_publishes_what_replay_prints(
    path: Path, amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    capture = await asyncio.to_thread(path.read_bytes)
    stream = after_login(capture)
    # The split keeps every event of the capture (none comes before the login).
    assert len(parse_events(stream)) == len(parse_events(capture, banner=True))
    replayed = await replay_stdout(path)
    assert len(replayed) == len(parse_events(capture, banner=True))

    async def login(connection: ServerConnection, action: Message) -> None:
        connection.logged_in = True
        await connection.send(reply(action, "Success", ("Message", "Authentication accepted")))
        await connection.write_raw(stream)

    async with (
        FakeAmiServer(users={"bridge": SECRET}, handlers={"login": login}) as server,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        settings = bridge_settings(
            {SERVER: server.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
        )
        async with running_bridge(settings) as app:
            expected = len(replayed) + 1  # the connected status comes first
            await consumer.wait_until(lambda b: len(b) >= expected, 20, f"{expected} messages")
            await consumer.wait_quiet(0.3)
            assert app.pipelines[0].journal.depth == 0
            received = list(zip(consumer.messages, consumer.bodies, strict=True))

    connected, *events = received
    assert connected[1]["event"] == "connected"
    assert [b["seq"] for _, b in events] == list(range(2, len(events) + 2))
    assert [comparable(str(m.routing_key), dict(m.headers), b) for m, b in events] == [
        comparable(line["routing_key"], line["headers"], line["body"]) for line in replayed
    ]
