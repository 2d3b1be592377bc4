"""A record the renderer chokes on (a bug, not input) is published on the invalid route
with the error and its exact bytes, and the events after it still flow:
the pipeline never stalls on one record."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bridge.ami.simulator import AmiSimulator
from bridge.publish.records import Record, decode
from bridge.service.render import Rendered, Renderer
from tests.integration.contract import Body
from tests.integration.harness import (
    SECRET,
    Consumer,
    bridge_settings,
    running_bridge,
    wait_for,
)
from tests.support import AmqpNames

SERVER = "pbx1"


async def test_an_unrenderable_record_is_kept_on_the_invalid_route(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    render = Renderer.render

    def choke_on_the_poison(self: Renderer, record: Record) -> Rendered:
        if b"Poison" in record.payload:
            raise RuntimeError("a renderer bug")
        return render(self, record)

    monkeypatch.setattr(Renderer, "render", choke_on_the_poison)
    async with (
        AmiSimulator(port=0, secret=SECRET, rate=0) as pbx,
        Consumer.bound(amqp_url, amqp_names.exchange, amqp_names.queue) as consumer,
    ):
        settings = bridge_settings(
            {SERVER: pbx.port}, amqp=amqp_url, exchange=amqp_names.exchange, journal_dir=tmp_path
        )
        async with running_bridge(settings) as app:
            await pbx.wait_for_sessions(1, 10)
            for name in ("Before", "Poison", "After"):
                pbx.inject([("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", name)])

            def after_arrived(bodies: list[Body]) -> bool:
                return any(b.get("fields", {}).get("UserEvent") == "After" for b in bodies)

            await consumer.wait_until(after_arrived, 15, "the event after the poison")
            await wait_for(lambda: app.pipelines[0].journal.depth == 0, 10, "an empty journal")

    kept = [m for m in consumer.messages if m.routing_key == f"{SERVER}.invalid.malformed"]
    assert len(kept) == 1
    body = next(b for b in consumer.bodies if b["event"] == "")
    assert body["kind"] == "invalid"
    assert body["errors"][0]["type"] == "internal"
    assert "a renderer bug" in body["errors"][0]["message"]
    payload = base64.b64decode(body["raw_base64"][0][1])
    assert decode(payload).event().get("UserEvent") == "Poison"  # the exact journal record
    assert body["seq"] == decode(payload).seq
    names = [b["fields"]["UserEvent"] for b in consumer.bodies if b["event"] == "UserEvent"]
    assert names == ["Before", "After"]
