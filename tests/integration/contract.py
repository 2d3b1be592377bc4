"""What every message on the exchange must satisfy, checked from the consumer's side.

A delivery is judged only by what a consumer sees: its routing key, AMQP properties and
headers must agree with its JSON body, and the body must match the published contract.
The contract is the generated JSON Schema in ``schemas/``: ``index.json`` maps lower-case
event names, statuses, ``invalid`` and ``generic`` (events without a model) to
self-contained schema files.  They are checked with ``jsonschema-rs`` (formats included),
fast enough to judge every one of the thousands of messages a test receives.

Ordering helpers work on bodies: :func:`first_occurrences` undoes at-least-once
redelivery, :func:`assert_contiguous` checks that each epoch's sequence numbers run
1, 2, 3... without a hole.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractIncomingMessage

from bridge.events.envelope import SCHEMA_VERSION
from bridge.events.registry import model_for

__all__ = [
    "SCHEMAS",
    "Body",
    "assert_contiguous",
    "by_server",
    "check_delivery",
    "expected_routing_key",
    "first_occurrences",
    "validate_body",
]

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"

Body = dict[str, Any]


def expected_routing_key(body: Body) -> str:
    """The key the body must travel under: ``{server}.{class}.{event}`` and its fixed forms."""
    server, event = body["server"], body["event"]
    if body["kind"] == "status":
        return f"{server}.bridge.{event}"
    if body["kind"] == "invalid":
        return f"{server}.invalid.{(event or 'malformed').lower()}"
    klass = next((p for p in body["privilege"] if p and p != "all"), "none")
    model = model_for(event)
    if klass == "none" and body.get("snapshot") and model is not None and model.live_class:
        klass = model.live_class  # a list item routes where its live event does
    return f"{server}.{klass}.{(event or 'malformed').lower()}"


def _received_at(body: Body) -> float:
    parsed = datetime.datetime.strptime(body["received_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return parsed.replace(tzinfo=datetime.UTC).timestamp()


def check_delivery(message: AbstractIncomingMessage) -> Body:
    """Assert that one delivery is a well-formed bridge message; return its body."""
    body: Body = orjson.loads(message.body)
    validate_body(body)
    assert message.routing_key == expected_routing_key(body)
    assert message.message_id == body["id"] == f"{body['server']}:{body['epoch']}:{body['seq']}"
    # The AMQP type and headers repeat the body's name, "" for a nameless message.
    assert (message.type or "") == body["event"]
    assert message.delivery_mode == DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert message.app_id == "ami-bridge"
    assert message.timestamp is not None
    assert abs(message.timestamp.timestamp() - _received_at(body)) < 1.0
    headers = message.headers
    assert headers["event"] == body["event"]
    assert headers["server"] == body["server"]
    assert headers["epoch"] == body["epoch"]
    assert headers["seq"] == body["seq"]
    assert headers["schema_version"] == body["schema_version"] == SCHEMA_VERSION
    privilege = headers["privilege"]
    assert isinstance(privilege, list)
    if body["kind"] != "status":
        assert privilege == body["privilege"]
    return body


def validate_body(body: Body) -> None:
    """Assert that ``body`` matches its generated JSON Schema.

    Raises:
        jsonschema_rs.ValidationError: it does not.
    """
    _validator(_schema_file(body)).validate(body)


def _schema_file(body: Body) -> Path:
    index = _index()
    name: str
    if body["kind"] == "status":
        name = index["status"][body["event"]]
    elif body["kind"] == "invalid":
        name = index["invalid"]
    elif model_for(body["event"]) is None:
        name = index["generic"]
    else:
        events = index["events"]
        assert body["event"].lower() in events, f"no schema for {body['event']!r} in index.json"
        name = events[body["event"].lower()]
    return SCHEMAS / name


@cache
def _index() -> dict[str, Any]:
    index: dict[str, Any] = orjson.loads((SCHEMAS / "index.json").read_bytes())
    assert index["schema_version"] == SCHEMA_VERSION
    return index


@cache
def _validator(path: Path) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(orjson.loads(path.read_bytes()), validate_formats=True)


def by_server(bodies: Iterable[Body]) -> dict[str, list[Body]]:
    """Bodies grouped by server, each group in the order given."""
    grouped: defaultdict[str, list[Body]] = defaultdict(list)
    for body in bodies:
        grouped[body["server"]].append(body)
    return dict(grouped)


def first_occurrences(bodies: Iterable[Body]) -> list[Body]:
    """``bodies`` without redeliveries: the first body of each message id, in order."""
    seen: set[str] = set()
    unique = []
    for body in bodies:
        if body["id"] not in seen:
            seen.add(body["id"])
            unique.append(body)
    return unique


def assert_contiguous(bodies: Sequence[Body]) -> None:
    """One server's bodies: epochs never go back, and each epoch's seqs run 1, 2, 3..."""
    expected: dict[int, int] = {}
    last_epoch = 0
    for body in bodies:
        epoch, seq = body["epoch"], body["seq"]
        assert epoch >= last_epoch, f"epoch went back from {last_epoch} to {epoch}"
        last_epoch = epoch
        want = expected.get(epoch, 1)
        assert seq == want, f"{body['id']}: seq {seq} where {want} was next"
        expected[epoch] = seq + 1
