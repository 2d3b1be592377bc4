"""The files of the published contract: where each schema goes, the index, AsyncAPI.

Approach
--------
:mod:`bridge.events.schema` builds one JSON Schema per message and
:mod:`bridge.events.asyncapi` the AsyncAPI document; this module lays them out as
files, by path relative to the schema folder: ``envelope.json``, ``generic.json``,
``invalid.json``, ``events/<Event>.json`` (the documented spelling of the name),
``status/<status>.json``, ``rpc/request.json`` and ``rpc/reply.json`` (AMI actions over
the bus), ``index.json`` (to find a message's schema by kind and event) and
``asyncapi.yaml``.  The text of each file is deterministic: JSON with sorted keys
and a two-space indent, YAML in document order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bridge.events.amqp_headers import amqp_headers_schema
from bridge.events.asyncapi import ASYNCAPI_FILE, MessageEntry, asyncapi_document, render_asyncapi
from bridge.events.base import AmiEvent
from bridge.events.envelope import SCHEMA_VERSION
from bridge.events.registry import list_models
from bridge.events.rpc import rpc_reply_schema, rpc_request_schema
from bridge.events.schema import (
    envelope_schema,
    event_schema,
    generic_schema,
    invalid_schema,
    status_schema,
)
from bridge.events.status import STATUS_FIELDS

__all__ = [
    "ENVELOPE_FILE",
    "GENERIC_FILE",
    "INDEX_FILE",
    "INVALID_FILE",
    "RPC_REPLY_FILE",
    "RPC_REQUEST_FILE",
    "asyncapi_messages",
    "contract_files",
    "event_file",
    "json_schema_files",
    "render_json",
    "schema_index",
    "status_file",
]

ENVELOPE_FILE = "envelope.json"
GENERIC_FILE = "generic.json"
INVALID_FILE = "invalid.json"
INDEX_FILE = "index.json"
RPC_REQUEST_FILE = "rpc/request.json"
RPC_REPLY_FILE = "rpc/reply.json"


def event_file(event: str) -> str:
    """Path of an event's schema, relative to the schema folder: ``events/<Name>.json``."""
    return f"events/{event}.json"


def status_file(status: str) -> str:
    """Path of a status message's schema: ``status/<status>.json``."""
    return f"status/{status}.json"


def schema_index() -> dict[str, Any]:
    """Where each message's schema is: by kind, and events by lower-cased name.

    An event whose lower-cased name is not under ``events`` uses ``generic``; ``rpc``
    names the request and reply of AMI actions over the bus.
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "envelope": ENVELOPE_FILE,
        "generic": GENERIC_FILE,
        "invalid": INVALID_FILE,
        "events": {info.event.lower(): event_file(info.event) for info in list_models()},
        "status": {name: status_file(name) for name in STATUS_FIELDS},
        "rpc": {"request": RPC_REQUEST_FILE, "reply": RPC_REPLY_FILE},
    }


def json_schema_files() -> dict[str, dict[str, Any]]:
    """Every JSON file of the contract by relative path: the schemas and ``index.json``."""
    files: dict[str, dict[str, Any]] = {
        ENVELOPE_FILE: envelope_schema(),
        GENERIC_FILE: generic_schema(),
        INVALID_FILE: invalid_schema(),
    }
    for info in list_models():
        files[event_file(info.event)] = event_schema(info.model)
    for status in STATUS_FIELDS:
        files[status_file(status)] = status_schema(status)
    files[RPC_REQUEST_FILE] = rpc_request_schema()
    files[RPC_REPLY_FILE] = rpc_reply_schema()
    files[INDEX_FILE] = schema_index()
    return files


def render_json(document: Mapping[str, Any]) -> str:
    """The canonical text of a contract JSON file: sorted keys, two-space indent."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _summary(model: type[AmiEvent]) -> str:
    first_line = (model.__doc__ or model.event_name).strip().splitlines()[0]
    return first_line.replace("``", "`")


def _catalog_facts(model: type[AmiEvent]) -> tuple[tuple[str, Any], ...]:
    """The catalog facts of an event model that are not fields, for its message."""
    facts: list[tuple[str, Any]] = [("privilege", model.privilege_class)]
    if model.since:
        facts.append(("since", list(model.since)))
    if model.response_to:
        facts.append(("response-to", list(model.response_to)))
    return tuple(facts)


def asyncapi_messages() -> list[MessageEntry]:
    """Every message of the AsyncAPI document, pointing at its schema file."""
    messages = [
        MessageEntry(
            info.event,
            info.event,
            _summary(info.model),
            event_file(info.event),
            "events",
            facts=_catalog_facts(info.model),
        )
        for info in list_models()
    ]
    messages.append(
        MessageEntry(
            "generic",
            "generic",
            "An event without a model.",
            GENERIC_FILE,
            "events",
            fixed_type=False,
        )
    )
    messages.append(
        MessageEntry(
            "invalid",
            "invalid",
            "A record that failed validation.",
            INVALID_FILE,
            "invalid",
            fixed_type=False,
        )
    )
    messages += [
        MessageEntry(
            f"status.{name}",
            name,
            (model.__doc__ or name).strip().splitlines()[0],
            status_file(name),
            "bridgeStatus",
        )
        for name, model in STATUS_FIELDS.items()
    ]
    messages.append(
        MessageEntry(
            "rpc.request",
            "ActionRequest",
            "Run one AMI action on a PBX.",
            RPC_REQUEST_FILE,
            "actions",
        )
    )
    messages.append(
        MessageEntry(
            "rpc.reply",
            "ActionReply",
            "The result of one AMI action request.",
            RPC_REPLY_FILE,
            "actionReplies",
        )
    )
    return messages


def contract_files() -> dict[str, str]:
    """The text of every generated file by path relative to the schema folder.

    The JSON Schemas, ``index.json`` and ``asyncapi.yaml``; nothing else in the folder
    (its README, the baseline) is generated.
    """
    files = {path: render_json(document) for path, document in json_schema_files().items()}
    document = asyncapi_document(
        asyncapi_messages(), version=SCHEMA_VERSION, headers_schema=amqp_headers_schema()
    )
    files[ASYNCAPI_FILE] = render_asyncapi(document)
    return files
