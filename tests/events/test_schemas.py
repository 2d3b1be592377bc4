"""The committed contract (``schemas/``) is what the models generate, and messages fit it.

Messages are produced the way the bridge produces them (parse, validate, encode, route)
and each is checked with the ``jsonschema`` package against the committed schema that
``index.json`` names for its kind and event.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator

from bridge.ami.protocol import serialize
from bridge.cli.main import main
from bridge.cli.replay import render_capture
from bridge.cli.schemas import default_schema_dir, differences
from bridge.events import SCHEMA_VERSION, Envelope, encode, list_models, model_for, validate
from bridge.events.contract import contract_files
from bridge.events.schema import event_schema
from bridge.events.status import STATUS_FIELDS
from bridge.publish.records import decode, encode_status
from bridge.publish.routing import DEFAULT_TEMPLATE, BridgeStatus, Router
from bridge.publish.topology import DEFAULT_EXCHANGE, unrouted_name
from bridge.service.render import Rendered, Renderer
from tests.events.wire import CAPTURES, full_message, parse_event

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
RECEIVED_AT = 1795675153.345209
REGENERATE = "the committed schemas are out of date: run `ami-bridge schemas`"

STATUS_EXAMPLES: dict[str, dict[str, Any]] = {
    "active": {
        "instance": "bridge-1",
        "checkpoint": "sn:4711",
        "checkpoint_found": True,
        "republished": 120,
        "not_covered": None,
    },
    "connected": {"target": "ami://bridge@pbx1:5038", "ami_version": "11.0.0"},
    "disconnected": {"reason": "connection reset by peer"},
    "gap": {
        "previous_epoch": 1795675153000,
        "last_seq": 42,
        "disconnected_for": 3.5,
        "reason": "connection reset by peer",
    },
    "overflow": {"dropped": 10, "reason": "max_bytes", "first_record": 5, "last_record": 14},
    "resync": {},
    "refused": {
        "message_id": "pbx1:1795675153000:42",
        "event": "Newchannel",
        "routing_key": "pbx1.call.newchannel",
        "outcome": "nacked",
        "attempts": 6,
        "reason": "nacked by the broker",
    },
    "journal": {
        "state": "recovered",
        "reason": "No space left on device",
        "unwritten": 1200,
        "dropped": 0,
    },
}


@functools.cache
def committed(relative: str) -> Any:
    text = (SCHEMAS / relative).read_text(encoding="utf-8")
    return yaml.safe_load(text) if relative.endswith(".yaml") else json.loads(text)


@functools.cache
def validator(relative: str) -> Draft202012Validator:
    return Draft202012Validator(committed(relative))


def schema_file_for(body: dict[str, Any]) -> str:
    """The committed schema of a message body, found through index.json."""
    index = committed("index.json")
    if body["kind"] == "invalid":
        return str(index["invalid"])
    if body["kind"] == "status":
        return str(index["status"][body["event"]])
    return str(index["events"].get(body["event"].lower(), index["generic"]))


def assert_fits(body: dict[str, Any]) -> str:
    relative = schema_file_for(body)
    errors = [e.message for e in validator(relative).iter_errors(body)]
    assert not errors, f"{body['event']} does not fit {relative}: {errors}"
    return relative


def rendered_captures(include_raw: bool) -> list[Rendered]:
    renderer = Renderer(Router("pbx1"), include_raw=include_raw)
    return [
        rendered
        for path in CAPTURES
        for rendered in render_capture(path.read_bytes(), renderer, RECEIVED_AT)
    ]


# -- the committed files -------------------------------------------------------------------


@functools.cache
def generated() -> dict[str, str]:
    return contract_files()


def test_committed_files_equal_what_the_models_generate() -> None:
    # CI generates in a fresh process, so this also holds generation to be deterministic.
    assert differences(SCHEMAS, generated()) == [], REGENERATE


def test_the_cli_writes_into_the_checkout_by_default() -> None:
    assert default_schema_dir() == SCHEMAS


def test_the_cli_writes_checks_and_removes_stale_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("bridge.events.contract.contract_files", generated)
    out = ["schemas", "--out", str(tmp_path)]
    assert main(out) == 0
    assert main([*out, "--check"]) == 0
    assert not (tmp_path / "baseline").exists()

    (tmp_path / "events" / "Hangup.json").write_text("{}\n")
    (tmp_path / "status" / "gap.json").unlink()
    (tmp_path / "events" / "Gone.json").write_text("{}\n")
    capsys.readouterr()
    assert main([*out, "--check"]) == 1
    err = capsys.readouterr().err
    assert "events/Hangup.json: differs" in err
    assert "status/gap.json: missing" in err
    assert "events/Gone.json: stale" in err
    assert "ami-bridge schemas" in err

    assert main(out) == 0
    assert main([*out, "--check"]) == 0
    assert not (tmp_path / "events" / "Gone.json").exists()


def test_check_without_a_schemas_folder_says_it_needs_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An installed package (the container image) has no schemas/ to compare with."""
    monkeypatch.setattr("bridge.cli.schemas.default_schema_dir", lambda: tmp_path / "schemas")
    assert main(["schemas", "--check"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert f"no folder {tmp_path / 'schemas'} to check" in lines[0]
    assert "checkout" in lines[0]


def test_the_cli_refreshes_the_baseline_with_the_json_schemas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bridge.events.contract.contract_files", generated)

    assert main(["schemas", "--out", str(tmp_path), "--refresh-baseline"]) == 0

    baseline = tmp_path / "baseline"
    assert (baseline / "events" / "Hangup.json").read_text() == generated()["events/Hangup.json"]
    assert (baseline / "index.json").is_file()
    assert not (baseline / "asyncapi.yaml").exists()


def test_every_committed_schema_is_a_valid_draft_2020_12_schema() -> None:
    paths = sorted(p for p in SCHEMAS.rglob("*.json") if p.name != "index.json")
    assert len(paths) > 2 * len(list_models())  # the baseline is checked too
    # Baseline files equal to a current one are checked once: the meta-schema is slow.
    texts = {path.read_text(encoding="utf-8") for path in paths}
    for text in texts:
        schema = json.loads(text)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].startswith("urn:ami-bridge:schema:")
        assert re.fullmatch(r"ami-bridge contract \d+\.\d+\.\d+", schema["$comment"])
        # Standard keywords only, so strict validators (ajv) load the files as they are.
        assert not [key for key in _all_keys(schema) if key.startswith("x-")]


def _all_keys(node: Any) -> Iterator[str]:
    """Every object key of a schema, at any depth, except property names."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            if key in ("properties", "$defs", "patternProperties"):
                for sub in value.values():
                    yield from _all_keys(sub)
            else:
                yield from _all_keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _all_keys(value)


def test_index_names_a_schema_for_every_event_and_status() -> None:
    index = committed("index.json")
    assert index["schema_version"] == SCHEMA_VERSION
    assert set(index["events"]) == {info.event.lower() for info in list_models()}
    assert set(index["status"]) == {status.value for status in BridgeStatus} == set(STATUS_FIELDS)
    for relative in [*index["events"].values(), *index["status"].values()]:
        assert (SCHEMAS / relative).is_file()
    assert index["events"]["newexten"] == "events/NewExten.json"  # found by the wire name


def test_every_schema_carries_the_contract_version_and_pins_its_major() -> None:
    for relative in ["envelope.json", "generic.json", "invalid.json", "events/Hangup.json"]:
        schema = committed(relative)
        assert schema["$comment"] == f"ami-bridge contract {SCHEMA_VERSION}"
        pattern = schema["properties"]["schema_version"]["pattern"]
        assert re.fullmatch(pattern, SCHEMA_VERSION)
        assert not re.fullmatch(pattern, "99.0.0")


# -- messages the bridge produces fit their schema -----------------------------------------


@pytest.mark.parametrize("include_raw", [False, True])
def test_every_message_of_the_captures_fits_its_schema(include_raw: bool) -> None:
    used = set()
    for rendered in rendered_captures(include_raw):
        body = orjson.loads(rendered.message.body)
        used.add(assert_fits(body))
        assert ("raw" in body) == (include_raw or body["kind"] == "invalid")
    # Every event of the captures has a model now; the generic schema is tested below.
    assert "generic.json" not in used
    assert "events/PeerEntry.json" in used
    assert "events/Newchannel.json" in used
    assert "events/Hangup.json" in used


def test_the_generic_schema_takes_repeated_headers_as_lists() -> None:
    event = parse_event(
        "Event: FutureEntry\nObjectName: 101\nObjectName: 102\nChanObjectType: peer"
    )
    body = orjson.loads(encode(validate(event), server="pbx1", epoch=1, seq=1, received_at=0.0))

    assert body["fields"]["ObjectName"] == ["101", "102"]
    assert assert_fits(body) == "generic.json"


def test_a_hangup_with_a_non_integer_cause_renders_an_invalid_record_that_fits() -> None:
    capture = b"Asterisk Call Manager/11.0.0\r\n" + serialize(
        [("Event", "Hangup"), ("Privilege", "call,all"), ("Channel", "PJSIP/a-1"), ("Cause", "x")]
    )
    (rendered,) = render_capture(capture, Renderer(Router("pbx1")), RECEIVED_AT)
    body = orjson.loads(rendered.message.body)

    assert not rendered.valid
    assert body["kind"] == "invalid"
    assert body["errors"][0]["field"] == "Cause"
    assert assert_fits(body) == "invalid.json"
    # The same body does not pass for a Hangup event.
    assert not validator("events/Hangup.json").is_valid(body)


def test_an_unreadable_message_renders_an_invalid_record_with_a_null_field_that_fits() -> None:
    capture = b"Asterisk Call Manager/11.0.0\r\n" + serialize([("Foo", "bar")])
    (rendered,) = render_capture(capture, Renderer(Router("pbx1")), RECEIVED_AT)
    body = orjson.loads(rendered.message.body)

    assert body["event"] == ""
    assert body["errors"][0]["field"] is None
    assert assert_fits(body) == "invalid.json"


@pytest.mark.parametrize("include_raw", [False, True])
def test_a_message_with_every_catalog_field_fits_its_schema(include_raw: bool) -> None:
    for seq, info in enumerate(list_models(), 1):
        result = validate(parse_event(full_message(info.model)))
        body = orjson.loads(
            encode(
                result,
                server="pbx1",
                epoch=7,
                seq=seq,
                received_at=RECEIVED_AT,
                include_raw=include_raw,
            )
        )
        assert body["kind"] == "event", body
        assert assert_fits(body) == f"events/{info.event}.json"


@pytest.mark.parametrize("status", sorted(BridgeStatus))
def test_status_messages_fit_their_schema(status: BridgeStatus) -> None:
    record = encode_status(3, 9, RECEIVED_AT, status.value, STATUS_EXAMPLES[status.value])
    rendered = Renderer(Router("pbx1")).render(decode(record))
    body = orjson.loads(rendered.message.body)

    assert assert_fits(body) == f"status/{status.value}.json"


def test_status_schemas_reject_other_statuses_and_missing_keys() -> None:
    gap = validator("status/gap.json")
    record = encode_status(3, 9, RECEIVED_AT, "gap", STATUS_EXAMPLES["gap"])
    body = orjson.loads(Renderer(Router("pbx1")).render(decode(record)).message.body)
    assert gap.is_valid(body)

    assert not gap.is_valid({**body, "event": "connected"})
    assert not gap.is_valid({**body, "fields": {"reason": "x"}})
    assert not gap.is_valid({**body, "privilege": ["bridge"]})
    assert not validator("status/connected.json").is_valid(body)


def test_event_schemas_constrain_types_names_and_versions() -> None:
    event = parse_event("Event: Hangup\nPrivilege: call,all\nChannel: PJSIP/a-1\nCause: 16")
    body = orjson.loads(encode(validate(event), server="pbx1", epoch=1, seq=1, received_at=0.0))
    hangup = validator("events/Hangup.json")
    assert hangup.is_valid(body)

    assert hangup.is_valid({**body, "event": "HANGUP"})  # names match in any case
    assert not hangup.is_valid({**body, "event": "Newchannel"})
    assert not hangup.is_valid({**body, "fields": {**body["fields"], "Cause": "16"}})
    assert not hangup.is_valid({**body, "fields": {"Channel": "PJSIP/a-1"}})  # Cause required
    assert not hangup.is_valid({**body, "fields": {**body["fields"], "Channel": None}})
    assert not hangup.is_valid({**body, "schema_version": "3.0.0"})
    assert not hangup.is_valid({**body, "kind": "invalid"})
    assert hangup.is_valid({**body, "new_key": 1})  # consumers ignore keys they do not know
    assert validator("envelope.json").is_valid(body)


def test_an_event_schema_is_its_envelope_model_schema() -> None:
    model = model_for("Hangup")
    assert model is not None
    from_model = Envelope[model].model_json_schema(by_alias=True)  # type: ignore[valid-type]
    schema = event_schema(model)

    assert schema["$defs"]["Hangup"]["required"] == from_model["$defs"]["Hangup"]["required"]
    assert set(schema["properties"]) == set(from_model["properties"]) - {"errors"}
    assert schema["properties"]["fields"]["$ref"] == "#/$defs/Hangup"


# -- the AsyncAPI document -----------------------------------------------------------------

_REF = {"type": "object", "required": ["$ref"], "properties": {"$ref": {"type": "string"}}}
_EXTENSIONS = {"^x-": True}


def _closed(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "patternProperties": _EXTENSIONS,
        "additionalProperties": False,
    }


_TEXT = {"type": "string"}
LOCATION = r"^\$message\.(header|payload)#(/(([^/~])|(~[01]))*)*"
_AMQP_CHANNEL = {
    "type": "object",
    "required": ["is"],
    "properties": {
        "is": {"enum": ["routingKey", "queue"]},
        "exchange": {
            "type": "object",
            "properties": {"type": {"enum": ["topic", "direct", "fanout", "default", "headers"]}},
        },
        "bindingVersion": {"const": "0.3.0"},
    },
}
# The required keys and the allowed keys of the AsyncAPI 3.0.0 objects the document uses,
# as the specification's own JSON Schema states them.
ASYNCAPI_3_STRUCTURE = _closed(
    ["asyncapi", "info"],
    {
        "asyncapi": {"const": "3.0.0"},
        "id": _TEXT,
        "defaultContentType": _TEXT,
        "info": {"type": "object", "required": ["title", "version"]},
        "servers": {
            "type": "object",
            "additionalProperties": _closed(
                ["host", "protocol"],
                {
                    k: {}
                    for k in [
                        "host",
                        "pathname",
                        "title",
                        "summary",
                        "description",
                        "protocol",
                        "protocolVersion",
                        "variables",
                        "security",
                        "tags",
                        "externalDocs",
                        "bindings",
                    ]
                },
            ),
        },
        "channels": {
            "type": "object",
            "additionalProperties": _closed(
                [],
                {
                    "address": {"type": ["string", "null"]},
                    "title": _TEXT,
                    "summary": _TEXT,
                    "description": _TEXT,
                    "servers": {"type": "array", "items": _REF},
                    "messages": {"type": "object", "additionalProperties": _REF},
                    "parameters": {
                        "type": "object",
                        "additionalProperties": _closed(
                            [],
                            {
                                "description": _TEXT,
                                "examples": {"type": "array", "items": _TEXT},
                                "default": _TEXT,
                                "enum": {"type": "array", "items": _TEXT},
                                "location": {
                                    "type": "string",
                                    "pattern": LOCATION,
                                },
                            },
                        ),
                    },
                    "bindings": {"type": "object", "properties": {"amqp": _AMQP_CHANNEL}},
                    "tags": {},
                    "externalDocs": {},
                },
            ),
        },
        "operations": {
            "type": "object",
            "additionalProperties": _closed(
                ["action", "channel"],
                {
                    "action": {"enum": ["send", "receive"]},
                    "channel": _REF,
                    "messages": {"type": "array", "items": _REF},
                    **{
                        k: {}
                        for k in [
                            "title",
                            "summary",
                            "description",
                            "security",
                            "tags",
                            "externalDocs",
                            "bindings",
                            "traits",
                            "reply",
                        ]
                    },
                },
            ),
        },
        "components": {
            "type": "object",
            "properties": {
                "messages": {
                    "type": "object",
                    "propertyNames": {"pattern": r"^[\w\d\.\-_]+$"},
                    "additionalProperties": _closed(
                        [],
                        {
                            k: {}
                            for k in [
                                "title",
                                "description",
                                "examples",
                                "deprecated",
                                "bindings",
                                "contentType",
                                "correlationId",
                                "externalDocs",
                                "headers",
                                "name",
                                "payload",
                                "summary",
                                "tags",
                                "traits",
                            ]
                        },
                    ),
                },
            },
        },
    },
)


def resolve_pointer(document: Any, ref: str) -> Any:
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def local_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in local_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in local_refs(value)]
    return []


def test_asyncapi_document_has_the_structure_of_asyncapi_3() -> None:
    document = committed("asyncapi.yaml")

    Draft202012Validator(ASYNCAPI_3_STRUCTURE).validate(document)
    assert document["info"]["version"] == SCHEMA_VERSION
    for ref in local_refs(document):
        if ref.startswith("#/"):
            assert resolve_pointer(document, ref) is not None, ref
        else:  # a payload: a schema file next to the document
            assert (SCHEMAS / ref).is_file(), ref
    for name, channel in document["channels"].items():
        # A reply channel's address is null: set at run time from reply_to.
        placeholders = set(re.findall(r"{(\w+)}", channel["address"] or ""))
        assert placeholders == set(channel.get("parameters", {})), name


def test_asyncapi_document_describes_every_message_and_the_topology() -> None:
    document = committed("asyncapi.yaml")
    messages = document["components"]["messages"]
    channels = document["channels"]

    # Events, generic, invalid, the statuses, and the action request and reply.
    assert len(messages) == len(list_models()) + 2 + len(BridgeStatus) + 2
    assert {m["payload"]["schema"]["$ref"] for m in messages.values()} == {
        *committed("index.json")["events"].values(),
        *committed("index.json")["status"].values(),
        *committed("index.json")["rpc"].values(),
        "generic.json",
        "invalid.json",
    }
    assert channels["events"]["address"] == DEFAULT_TEMPLATE
    exchange = channels["events"]["bindings"]["amqp"]["exchange"]
    assert exchange == {
        "name": DEFAULT_EXCHANGE,
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "/",
    }
    queue = channels["unrouted"]["bindings"]["amqp"]["queue"]
    assert queue["name"] == channels["unrouted"]["address"] == unrouted_name(DEFAULT_EXCHANGE)
    assert channels["bridgeStatus"]["parameters"]["status"]["enum"] == [
        s.value for s in BridgeStatus
    ]
    actions = {name: op["action"] for name, op in document["operations"].items()}
    assert actions.pop("runActions") == "receive"  # action requests come in
    assert set(actions.values()) == {"send"}


def _address_pattern(address: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\{\w+\\}", "[^.]+", re.escape(address)))


def test_routing_keys_match_the_address_of_their_asyncapi_channel() -> None:
    channels = committed("asyncapi.yaml")["channels"]
    by_kind = {"event": "events", "invalid": "invalid", "status": "bridgeStatus"}
    record = encode_status(3, 1, RECEIVED_AT, "gap", STATUS_EXAMPLES["gap"])
    rendered = [*rendered_captures(False), Renderer(Router("pbx1")).render(decode(record))]

    for item in rendered:
        body = orjson.loads(item.message.body)
        channel = channels[by_kind[body["kind"]]]
        assert _address_pattern(channel["address"]).fullmatch(item.message.routing_key)
