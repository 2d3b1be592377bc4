"""Every documented and every 1.4-era event has a model, and a full message fits it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.events import (
    REGISTRY,
    AmiEvent,
    Envelope,
    Validated,
    generated,
    legacy,
    list_models,
    model_for,
    validate,
)
from bridge.events.amqp_headers import amqp_headers_schema
from bridge.events.asyncapi import asyncapi_document
from bridge.events.contract import asyncapi_messages
from bridge.events.envelope import SCHEMA_VERSION
from tests.events.wire import full_message, parse_event, plausible_value

CATALOG: dict[str, Any] = json.loads(
    (Path(generated.__file__).parent / "catalog.json").read_text(encoding="utf-8")
)
ASYNCAPI: dict[str, Any] = asyncapi_document(
    asyncapi_messages(), version=SCHEMA_VERSION, headers_schema=amqp_headers_schema()
)
#: What the code of every release since 11 writes (scripts/extract_emitted.py).
EMITTED: dict[str, Any] = json.loads(
    (Path(generated.__file__).parent / "emitted.json").read_text(encoding="utf-8")
)
SEED_EVENTS = [
    "PeerStatus",
    "WaitEventComplete",
    "Newchannel",
    "Newstate",
    "Newexten",
    "Hangup",
    "Dial",
    "Newcallerid",
    "Link",
    "Unlink",
    "Reload",
    "ChannelReload",
]
MODELS = [info.model for info in list_models()]


def test_every_catalog_event_has_a_model() -> None:
    assert len(CATALOG) == 181
    assert all(model_for(name) is not None for name in CATALOG)


def test_every_seed_event_has_a_model() -> None:
    assert all(model_for(name) is not None for name in SEED_EVENTS)


def test_registry_keys_are_lower_case_and_cover_both_generations() -> None:
    assert all(key == key.lower() for key in REGISTRY)
    assert REGISTRY["newexten"] is generated.NewExten
    assert REGISTRY["newcallerid"] is legacy.NewCallerid
    assert REGISTRY["newchannel"] is legacy.Newchannel
    assert REGISTRY["dial"] is legacy.Dial


@pytest.mark.parametrize(
    ("wire", "docs"), [("Newexten", "NewExten"), ("Newcallerid", "NewCallerid")]
)
def test_event_names_match_without_regard_to_case(wire: str, docs: str) -> None:
    assert model_for(wire) is model_for(docs) is model_for(wire.upper()) is not None


def test_list_models_gives_name_and_privilege_class_of_each() -> None:
    infos = list_models()
    by_name = {info.event: info for info in infos}

    names = {name.lower() for name in (*CATALOG, *EMITTED["events"])}
    names |= {model.event_name.lower() for model in legacy.MODELS}
    assert len(infos) == len(REGISTRY) == len(names)
    assert by_name["Hangup"].privilege_class == "call"
    assert by_name["PeerStatus"].privilege_class == "system"
    assert by_name["PeerStatus"].model is legacy.PeerStatus
    # Documented with a non-existent class; the code sends them as call events.
    assert by_name["ChannelTalkingStart"].privilege_class == "call"
    for name, entry in CATALOG.items():
        if entry["classes"]:
            assert by_name[name].privilege_class == entry["classes"][0]


def test_every_event_the_docs_or_the_code_name_has_a_model() -> None:
    names = [*CATALOG, *EMITTED["events"]]
    missing = sorted(name for name in names if model_for(name) is None)

    assert missing == []
    # The events of Asterisk 11 that 12 replaced, and list items of every version.
    for name in ("Join", "Leave", "Bridge", "Masquerade", "AGIExec", "AsyncAGI", "Transfer"):
        assert model_for(name) is not None, name
    for name in ("DTMF", "MusicOnHold", "QueueMemberPaused", "ChannelUpdate", "QueueMember"):
        assert model_for(name) is not None, name


@pytest.mark.parametrize(
    ("event", "fields"),
    [
        ("Rename", {"Channel", "Newname", "Uniqueid"}),
        ("LogChannel", {"Channel", "Enabled", "Reason"}),
        ("RTCPSent", {"MES", "OurSSRC", "FractionLost", "CumulativeLoss", "TheirLastSR"}),
        ("RTCPReceived", {"MES", "RTT", "SenderSSRC", "PacketsLost", "HighestSequence"}),
        ("LocalBridge", {"Channel1", "Channel2", "Uniqueid1", "Uniqueid2"}),
        ("QueueMember", {"Queue", "Location", "Penalty", "CallsTaken", "Paused", "Status"}),
        ("PeerEntry", {"Channeltype", "ObjectName", "IPaddress", "Status"}),
    ],
)
def test_headers_only_the_code_or_older_releases_write_are_fields(
    event: str, fields: set[str]
) -> None:
    model = model_for(event)
    assert model is not None
    assert fields <= {info.alias or name for name, info in model.model_fields.items()}


def test_models_carry_the_fields_the_code_writes() -> None:
    for name, entry in EMITTED["events"].items():
        model = model_for(name)
        assert model is not None
        aliases = {(info.alias or field).lower() for field, info in model.model_fields.items()}
        written = {
            key.lower()
            for key in entry["fields"]
            if key.replace("-", "_").replace("_", "").isalnum()
            and not key.lower().endswith("chanvariable")
        }
        assert written <= aliases, (name, sorted(written - aliases))


def test_models_carry_the_catalog_fields_under_their_ami_names() -> None:
    for name, entry in CATALOG.items():
        model = model_for(name)
        assert model is not None
        aliases = {info.alias or field for field, info in model.model_fields.items()}
        assert set(entry["fields"]) <= aliases, name


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.event_name)
def test_a_message_with_every_field_validates(model: type[AmiEvent]) -> None:
    result = validate(parse_event(full_message(model)))

    assert isinstance(result, Validated), result
    assert type(result.model) is model
    assert result.drift == ()
    assert result.unlisted_values == ()
    assert len(result.fields) == len(model.model_fields)
    for name, info in model.model_fields.items():
        expected = plausible_value(name, info)
        assert result.fields[info.alias or name] == (42 if expected == "42" else expected)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.event_name)
def test_each_event_has_a_closed_json_schema_and_its_catalog_facts(
    model: type[AmiEvent],
) -> None:
    schema = Envelope[model].model_json_schema(by_alias=True)  # type: ignore[valid-type]
    fields = schema["$defs"][model.__name__]
    message = ASYNCAPI["components"]["messages"][model.event_name]

    # Unknown headers travel in `extra`: `fields` holds the declared ones only.
    assert fields["additionalProperties"] is False
    assert not [key for key in fields if key.startswith("x-")]
    assert set(fields["properties"]) == {i.alias or n for n, i in model.model_fields.items()}
    assert message["x-ami-privilege"] == model.privilege_class
    assert message.get("x-ami-since", []) == list(model.since)
    assert message.get("x-ami-response-to", []) == list(model.response_to)


def test_required_fields_are_few_and_deliberate() -> None:
    required = {
        model.event_name: sorted(
            info.alias or name for name, info in model.model_fields.items() if info.is_required()
        )
        for model in MODELS
    }
    assert {name: fields for name, fields in required.items() if fields} == {
        "FAXStats": sorted(CATALOG["FAXStats"]["required_fields"]),
        "Hangup": ["Cause"],
        "Link": ["Channel1", "Channel2"],
        "PeerStatus": ["Peer", "PeerStatus"],
        "Unlink": ["Channel1", "Channel2"],
        "UserEvent": ["UserEvent"],
    }
