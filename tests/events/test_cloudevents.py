"""The CloudEvents headers: read back with the official SDK, their data checked against
the schema ``dataschema`` names."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml
from aio_pika.abc import AbstractIncomingMessage
from cloudevents.core.bindings import amqp as ce_amqp

from bridge.ami.simulator import AmiSimulator
from bridge.events import cloudevents
from bridge.events.registry import list_models
from bridge.events.schema import event_schema, generic_schema, invalid_schema, status_schema
from bridge.events.status import STATUS_FIELDS
from bridge.publish.amqp import AmqpPublisher
from bridge.publish.amqp_frames import UNCACHED_HEADERS
from bridge.publish.records import decode, encode_event
from bridge.publish.routing import Router
from bridge.service.render import Renderer
from tests.events.wire import parse_event
from tests.integration.harness import SECRET, bridge_settings, running_bridge
from tests.support import AmqpNames, amqp_connection, bind_queue, collect_until

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
SERVER = "pbx5"


@cache
def schemas_by_id() -> dict[str, dict[str, Any]]:
    by_id = {}
    for path in SCHEMAS.rglob("*.json"):
        if "baseline" in path.parts:
            continue
        document = json.loads(path.read_text())
        if isinstance(document, dict) and "$id" in document:
            by_id[document["$id"]] = document
    return by_id


def as_cloudevent(message: AbstractIncomingMessage) -> Any:
    """The CloudEvent the SDK reads from a consumed message (AMQP binding, binary mode)."""
    amqp_message = ce_amqp.AMQPMessage(
        properties={"content-type": message.content_type},
        application_properties=dict(message.headers),
        application_data=message.body,
    )
    return ce_amqp.from_binary_event(amqp_message)


def check(message: AbstractIncomingMessage) -> Any:
    """Every attribute parses; the data validates against the schema named by dataschema."""
    event = as_cloudevent(message)
    body = json.loads(message.body)
    assert event.get_specversion() == "1.0"
    assert event.get_id() == body["id"] == message.message_id
    assert event.get_source() == f"urn:ami-bridge:server:{body['server']}"
    assert urlsplit(event.get_source()).scheme == "urn"
    assert event.get_datacontenttype() == "application/json"
    time = event.get_time()
    assert isinstance(time, datetime)
    assert time == datetime.fromisoformat(body["received_at"])
    assert time.microsecond == int(body["received_at"][20:26])  # nothing rounded away
    assert event.get_data() == body
    schema = schemas_by_id()[event.get_dataschema()]
    jsonschema.Draft202012Validator(schema).validate(event.get_data())
    if body["kind"] == "status":
        assert event.get_type() == f"org.asterisk.ami.bridge.{body['event']}"
        assert event.get_subject() is None
    elif body["kind"] == "invalid":
        assert event.get_type() == "org.asterisk.ami.invalid"
    else:
        # The documented spelling of the name, which the schema's $id carries.
        kind, _, name = schema["$id"].rpartition(":")
        documented = name if kind.endswith(":event") else body["event"]
        assert event.get_type() == f"org.asterisk.ami.{documented}"
        fields = body["fields"]
        expected = next((fields[n] for n in cloudevents.SUBJECT_FIELDS if fields.get(n)), None)
        assert event.get_subject() == expected
    # The binding's value types: every attribute is an AMQP string.
    for name, value in message.headers.items():
        if name.startswith(cloudevents.HEADER_PREFIX):
            assert isinstance(value, str), name
    return event


async def test_every_message_of_a_running_bridge_is_a_valid_cloudevent(
    amqp_url: str, amqp_names: AmqpNames, tmp_path: Path
) -> None:
    async with AmiSimulator(port=0, secret=SECRET, rate=200, seed=11) as simulator:
        settings = bridge_settings(
            {SERVER: simulator.port},
            amqp=amqp_url,
            exchange=amqp_names.exchange,
            journal_dir=tmp_path,
        )
        async with amqp_connection(amqp_url) as connection:
            channel = await connection.channel()
            await channel.declare_exchange(
                amqp_names.exchange,
                "topic",
                durable=True,
                arguments={"alternate-exchange": amqp_names.unrouted},
            )
            queue = await bind_queue(channel, amqp_names.exchange, amqp_names.queue)
            async with running_bridge(settings):

                def enough(received: list[AbstractIncomingMessage]) -> bool:
                    types = {m.headers.get("cloudEvents_type") for m in received}
                    return len(received) >= 200 and "org.asterisk.ami.Hangup" in types

                messages = await collect_until(queue, enough, within=30)

    events = [check(message) for message in messages]
    types = {event.get_type() for event in events}
    assert {"org.asterisk.ami.bridge.connected", "org.asterisk.ami.Newchannel"} <= types
    assert any(event.get_subject() for event in events)  # channels as subjects
    assert len({event.get_id() for event in events}) == len(events)


async def test_invalid_messages_carry_the_invalid_type_and_schema(
    amqp_url: str, amqp_names: AmqpNames
) -> None:
    renderer = Renderer(Router(SERVER))
    broken = parse_event("Event: Hangup\nPrivilege: call,all\nChannel: PJSIP/1-0001\nCause: x\n")
    invalid = renderer.render(decode(encode_event(7, 3, 1795681364.5, broken)))
    unrenderable = renderer.unrenderable(b"\x00garbage", ValueError("no"))
    assert not invalid.valid
    publisher: AmqpPublisher[int] = AmqpPublisher(amqp_url, exchange=amqp_names.exchange)
    await publisher.connect()
    try:
        async with amqp_connection(amqp_url) as connection:
            channel = await connection.channel()
            queue = await bind_queue(channel, amqp_names.exchange, amqp_names.queue)
            for token, rendered in enumerate((invalid, unrenderable)):
                await publisher.publish(rendered.message, token)
            received = await collect_until(queue, lambda got: len(got) == 2, within=10)
    finally:
        await publisher.close()
    for message in received:
        event = check(message)
        assert event.get_type() == cloudevents.INVALID_TYPE
        assert event.get_dataschema() == invalid_schema()["$id"]


def test_dataschema_ids_are_the_ids_of_the_published_schemas() -> None:
    for info in list_models():
        model = info.model
        attributes = cloudevents.event_attributes("pbx1", "x", "t", model, info.event, {})
        assert attributes["cloudEvents_dataschema"] == event_schema(model)["$id"]
    assert cloudevents.schema_id("generic") == generic_schema()["$id"]
    assert cloudevents.schema_id("invalid") == invalid_schema()["$id"]
    for status in STATUS_FIELDS:
        attributes = cloudevents.status_attributes("pbx1", "x", "t", status)
        assert attributes["cloudEvents_dataschema"] == status_schema(status)["$id"]
        assert attributes["cloudEvents_dataschema"] in schemas_by_id()


def test_the_encoder_leaves_exactly_the_per_message_attributes_out_of_its_cache() -> None:
    per_message = {cloudevents.header(name) for name in ("id", "time", "subject")}
    assert per_message == UNCACHED_HEADERS


def test_the_asyncapi_headers_list_every_attribute() -> None:
    document = json.loads(json.dumps(_asyncapi_headers()))
    for attribute, (required, _) in cloudevents.ATTRIBUTES.items():
        name = cloudevents.header(attribute)
        assert document["properties"][name]["type"] == "string"
        assert (name in document["required"]) is required


def _asyncapi_headers() -> dict[str, Any]:
    text = (SCHEMAS / "asyncapi.yaml").read_text()
    headers: dict[str, Any] = yaml.safe_load(text)["components"]["schemas"]["AmqpHeaders"]
    return headers
