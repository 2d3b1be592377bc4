"""The simulator's Originate, read over loopback with the project's own client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bridge.ami.client import AmiConnection, StreamItem
from bridge.ami.login import log_in
from bridge.ami.protocol import Event
from bridge.ami.simulator import AmiSimulator
from bridge.ami.target import AmiTarget
from bridge.events.validation import Validated, validate
from tests.ami.test_simulator_lists import SECRET


@asynccontextmanager
async def logged_in(sim: AmiSimulator, seen: list[StreamItem]) -> AsyncIterator[AmiConnection]:
    target = AmiTarget(user="bridge", host="127.0.0.1", port=sim.port, tls=False)
    conn = await AmiConnection.open(target, on_items=seen.extend)
    try:
        await log_in(conn, lambda: SECRET, auth="md5", events="on", timeout=3)
        yield conn
    finally:
        await conn.close()


async def test_an_async_originate_is_queued_then_answered_by_an_originate_response() -> None:
    seen: list[StreamItem] = []
    async with AmiSimulator(port=0, secret=SECRET, rate=0) as sim, logged_in(sim, seen) as conn:
        sim.originate_delay = 0.05
        headers = [("Channel", "PJSIP/101"), ("Application", "Playback"), ("Data", "hello")]
        result = await conn.send_action(
            "Originate", [*headers, ("Async", "yes")], timeout=3, action_tag="t1"
        )
        await asyncio.sleep(0.3)
    assert result.ok
    assert result.response.get("Message") == "Originate successfully queued"
    (event,) = [i for i in seen if isinstance(i, Event) and i.name == "OriginateResponse"]
    # As manager.c writes it: the ActionID first, then Response, Channel, the target.
    names = [key for key, _ in event.headers]
    assert names == [
        "Event", "Privilege", "ActionID", "Response", "Channel", "Application", "Data",
        "Reason", "Uniqueid", "CallerIDNum", "CallerIDName",
    ]  # fmt: skip
    assert event.action_id == result.response.action_id
    assert (event.action_id or "").endswith("/t1")
    assert event.get("Response") == "Success"
    assert isinstance(validate(event), Validated)


async def test_originate_errors_and_a_sync_originate_as_asterisk_answers_them() -> None:
    async with AmiSimulator(port=0, secret=SECRET, rate=0) as sim, logged_in(sim, []) as conn:
        sim.originate_delay = 0.05
        missing = await conn.send_action("Originate", [("Exten", "1")], timeout=3)
        no_slash = await conn.send_action("Originate", [("Channel", "PJSIP")], timeout=3)
        sync = await conn.send_action("Originate", [("Channel", "PJSIP/1")], timeout=3)
        failed = await conn.send_action("Originate", [("Channel", "Fail/1")], timeout=3)
    assert (missing.ok, missing.response.get("Message")) == (False, "Channel not specified")
    assert (no_slash.ok, no_slash.response.get("Message")) == (False, "Invalid channel")
    assert (sync.ok, sync.response.get("Message")) == (True, "Originate successfully queued")
    assert (failed.ok, failed.response.get("Message")) == (False, "Originate failed")
